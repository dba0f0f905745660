#!/usr/bin/env python3
"""Offline checks of infra/template.yaml: translate the SAM template to CloudFormation with
aws-sam-translator (cfn-lint does not look inside AWS::Serverless::Function), lint the result
with cfn-lint (no errors allowed), and check the least-privilege promises of the README on the
translated IAM roles."""
import json
import os
import pathlib
import subprocess
import sys

from samtranslator.translator.transform import transform
from samtranslator.yaml_helper import yaml_parse

ROOT = pathlib.Path(__file__).resolve().parent.parent
VENV_BIN = pathlib.Path(sys.executable).parent


class NoManagedPolicies:
    """The template names no AWS managed policies, so there is nothing to look up (offline)."""

    def load(self):
        return {}


def statements(role):
    for policy in role["Properties"].get("Policies", []):
        document = policy["PolicyDocument"]["Statement"]
        yield from document if isinstance(document, list) else [document]


def actions(statement):
    action = statement.get("Action", [])
    return action if isinstance(action, list) else [action]


def arn_suffixes(resource):
    """What follows each bucket name in a list of ARNs built by the template's idiom
    Split(",", Sub("arn:aws:s3:::${Names}<suffix>", Names=Join("<suffix>,arn:aws:s3:::", buckets))).
    Anything else: None (not provably inside the canary segment)."""
    try:
        template, variables = resource["Fn::Split"][1]["Fn::Sub"]
        separator = variables["Names"]["Fn::Join"][0]
        return [template.split("${Names}", 1)[1], separator.split(",", 1)[0]]
    except (KeyError, TypeError, ValueError, IndexError):
        return None


def check_examples():
    """The replicated pair in infra/examples: lint, and the promises its README makes."""
    failures = []
    examples = sorted((ROOT / "infra/examples").glob("*.yaml"))
    lint = subprocess.run(
        [str(VENV_BIN / "cfn-lint"), "--format", "parseable", *map(str, examples)],
        capture_output=True,
        text=True,
    )
    print(lint.stdout, end="")
    if lint.returncode & 3:
        failures.append(f"cfn-lint found errors in the examples (exit {lint.returncode})")
    for path in examples:
        resources = yaml_parse(path.read_text())["Resources"]
        for name, resource in resources.items():
            props = resource.get("Properties", {})
            if resource["Type"] == "AWS::IAM::Role":
                for statement in statements(resource):
                    for action in actions(statement):
                        if action == "*" or action.endswith(":*"):
                            failures.append(f"{path.name} {name}: wildcard action {action}")
                        if name == "FailoverReadOnlyRole" and not (
                            action.startswith(("s3:Get", "s3:List")) or action == "kms:Decrypt"
                        ):
                            failures.append(f"{path.name} {name}: not read-only: {action}")
            if resource["Type"] == "AWS::S3::Bucket":
                rules = props.get("BucketEncryption", {}).get("ServerSideEncryptionConfiguration", [])
                if not any(r["ServerSideEncryptionByDefault"]["SSEAlgorithm"] == "aws:kms" for r in rules):
                    failures.append(f"{path.name} {name}: bucket not SSE-KMS")
                if props.get("VersioningConfiguration", {}).get("Status") != "Enabled":
                    failures.append(f"{path.name} {name}: bucket not versioned")
                for rule in props.get("ReplicationConfiguration", {}).get("Rules", []):
                    destination = rule["Destination"]
                    if destination.get("Metrics", {}).get("Status") != "Enabled":
                        failures.append(f"{path.name} {name}: replication metrics off")
                    if destination.get("ReplicationTime", {}).get("Status") != "Enabled":
                        failures.append(f"{path.name} {name}: RTC off")
                    if rule.get("DeleteMarkerReplication", {}).get("Status") != "Enabled":
                        failures.append(f"{path.name} {name}: delete markers not replicated")
                if "ReplicationConfiguration" in props:
                    events = [
                        q["Event"]
                        for q in props.get("NotificationConfiguration", {}).get("QueueConfigurations", [])
                    ]
                    if "s3:Replication:*" not in events:
                        failures.append(f"{path.name} {name}: no s3:Replication:* notification")
    return failures


def main():
    # The translator fills in pseudo parameters from a region; nothing is called.
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    template = yaml_parse((ROOT / "infra/template.yaml").read_text())
    # What `sam build` + `sam package` do: local code becomes an uploaded artifact.
    for name, resource in template["Resources"].items():
        if resource["Type"] == "AWS::Serverless::Function":
            resource["Properties"]["CodeUri"] = f"s3://replmon-artifacts/{name}.zip"
    cfn = transform(template, {}, NoManagedPolicies())
    out_dir = ROOT / ".local/infra"
    out_dir.mkdir(parents=True, exist_ok=True)
    translated = out_dir / "template.cfn.json"
    translated.write_text(json.dumps(cfn, indent=1))

    failures = []
    lint = subprocess.run(
        [str(VENV_BIN / "cfn-lint"), "--format", "parseable", str(translated)],
        capture_output=True,
        text=True,
    )
    print(lint.stdout, end="")
    print(lint.stderr, end="", file=sys.stderr)
    # cfn-lint's exit code is a bit mask: 2 errors, 4 warnings, 8 informational.
    if lint.returncode & 2 or lint.returncode & 1:
        failures.append(f"cfn-lint found errors (exit {lint.returncode})")

    resources = cfn["Resources"]
    roles = {name: r for name, r in resources.items() if r["Type"] == "AWS::IAM::Role"}
    functions = {name: r for name, r in resources.items() if r["Type"] == "AWS::Lambda::Function"}
    if len(functions) != 3:
        failures.append(f"expected 3 functions, found {sorted(functions)}")
    function_roles = {
        f["Properties"]["Role"]["Fn::GetAtt"][0]: name
        for name, f in functions.items()
        if isinstance(f["Properties"].get("Role"), dict)
    }
    for name, role in roles.items():
        for statement in statements(role):
            for action in actions(statement):
                if action == "*" or action.endswith(":*"):
                    failures.append(f"{name}: wildcard action {action}")
        s3_object_writes = [
            (a, s)
            for s in statements(role)
            for a in actions(s)
            if a in ("s3:PutObject", "s3:PutObjectTagging", "s3:DeleteObject", "s3:DeleteObjectVersion")
        ]
        function = function_roles.get(name)
        if function == "CanaryFunction":
            for action, statement in s3_object_writes:
                suffixes = arn_suffixes(statement.get("Resource"))
                if not suffixes or not all(x.endswith("/replmon-canary/*") for x in suffixes):
                    failures.append(f"{name}: {action} outside the canary segment: {suffixes}")
            if not s3_object_writes:
                failures.append(f"{name}: the canary cannot write its probes")
        elif any(a.startswith("s3:") for s in statements(role) for a in actions(s)):
            failures.append(f"{name} ({function}): may touch S3")
    if "CanaryFunctionRole" not in roles or len(function_roles) != 3:
        failures.append(f"function roles not found: {sorted(function_roles)}")
    for name, resource in resources.items():
        props = resource.get("Properties", {})
        kind = resource["Type"]
        if kind == "AWS::SQS::Queue" and not (
            "KmsMasterKeyId" in props or props.get("SqsManagedSseEnabled") is True
        ):
            failures.append(f"{name}: queue without encryption")
        if kind == "AWS::SNS::Topic" and "KmsMasterKeyId" not in props:
            failures.append(f"{name}: topic without KMS encryption")
        if kind == "AWS::DynamoDB::Table" and not props.get("SSESpecification", {}).get("SSEEnabled"):
            failures.append(f"{name}: table without server-side encryption")
    failures.extend(check_examples())
    for failure in failures:
        print(f"FAIL {failure}", file=sys.stderr)
    if failures:
        sys.exit(1)
    print(
        f"infra ok: {len(resources)} resources, {len(roles)} roles checked ({translated}); "
        "examples linted and checked"
    )


if __name__ == "__main__":
    main()
