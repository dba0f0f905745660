#!/usr/bin/env python3
"""CloudFormation templates as JSON for the IAM proof (tools/iam-proof/prove.mjs).

    translate.py --sam infra/template.yaml     # SAM: translated to CloudFormation, as `sam package`
    translate.py infra/examples/source.yaml     # plain CloudFormation: short-form tags made long

The SAM translation is the one scripts/validate-infra.py checks and lints: code locations become
artifact URIs, and no AWS managed policy is looked up (offline); the roles keep the managed
policies' ARNs, whose documents the proof's mapping holds. The JSON goes to standard output.
"""
import json
import os
import sys

from samtranslator.translator.transform import transform
from samtranslator.yaml_helper import yaml_parse


class NoManagedPolicies:
    """Nothing is looked up: the translated roles name managed policies by ARN."""

    def load(self):
        return {}


def main():
    args = sys.argv[1:]
    sam = "--sam" in args
    paths = [a for a in args if a != "--sam"]
    if len(paths) != 1:
        sys.exit("usage: translate.py [--sam] TEMPLATE")
    with open(paths[0], encoding="utf-8") as f:
        template = yaml_parse(f.read())
    if sam:
        # The translator fills in pseudo parameters from a region; nothing is called.
        os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
        for name, resource in template.get("Resources", {}).items():
            if resource.get("Type") == "AWS::Serverless::Function":
                resource["Properties"]["CodeUri"] = f"s3://replmon-artifacts/{name}.zip"
        template = transform(template, {}, NoManagedPolicies())
    json.dump(template, sys.stdout, indent=1, default=str)


if __name__ == "__main__":
    main()
