#!/usr/bin/env python3
"""Offline checks of infra/: translate the SAM template to CloudFormation with aws-sam-translator
(cfn-lint does not look inside AWS::Serverless::Function), lint it, the replica-region template
(infra/regional.yaml) and the example pair with cfn-lint (no errors allowed), and check the
promises of the README on them: least privilege of the translated IAM roles, each replication
alarm in the region where S3 publishes its metric, a dashboard whose every widget reads the
region of its metrics, and the canary's KMS grant on the watched buckets' keys."""
import json
import os
import pathlib
import re
import subprocess
import sys

from samtranslator.translator.transform import transform
from samtranslator.yaml_helper import yaml_parse

ROOT = pathlib.Path(__file__).resolve().parent.parent
VENV_BIN = pathlib.Path(sys.executable).parent
OUT_DIR = ROOT / ".local/infra"

# Where S3 publishes its replication metrics (S3 user guide, "Using S3 Replication metrics").
DESTINATION_REGION_METRICS = {"ReplicationLatency", "OperationsPendingReplication", "BytesPendingReplication"}
SOURCE_REGION_METRICS = {"OperationsFailedReplication"}
# The replica-region alarms the regional stack must have (BytesPendingReplication is optional).
REQUIRED_REGIONAL_METRICS = {"ReplicationLatency", "OperationsPendingReplication"}
RULE_DIMENSIONS = ["SourceBucket", "DestinationBucket", "RuleId"]
S3_VIA_THIS_REGION = {"Fn::Sub": "s3.${AWS::Region}.amazonaws.com"}


class NoManagedPolicies:
    """The template names no AWS managed policies, so there is nothing to look up (offline)."""

    def load(self):
        return {}


def as_list(value):
    return value if isinstance(value, list) else [value]


def statements(document_holder):
    """The statements of a role's inline policies; a statement wrapped in Fn::If (optional) is
    yielded for each branch that is a statement."""
    for policy in document_holder["Properties"].get("Policies", []):
        for statement in as_list(policy["PolicyDocument"]["Statement"]):
            yield from unwrap_if(statement)


def unwrap_if(node):
    if isinstance(node, dict) and "Fn::If" in node:
        for branch in node["Fn::If"][1:]:
            yield from unwrap_if(branch)
    elif isinstance(node, dict) and node != {"Ref": "AWS::NoValue"}:
        yield node


def actions(statement):
    return as_list(statement.get("Action", []))


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


# --- A small evaluator of CloudFormation intrinsic functions, to render what a template makes of
# given parameter values (the dashboard body, optional statements). Resources become "<Name>".


class Unresolvable(Exception):
    pass


def evaluate(node, template, params):
    """The value of `node` with parameters `params` (pseudo parameters included); lists and maps
    evaluated deeply, AWS::NoValue dropped from lists."""
    if isinstance(node, list):
        values = [evaluate(item, template, params) for item in node]
        return [v for v in values if v is not NO_VALUE]
    if not isinstance(node, dict):
        return node
    if len(node) == 1:
        (key, arg), = node.items()
        if key == "Ref":
            if arg == "AWS::NoValue":
                return NO_VALUE
            if arg in params:
                return params[arg]
            if arg in template.get("Parameters", {}):
                default = template["Parameters"][arg].get("Default")
                if default is None:
                    raise Unresolvable(f"no value for parameter {arg}")
                kind = template["Parameters"][arg]["Type"]
                return default.split(",") if kind == "CommaDelimitedList" else str(default)
            if arg in template.get("Resources", {}):
                return f"<{arg}>"
            raise Unresolvable(f"Ref to unknown {arg}")
        if key == "Fn::GetAtt":
            parts = arg if isinstance(arg, list) else arg.split(".", 1)
            return f"<{parts[0]}.{parts[1]}>"
        if key == "Fn::Join":
            delimiter, items = arg
            return delimiter.join(str(v) for v in as_list(evaluate(items, template, params)))
        if key == "Fn::Split":
            delimiter, text = arg
            return evaluate(text, template, params).split(delimiter)
        if key == "Fn::Select":
            index, items = arg
            return evaluate(items, template, params)[int(evaluate(index, template, params))]
        if key == "Fn::If":
            name, yes, no = arg
            return evaluate(yes if condition(name, template, params) else no, template, params)
        if key == "Fn::Sub":
            text, variables = (arg, {}) if isinstance(arg, str) else arg
            values = {k: evaluate(v, template, params) for k, v in variables.items()}

            def substitute(match):
                if match.group(1):
                    return "${" + match.group(2) + "}"
                name = match.group(2)
                if name in values:
                    return str(values[name])
                if "." in name:
                    return f"<{name}>"
                value = evaluate({"Ref": name}, template, params)
                return ",".join(value) if isinstance(value, list) else str(value)

            return re.sub(r"\$\{(!?)([^}]*)\}", substitute, text)
        if key.startswith("Fn::") or key == "Condition":
            raise Unresolvable(f"{key} is not evaluated here")
    return {k: evaluate(v, template, params) for k, v in node.items()}


NO_VALUE = object()


def condition(name, template, params):
    return truth(template["Conditions"][name], template, params)


def truth(node, template, params):
    (key, arg), = node.items()
    if key == "Condition":
        return condition(arg, template, params)
    if key == "Fn::Equals":
        left, right = (evaluate(x, template, params) for x in arg)
        return str(left) == str(right)
    if key == "Fn::Not":
        return not truth(arg[0], template, params)
    if key == "Fn::And":
        return all(truth(x, template, params) for x in arg)
    if key == "Fn::Or":
        return any(truth(x, template, params) for x in arg)
    raise Unresolvable(f"condition function {key}")


# --- Templates in, CloudFormation out, linted.


def to_cloudformation(path):
    """The template as CloudFormation: SAM templates translated as `sam package` would (code
    locations replaced by artifact URIs), plain ones as they are. Written to .local/infra/."""
    template = yaml_parse(pathlib.Path(path).read_text())
    if "AWS::Serverless-2016-10-31" in as_list(template.get("Transform", [])):
        # What `sam build` + `sam package` do: local code becomes an uploaded artifact.
        for name, resource in template["Resources"].items():
            if resource["Type"] == "AWS::Serverless::Function":
                resource["Properties"]["CodeUri"] = f"s3://replmon-artifacts/{name}.zip"
        template = transform(template, {}, NoManagedPolicies())
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    out = OUT_DIR / f"{pathlib.Path(path).stem}.cfn.json"
    out.write_text(json.dumps(template, indent=1))
    return template, out


def lint(paths, what):
    result = subprocess.run(
        [str(VENV_BIN / "cfn-lint"), "--format", "parseable", *map(str, paths)],
        capture_output=True,
        text=True,
    )
    print(result.stdout, end="")
    print(result.stderr, end="", file=sys.stderr)
    # cfn-lint's exit code is a bit mask: 2 errors, 4 warnings, 8 informational.
    return [f"cfn-lint found errors in {what} (exit {result.returncode})"] if result.returncode & 3 else []


# --- Checks. Each takes a CloudFormation template (a dict) and a name for its messages, and
# returns the failures: callable on any version of a template (scripts, or an old file).


def alarm_metrics(alarm):
    """The metric names an alarm watches (a plain metric or each metric of metric math)."""
    props = alarm.get("Properties", {})
    names = [props["MetricName"]] if "MetricName" in props else []
    for query in props.get("Metrics", []):
        metric = query.get("MetricStat", {}).get("Metric", {})
        if "MetricName" in metric:
            names.append(metric["MetricName"])
    return names


def check_source_region_alarms(template, name):
    """A template deployed in the source (monitor) region holds no alarm on a metric S3 publishes
    in the destination's region: such an alarm never sees a datapoint and never fires."""
    failures = []
    for logical_id, resource in template["Resources"].items():
        if resource["Type"] == "AWS::CloudWatch::Alarm":
            for metric in alarm_metrics(resource):
                if metric in DESTINATION_REGION_METRICS:
                    failures.append(
                        f"{name} {logical_id}: alarm on {metric} in a source-region template "
                        "(S3 publishes it in the destination's region: infra/regional.yaml)"
                    )
    return failures


def check_regional(template, name):
    """infra/regional.yaml: the destination-region alarms of one rule, named with the monitor's
    prefix, and a forwarder of exactly their state changes to the monitor region's bus whose
    role may only put events on that bus."""
    failures = []
    resources = template["Resources"]
    params = template.get("Parameters", {})
    for required in ("SourceBucket", "DestinationBucket", "RuleId", "MonitorRegion", "AlarmNamePrefix"):
        if required not in params:
            failures.append(f"{name}: no parameter {required}")
    alarms = {k: r for k, r in resources.items() if r["Type"] == "AWS::CloudWatch::Alarm"}
    s3_alarms = {k: r for k, r in alarms.items() if r["Properties"].get("Namespace") == "AWS/S3"}
    watched = {m for r in s3_alarms.values() for m in alarm_metrics(r)}
    for missing in sorted(REQUIRED_REGIONAL_METRICS - watched):
        failures.append(f"{name}: no alarm on {missing}")
    for logical_id, alarm in s3_alarms.items():
        props = alarm["Properties"]
        for metric in alarm_metrics(alarm):
            if metric in SOURCE_REGION_METRICS or metric not in DESTINATION_REGION_METRICS:
                failures.append(f"{name} {logical_id}: {metric} is not published in the destination's region")
        dimensions = {d["Name"]: d["Value"] for d in props.get("Dimensions", [])}
        if sorted(dimensions) != sorted(RULE_DIMENSIONS) or any(
            dimensions[d] != {"Ref": d} for d in RULE_DIMENSIONS
        ):
            failures.append(f"{name} {logical_id}: dimensions must be {RULE_DIMENSIONS} from the parameters")
    alarm_names = []
    for logical_id, alarm in alarms.items():
        alarm_name = alarm["Properties"].get("AlarmName")
        if not (isinstance(alarm_name, dict) and str(alarm_name.get("Fn::Sub", "")).startswith("${AlarmNamePrefix}")):
            failures.append(f"{name} {logical_id}: alarm name does not start with the monitor's AlarmNamePrefix")
        alarm_names.append(alarm_name)

    rules = {k: r for k, r in resources.items() if r["Type"] == "AWS::Events::Rule"}
    roles = {k: r for k, r in resources.items() if r["Type"] == "AWS::IAM::Role"}
    if len(rules) != 1:
        failures.append(f"{name}: expected one forwarding rule, found {sorted(rules)}")
        return failures
    (rule_id, rule), = rules.items()
    props = rule["Properties"]
    pattern = props.get("EventPattern", {})
    if pattern.get("source") != ["aws.cloudwatch"] or pattern.get("detail-type") != ["CloudWatch Alarm State Change"]:
        failures.append(f"{name} {rule_id}: pattern is not aws.cloudwatch / CloudWatch Alarm State Change")
    forwarded = pattern.get("detail", {}).get("alarmName", [])
    for alarm_name in alarm_names:
        if alarm_name not in forwarded:
            failures.append(f"{name} {rule_id}: does not forward {alarm_name}")
    targets = props.get("Targets", [])
    bus_arn = None
    if len(targets) != 1:
        failures.append(f"{name} {rule_id}: expected one target, found {len(targets)}")
    else:
        bus_arn = targets[0].get("Arn")
        rendered = str(bus_arn.get("Fn::Sub", [""])[0] if isinstance(bus_arn, dict) else bus_arn)
        if not re.fullmatch(r"arn:\$\{AWS::Partition\}:events:\$\{MonitorRegion\}:\$\{\w+\}:event-bus/default", rendered):
            failures.append(f"{name} {rule_id}: target is not the monitor region's default bus: {bus_arn}")
        role_ref = targets[0].get("RoleArn", {}).get("Fn::GetAtt", [None])[0]
        if role_ref not in roles:
            failures.append(f"{name} {rule_id}: target has no role of this stack")
    for role_id, role in roles.items():
        trust = [s.get("Principal", {}).get("Service") for s in as_list(role["Properties"]["AssumeRolePolicyDocument"]["Statement"])]
        if trust != ["events.amazonaws.com"]:
            failures.append(f"{name} {role_id}: trusted by {trust}, not only EventBridge")
        granted = list(statements(role))
        if (
            len(granted) != 1
            or granted[0].get("Effect") != "Allow"
            or actions(granted[0]) != ["events:PutEvents"]
            or granted[0].get("Resource") != bus_arn
        ):
            failures.append(f"{name} {role_id}: must allow only events:PutEvents on the target bus: {granted}")
    return failures


def check_alarm_rule_accepts_forwarded(template, name):
    """Alarms of the replica regions reach the monitor's bus forwarded with their own region and
    account: the alarm rule must not restrict either."""
    failures = []
    found = False
    for logical_id, resource in template["Resources"].items():
        if resource["Type"] != "AWS::Events::Rule":
            continue
        for pattern in unwrap_if(resource["Properties"].get("EventPattern", {})):
            if pattern.get("source") != ["aws.cloudwatch"]:
                continue
            found = True
            for key in ("region", "account"):
                if key in pattern:
                    failures.append(f"{name} {logical_id}: the alarm rule restricts {key}: forwarded alarms are lost")
    if not found:
        failures.append(f"{name}: no EventBridge rule for CloudWatch alarm state changes")
    return failures


def check_dashboard(template, name):
    """Render the dashboard for two replica regions: every widget that reads data names a region;
    latency and pending widgets read each replica region (from ReplicaRegions) and nothing else;
    failures, canary and log widgets read this (the source) region."""
    failures = []
    if template.get("Parameters", {}).get("ReplicaRegions", {}).get("Type") != "CommaDelimitedList":
        failures.append(f"{name}: no ReplicaRegions (CommaDelimitedList) parameter")
    replicas = ["replica-region-a", "replica-region-b"]
    params = {
        "AWS::Region": "monitor-region",
        "AWS::AccountId": "111122223333",
        "AWS::Partition": "aws",
        "AWS::StackName": "replmon",
        "ReplicaRegions": replicas,
    }
    dashboards = [r for r in template["Resources"].values() if r["Type"] == "AWS::CloudWatch::Dashboard"]
    if len(dashboards) != 1:
        return failures + [f"{name}: expected one dashboard, found {len(dashboards)}"]
    try:
        body = evaluate(dashboards[0]["Properties"]["DashboardBody"], template, params)
        widgets = json.loads(body)["widgets"]
    except (Unresolvable, ValueError, KeyError) as error:
        return failures + [f"{name}: dashboard body does not render: {error}"]
    seen = {metric: set() for metric in DESTINATION_REGION_METRICS}
    for index, widget in enumerate(widgets):
        if widget.get("type") == "text":
            continue
        props = widget.get("properties", {})
        title = props.get("title", f"widget {index}")
        region = props.get("region")
        if not region:
            failures.append(f"{name} dashboard '{title}': names no region")
            continue
        text = json.dumps(props)
        metrics = {m for m in DESTINATION_REGION_METRICS | SOURCE_REGION_METRICS if re.search(rf"\b{m}\b", text)}
        destination = metrics & DESTINATION_REGION_METRICS
        if destination and metrics - destination:
            failures.append(f"{name} dashboard '{title}': mixes metrics of the source and destination regions")
        if destination:
            if region not in replicas:
                failures.append(
                    f"{name} dashboard '{title}': reads {sorted(destination)} in {region}, "
                    "not in a replica region (ReplicaRegions)"
                )
            for metric in destination:
                seen[metric].add(region)
        elif region != "monitor-region":
            failures.append(f"{name} dashboard '{title}': reads {region}, not this (the source) region")
    for metric in sorted(m for m in ("ReplicationLatency", "OperationsPendingReplication") if seen[m] != set(replicas)):
        failures.append(f"{name} dashboard: {metric} shown for {sorted(seen[metric])}, not for every replica region {replicas}")
    return failures


def check_canary_kms(template, name):
    """The canary's probe PUT into an SSE-KMS bucket needs kms:GenerateDataKey on the bucket's key:
    a grant on the keys listed in CanaryBucketKeyArns, only that action, only via S3 of this
    region, and absent when the list is empty. No other key grants beyond the monitor's own key."""
    failures = []
    parameter = template.get("Parameters", {}).get("CanaryBucketKeyArns")
    if not parameter or parameter.get("Type") != "CommaDelimitedList" or parameter.get("Default") != "":
        failures.append(f"{name}: no CanaryBucketKeyArns parameter (CommaDelimitedList, empty by default)")
    role = template["Resources"].get("CanaryFunctionRole")
    if not role:
        return failures + [f"{name}: no CanaryFunctionRole"]
    grants = []
    for statement in statements(role):
        kms = [a for a in actions(statement) if a.startswith("kms:")]
        if not kms:
            continue
        if statement.get("Resource") == {"Fn::GetAtt": ["MonitorKey", "Arn"]}:
            continue  # the monitor's own key: its topic and table
        grants.append(statement)
        if statement.get("Resource") != {"Ref": "CanaryBucketKeyArns"}:
            failures.append(f"{name} CanaryFunctionRole: KMS grant on {statement.get('Resource')}, not CanaryBucketKeyArns")
        if kms != ["kms:GenerateDataKey"] or len(actions(statement)) != 1:
            failures.append(f"{name} CanaryFunctionRole: bucket keys grant {actions(statement)}, not only kms:GenerateDataKey")
        if statement.get("Condition") != {"StringEquals": {"kms:ViaService": S3_VIA_THIS_REGION}}:
            failures.append(
                f"{name} CanaryFunctionRole: bucket keys grant without the condition "
                f"kms:ViaService = s3.<region>.amazonaws.com: {statement.get('Condition')}"
            )
    if not grants:
        failures.append(f"{name} CanaryFunctionRole: no kms:GenerateDataKey on the watched buckets' keys (probe PUTs into SSE-KMS buckets are denied)")
        return failures
    # Rendered with and without keys: no statement at all for an empty list.
    for keys, expected in (([""], 0), (["arn:aws:kms:monitor-region:111122223333:key/k"], len(grants))):
        params = {"CanaryBucketKeyArns": keys, "AWS::Region": "monitor-region", "AWS::Partition": "aws",
                  "AWS::AccountId": "111122223333", "WatchedSourceBuckets": ["source"],
                  "ReplicaBuckets": ["replica"], "ReplicaRegions": ["replica-region"]}
        rendered = []
        for policy in role["Properties"].get("Policies", []):
            for statement in as_list(policy["PolicyDocument"]["Statement"]):
                try:
                    value = evaluate(statement, template, params)
                except Unresolvable as error:
                    failures.append(f"{name} CanaryFunctionRole: statement does not render: {error}")
                    continue
                if (
                    value is not NO_VALUE
                    and value.get("Resource") != "<MonitorKey.Arn>"
                    and any(str(a).startswith("kms:") for a in actions(value))
                ):
                    rendered.append(value)
        if len(rendered) != expected:
            failures.append(f"{name} CanaryFunctionRole: with CanaryBucketKeyArns={keys} {len(rendered)} key grants, expected {expected}")
    return failures


def check_source_key_policy(template, name):
    """The example source bucket's key lets the monitor's canary role GenerateDataKey, via S3 of
    the bucket's region, and nothing more."""
    failures = []
    found = False
    for logical_id, resource in template["Resources"].items():
        if resource["Type"] != "AWS::KMS::Key":
            continue
        for statement in as_list(resource["Properties"]["KeyPolicy"]["Statement"]):
            if statement.get("Principal", {}).get("AWS") != {"Ref": "CanaryRoleArn"}:
                continue
            found = True
            if actions(statement) != ["kms:GenerateDataKey"]:
                failures.append(f"{name} {logical_id}: the canary may {actions(statement)}, not only kms:GenerateDataKey")
            if statement.get("Condition") != {"StringEquals": {"kms:ViaService": S3_VIA_THIS_REGION}}:
                failures.append(f"{name} {logical_id}: the canary's grant lacks kms:ViaService = s3.<region>.amazonaws.com")
    if not found:
        failures.append(f"{name}: no key policy statement lets the canary role (CanaryRoleArn) encrypt its probes")
    return failures


def check_protection(cfn, name):
    """The stack protects its own data (README, "Robustness"): the retained table's key is
    retained too and the table cannot be deleted by accident; the monitor's own alarms reach
    on-call whatever filter the page subscriptions use; the queue keeps events long enough and
    pages before they expire; every function logs to a log group of the stack, kept for a
    while and encrypted; only the functions and CloudWatch publish to the topics; nothing
    reaches a topic or queue without TLS; the key names only the services that use it."""
    failures = []
    resources = cfn["Resources"]
    of_type = lambda kind: {k: r for k, r in resources.items() if r["Type"] == kind}
    key_refs = ({"Ref": "MonitorKey"}, {"Fn::GetAtt": ["MonitorKey", "Arn"]})
    for key_id, key in of_type("AWS::KMS::Key").items():
        if key.get("DeletionPolicy") != "Retain" or key.get("UpdateReplacePolicy") != "Retain":
            failures.append(f"{name} {key_id}: key not retained with the table it encrypts")
        if key["Properties"].get("PendingWindowInDays") != 30:
            failures.append(f"{name} {key_id}: key deletion not pending 30 days")
        services = set()
        for statement in as_list(key["Properties"]["KeyPolicy"]["Statement"]):
            for service in as_list(statement.get("Principal", {}).get("Service", [])):
                services.add(json.dumps(service, sort_keys=True))
        expected = {json.dumps(s, sort_keys=True) for s in (
            "s3.amazonaws.com", "cloudwatch.amazonaws.com", {"Fn::Sub": "logs.${AWS::Region}.amazonaws.com"})}
        if services != expected:
            failures.append(f"{name} {key_id}: key policy services {sorted(services)}, not {sorted(expected)}")
    for table_id, table in of_type("AWS::DynamoDB::Table").items():
        if not table["Properties"].get("DeletionProtectionEnabled"):
            failures.append(f"{name} {table_id}: table without deletion protection")
    # The monitor's own alarms publish CloudWatch's JSON without message attributes: they go to
    # a topic of their own, never to the page topic whose subscriptions filter on attributes.
    page_topic = {"Ref": "PageTopic"}
    for alarm_id, alarm in of_type("AWS::CloudWatch::Alarm").items():
        for kind in ("AlarmActions", "OKActions", "InsufficientDataActions"):
            if page_topic in alarm["Properties"].get(kind, []):
                failures.append(f"{name} {alarm_id}: {kind} on the page topic (no attributes to filter on)")
    if "OperationsTopic" not in resources:
        failures.append(f"{name}: no operations topic for the monitor's own alarms")
    queue = resources.get("ReplicationEventsQueue", {}).get("Properties", {})
    if queue.get("MessageRetentionPeriod") != 1209600:
        failures.append(f"{name} ReplicationEventsQueue: events kept less than 14 days")
    timeout = resources["ReplicationEventsFunction"]["Properties"]["Timeout"]
    if queue.get("VisibilityTimeout", 30) < 6 * timeout:
        failures.append(f"{name} ReplicationEventsQueue: visibility timeout under six times the function's {timeout} s")
    ages = [a for a in of_type("AWS::CloudWatch::Alarm").values()
            if a["Properties"].get("MetricName") == "ApproximateAgeOfOldestMessage"
            and {"Name": "QueueName", "Value": {"Fn::GetAtt": ["ReplicationEventsQueue", "QueueName"]}}
            in a["Properties"].get("Dimensions", [])]
    if not ages:
        failures.append(f"{name}: no alarm on the age of the oldest replication event")
    log_groups = of_type("AWS::Logs::LogGroup")
    for function_id, function in of_type("AWS::Lambda::Function").items():
        group = function["Properties"].get("LoggingConfig", {}).get("LogGroup")
        group_id = group.get("Ref") if isinstance(group, dict) else None
        if group_id not in log_groups:
            failures.append(f"{name} {function_id}: logs to no log group of the stack")
            continue
        props = log_groups[group_id]["Properties"]
        if not props.get("RetentionInDays") or props.get("KmsKeyId") not in key_refs:
            failures.append(f"{name} {group_id}: log group without retention or KMS encryption")
    role_arn = lambda f: {"Fn::GetAtt": [f"{f}Role", "Arn"]}
    functions = [role_arn(f) for f in ("ReplicationEventsFunction", "AlarmEventsFunction", "CanaryFunction", "RedriveFunction")]
    topic_policies = of_type("AWS::SNS::TopicPolicy")
    for topic_id in of_type("AWS::SNS::Topic"):
        policies = [p for p in topic_policies.values() if {"Ref": topic_id} in p["Properties"]["Topics"]]
        if not policies:
            failures.append(f"{name} {topic_id}: no topic policy")
            continue
        document = json.dumps(policies[0]["Properties"]["PolicyDocument"], sort_keys=True)
        if '"aws:SecureTransport": "false"' not in document:
            failures.append(f"{name} {topic_id}: publishing without TLS not denied")
        denies = [s for s in as_list(policies[0]["Properties"]["PolicyDocument"]["Statement"])
                  if s["Effect"] == "Deny" and "sns:Publish" in actions(s)
                  and "aws:PrincipalArn" in json.dumps(s.get("Condition", {}))]
        if not denies:
            failures.append(f"{name} {topic_id}: publishing by others than the functions and alarms not denied")
        elif not all(f in as_list(denies[0]["Condition"]["ArnNotEquals"]["aws:PrincipalArn"]) for f in functions):
            failures.append(f"{name} {topic_id}: the functions' roles are not the publishers allowed")
    queue_policies = of_type("AWS::SQS::QueuePolicy")
    for queue_id in of_type("AWS::SQS::Queue"):
        policies = [p for p in queue_policies.values() if {"Ref": queue_id} in p["Properties"]["Queues"]]
        if not any('"aws:SecureTransport": "false"' in json.dumps(p["Properties"]["PolicyDocument"], sort_keys=True)
                   for p in policies):
            failures.append(f"{name} {queue_id}: access without TLS not denied")
    return failures


def check_monitor(cfn, name="template.yaml"):
    failures = []
    resources = cfn["Resources"]
    roles = {n: r for n, r in resources.items() if r["Type"] == "AWS::IAM::Role"}
    functions = {n: r for n, r in resources.items() if r["Type"] == "AWS::Lambda::Function"}
    if len(functions) != 4:
        failures.append(f"expected 4 functions, found {sorted(functions)}")
    function_roles = {
        f["Properties"]["Role"]["Fn::GetAtt"][0]: n
        for n, f in functions.items()
        if isinstance(f["Properties"].get("Role"), dict)
    }
    for role_id, role in roles.items():
        for statement in statements(role):
            for action in actions(statement):
                if action == "*" or action.endswith(":*"):
                    failures.append(f"{role_id}: wildcard action {action}")
        s3_object_writes = [
            (a, s)
            for s in statements(role)
            for a in actions(s)
            if a in ("s3:PutObject", "s3:PutObjectTagging", "s3:DeleteObject", "s3:DeleteObjectVersion")
        ]
        function = function_roles.get(role_id)
        if function == "CanaryFunction":
            for action, statement in s3_object_writes:
                suffixes = arn_suffixes(statement.get("Resource"))
                if not suffixes or not all(x.endswith("/replmon-canary/*") for x in suffixes):
                    failures.append(f"{role_id}: {action} outside the canary segment: {suffixes}")
            if not s3_object_writes:
                failures.append(f"{role_id}: the canary cannot write its probes")
        elif function == "RedriveFunction":
            # Re-drive: start and follow jobs, read their files; no object of a watched bucket.
            reports = {"Fn::Sub": "${RedriveReports.Arn}/replmon-redrive/*"}
            for statement in statements(role):
                for action in actions(statement):
                    if not action.startswith("s3:"):
                        continue
                    resource = statement.get("Resource")
                    if action == "s3:CreateJob":
                        continue
                    if action == "s3:DescribeJob" and ":job/*" in json.dumps(resource):
                        continue
                    if action == "s3:GetObject" and resource == reports:
                        continue
                    if action == "s3:ListBucket" and resource == {"Fn::GetAtt": ["RedriveReports", "Arn"]}:
                        continue
                    failures.append(f"{role_id}: {action} on {resource} (re-drives read only their reports)")
                if "iam:PassRole" in actions(statement) and (
                    statement.get("Resource") != {"Fn::GetAtt": ["BatchReplicationRole", "Arn"]}
                    or statement.get("Condition") != {"StringEquals": {"iam:PassedToService": "batchoperations.s3.amazonaws.com"}}
                ):
                    failures.append(f"{role_id}: iam:PassRole beyond BatchReplicationRole for Batch Operations")
        elif role_id == "BatchReplicationRole":
            trust = json.dumps(role["Properties"]["AssumeRolePolicyDocument"], sort_keys=True)
            if "batchoperations.s3.amazonaws.com" not in trust or "aws:SourceAccount" not in trust:
                failures.append(f"{role_id}: not trusted by Batch Operations of this account only")
            allowed = {"s3:InitiateReplication", "s3:GetReplicationConfiguration", "s3:PutInventoryConfiguration", "s3:PutObject"}
            for statement in statements(role):
                for action in actions(statement):
                    if action not in allowed:
                        failures.append(f"{role_id}: {action} (a re-drive job needs only {sorted(allowed)})")
                    if action == "s3:PutObject" and statement.get("Resource") != {"Fn::Sub": "${RedriveReports.Arn}/replmon-redrive/*"}:
                        failures.append(f"{role_id}: writes outside the re-drive reports: {statement.get('Resource')}")
        elif any(a.startswith("s3:") for s in statements(role) for a in actions(s)):
            failures.append(f"{role_id} ({function}): may touch S3")
    if "CanaryFunctionRole" not in roles or len(function_roles) != 4:
        failures.append(f"function roles not found: {sorted(function_roles)}")
    for logical_id, resource in resources.items():
        props = resource.get("Properties", {})
        kind = resource["Type"]
        if kind == "AWS::SQS::Queue" and not (
            "KmsMasterKeyId" in props or props.get("SqsManagedSseEnabled") is True
        ):
            failures.append(f"{logical_id}: queue without encryption")
        if kind == "AWS::SNS::Topic" and "KmsMasterKeyId" not in props:
            failures.append(f"{logical_id}: topic without KMS encryption")
        if kind == "AWS::DynamoDB::Table" and not props.get("SSESpecification", {}).get("SSEEnabled"):
            failures.append(f"{logical_id}: table without server-side encryption")
    failures += check_source_region_alarms(cfn, name)
    failures += check_alarm_rule_accepts_forwarded(cfn, name)
    failures += check_dashboard(cfn, name)
    failures += check_canary_kms(cfn, name)
    failures += check_protection(cfn, name)
    return failures


def check_examples():
    """The replicated pair in infra/examples: lint, and the promises its README makes."""
    examples = sorted((ROOT / "infra/examples").glob("*.yaml"))
    failures = lint(examples, "the examples")
    for path in examples:
        template = yaml_parse(path.read_text())
        resources = template["Resources"]
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
                # Orphaned canary probes expire (every version) after a day.
                expiring = [r for r in props.get("LifecycleConfiguration", {}).get("Rules", [])
                            if r.get("Status") == "Enabled" and r.get("Prefix") == "replmon-canary/"
                            and r.get("ExpirationInDays") == 1
                            and r.get("NoncurrentVersionExpiration", {}).get("NoncurrentDays") == 1]
                if not expiring:
                    failures.append(f"{path.name} {name}: orphaned canary probes never expire")
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
        if path.name == "source.yaml":
            failures += check_source_region_alarms(template, path.name)
            failed_alarms = [r for r in resources.values() if r["Type"] == "AWS::CloudWatch::Alarm"
                             and "OperationsFailedReplication" in alarm_metrics(r)]
            if not failed_alarms:
                failures.append(f"{path.name}: no OperationsFailedReplication alarm in the source region")
            failures += check_source_key_policy(template, path.name)
    return failures


def main():
    # The translator fills in pseudo parameters from a region; nothing is called.
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    monitor, monitor_out = to_cloudformation(ROOT / "infra/template.yaml")
    regional, regional_out = to_cloudformation(ROOT / "infra/regional.yaml")
    failures = lint([monitor_out], "template.yaml (translated)") + lint([regional_out], "regional.yaml")
    failures += check_monitor(monitor)
    failures += check_regional(regional, "regional.yaml")
    failures += check_examples()
    for failure in failures:
        print(f"FAIL {failure}", file=sys.stderr)
    if failures:
        sys.exit(1)
    roles = sum(1 for t in (monitor, regional) for r in t["Resources"].values() if r["Type"] == "AWS::IAM::Role")
    print(
        f"infra ok: monitor {len(monitor['Resources'])} resources, regional {len(regional['Resources'])}, "
        f"{roles} roles checked ({monitor_out}, {regional_out}); dashboard regions, alarm regions and "
        "canary KMS grant checked; examples linted and checked"
    )


if __name__ == "__main__":
    main()
