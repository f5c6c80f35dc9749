"""Check a packaged template (``build/<stage>/sam.json``) against the code.

Every check returns a list of problems, empty when the template and the code agree:

* ``check_tables``: every table the models define exists with the settings' name, keys, GSIs
  and TTL attribute, and every function's ``*_TABLE`` variable points at it;
* ``check_environment``: the settings load from exactly the variables a function gets (a
  required variable missing fails), no variable is set that nothing reads, and the queue,
  topic and key variables point at the stack's queue, topic and key;
* ``check_events``: queue consumers read the stack's work queue with partial batch responses;
* ``check_policies``: each role allows exactly what the code reachable from its function
  calls (``infra.codescan``), plus the platform's needs; no wildcard action; the audit table
  append-only;
* ``check_security``: encryption, key rotation, PITR, prod deletion protection, alarms.

`python -m infra.checks --stage prod` runs them all (``make deploy`` does, before deploying).
"""

from __future__ import annotations

import argparse
import ast
import json
import sys
from collections.abc import Iterator, Mapping
from typing import Any

from chalicelib import metrics_names
from chalicelib.settings import TABLE_ENV
from infra import codescan, lambdas, names, policy, stack
from infra.lambdas import LambdaInfo

Json = dict[str, Any]
FUNCTION_TYPES = ("AWS::Serverless::Function", "AWS::Lambda::Function")
# Variables read by libraries rather than by our settings (Powertools' logger and metrics).
LIBRARY_ENV = frozenset({"POWERTOOLS_SERVICE_NAME", "POWERTOOLS_METRICS_NAMESPACE",
                         "POWERTOOLS_LOG_LEVEL", "LOG_LEVEL", "POWERTOOLS_TRACE_DISABLED"})
# Loopback allowances exist for the local fake providers only (settings refuses them too).
FORBIDDEN_ENV = frozenset({"OUTBOUND_ALLOW_HOSTS", "OUTBOUND_ALLOW_HTTP",
                           "OUTBOUND_ALLOW_UNSAFE", "AWS_ENDPOINT_URL"})


def load_template(stage: str) -> Json:
    return json.loads((names.build_dir(stage) / "sam.json").read_text())


def functions(template: Json) -> dict[str, Json]:
    return {k: v for k, v in template.get("Resources", {}).items()
            if v.get("Type") in FUNCTION_TYPES}


def _key(expr: Any) -> str:
    return json.dumps(expr, sort_keys=True)


def _walk(node: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    yield path, node
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _walk(v, f"{path}.{k}" if path else k)
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _walk(v, f"{path}[{i}]")


def check_intrinsics(template: Json) -> list[str]:
    """A deep merge can put two intrinsics in one object; CloudFormation rejects that."""
    out = []
    for path, node in _walk(template):
        if isinstance(node, dict) and len(node) > 1 and any(
                k == "Ref" or k.startswith("Fn::") for k in node):
            out.append(f"{path}: more than one key next to an intrinsic function: {sorted(node)}")
    return out


def check_tables(template: Json, stage: str) -> list[str]:
    problems = []
    resources = template.get("Resources", {})
    by_name = {r.get("Properties", {}).get("TableName"): (lid, r) for lid, r in resources.items()
               if r.get("Type") == "AWS::DynamoDB::Table"}
    fns = functions(template)
    for key, spec in stack.table_specs().items():
        name = names.table_name(stage, key)
        env = TABLE_ENV[key]
        if name not in by_name:
            problems.append(f"table {name} ({env}, models {', '.join(spec['models'])}) is "
                            "missing from the template")
            continue
        logical, table = by_name[name]
        props = table.get("Properties", {})
        if props.get("KeySchema") != spec["key_schema"]:
            problems.append(f"table {name}: key schema {props.get('KeySchema')} != models' "
                            f"{spec['key_schema']}")
        attrs = {a["AttributeName"]: a["AttributeType"]
                 for a in props.get("AttributeDefinitions", [])}
        for attr, kind in spec["attributes"].items():
            if attrs.get(attr) != kind:
                problems.append(f"table {name}: attribute {attr} should be defined as {kind}")
        indexes = {i["IndexName"]: i for i in props.get("GlobalSecondaryIndexes", [])}
        for index_name, index in spec["indexes"].items():
            got = indexes.get(index_name)
            if got is None:
                problems.append(f"table {name}: index {index_name} is missing")
            elif got.get("KeySchema") != index["KeySchema"] or \
                    got.get("Projection") != index["Projection"]:
                problems.append(f"table {name}: index {index_name} differs from the model's")
        ttl = props.get("TimeToLiveSpecification") or {}
        if spec["ttl"] and (ttl.get("AttributeName") != spec["ttl"] or not ttl.get("Enabled")):
            problems.append(f"table {name}: TTL should be enabled on {spec['ttl']}")
        for fn_id, fn in fns.items():
            value = _env(fn).get(env)
            if value != {"Ref": logical}:
                problems.append(f"{fn_id}: {env} should be {{'Ref': '{logical}'}}, got {value}")
    return problems


def _env(fn: Json) -> Json:
    return fn.get("Properties", {}).get("Environment", {}).get("Variables", {}) or {}


class _Recorder(dict[str, str]):
    def __init__(self, values: Mapping[str, str]) -> None:
        super().__init__(values)
        self.read: set[str] = set()

    def get(self, key: str, default: Any = None) -> Any:
        self.read.add(key)
        return super().get(key, default)

    def __getitem__(self, key: str) -> str:
        self.read.add(key)
        return super().__getitem__(key)

    def __contains__(self, key: object) -> bool:
        self.read.add(str(key))
        return super().__contains__(key)


def load_settings(values: Mapping[str, str]) -> tuple[set[str], str | None]:
    """Build the app's Settings from exactly ``values``: (variables read, error or None)."""
    import os
    import types

    from chalicelib import settings as settings_mod

    recorder = _Recorder(values)

    class _Os(types.SimpleNamespace):
        def __getattr__(self, name: str) -> Any:
            return getattr(os, name)

    fake = _Os(environ=recorder, getenv=lambda k, d=None: recorder.get(k, d))
    real = settings_mod.os
    settings_mod.os = fake  # type: ignore[assignment]
    settings_mod.get_settings.cache_clear()
    try:
        settings_mod.get_settings()
        error = None
    except settings_mod.SettingsError as exc:
        error = str(exc)
    finally:
        settings_mod.os = real
        settings_mod.get_settings.cache_clear()
    return recorder.read, error


def import_time_env() -> set[str]:
    """Variables app.py reads when it is imported (``os.environ.get("X", ...)``)."""
    tree = ast.parse((names.ROOT / "app.py").read_text())
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant) \
                and isinstance(node.args[0].value, str) and \
                ast.unparse(node.func) in ("os.environ.get", "os.getenv"):
            out.add(node.args[0].value)
    return out


def _placeholders(env: Json) -> dict[str, str]:
    return {k: (v if isinstance(v, str) else f"{{{k}}}") for k, v in env.items()}


def check_environment(template: Json) -> list[str]:
    problems = []
    expected = {
        "WORK_QUEUE_URL": ({"Ref": names.WORK_QUEUE}, "AWS::SQS::Queue"),
        "ALERTS_TOPIC_ARN": ({"Ref": names.ALERTS_TOPIC}, "AWS::SNS::Topic"),
        "KMS_KEY_ID": (stack.secrets_key_arn(), "AWS::KMS::Key"),
    }
    resources = template.get("Resources", {})
    for fn_id, fn in functions(template).items():
        env = _env(fn)
        values = _placeholders(env)
        read, error = load_settings(values)
        if error:
            problems.append(f"{fn_id}: the app's settings do not load from its environment: "
                            f"{error}")
        for var in sorted(env):
            if var in FORBIDDEN_ENV:
                problems.append(f"{fn_id}: {var} must not be set in a deployed stage")
            elif var not in read | LIBRARY_ENV | import_time_env():
                problems.append(f"{fn_id}: {var} is set but nothing reads it")
        for var, (value, kind) in expected.items():
            if env.get(var) != value:
                problems.append(f"{fn_id}: {var} should be {value}, got {env.get(var)}")
            target = names.SECRETS_KEY if var == "KMS_KEY_ID" else value["Ref"]
            if resources.get(target, {}).get("Type") != kind:
                problems.append(f"{var} points at {target}, which is not a {kind} of the stack")
        if env.get("ADMIN_GROUP", "admins") != resources.get(names.ADMINS_GROUP, {}).get(
                "Properties", {}).get("GroupName"):
            problems.append(f"{fn_id}: ADMIN_GROUP does not match the Cognito group name")
    return problems


def check_events(template: Json) -> list[str]:
    problems = []
    resources = template.get("Resources", {})
    queue = resources.get(names.WORK_QUEUE, {}).get("Properties", {})
    queue_refs = ({"Fn::Sub": f"${{{names.WORK_QUEUE}.Arn}}"},
                  {"Fn::GetAtt": [names.WORK_QUEUE, "Arn"]})
    for fn_id, fn in functions(template).items():
        for name, event in (fn.get("Properties", {}).get("Events") or {}).items():
            props = event.get("Properties", {})
            if event.get("Type") == "SQS":
                if props.get("Queue") not in queue_refs:
                    problems.append(f"{fn_id}.{name}: consumes {props.get('Queue')}, not the "
                                    "stack's work queue")
                if "ReportBatchItemFailures" not in props.get("FunctionResponseTypes", []):
                    problems.append(f"{fn_id}.{name}: partial batch responses are off")
                timeout = fn.get("Properties", {}).get("Timeout", 3)
                if queue.get("VisibilityTimeout", 30) < timeout:
                    problems.append(f"{fn_id}: the work queue's visibility timeout is shorter "
                                    "than the function's timeout")
            elif event.get("Type") == "Schedule" and not props.get("Schedule"):
                problems.append(f"{fn_id}.{name}: a schedule without an expression")
    return problems


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _resource_symbols() -> dict[str, str]:
    symbols = {_key(stack.resource_arn(r)): r for r in stack.known_resources()}
    symbols[_key({"Fn::If": ["HasPreviousSecretsKey", {"Ref": "PreviousSecretsKeyArn"},
                             {"Ref": "AWS::NoValue"}]})] = "key/previous"
    symbols[_key(stack.subscriptions_arn("topic/alerts"))] = "topic/alerts"
    symbols[_key("*")] = "*"
    return symbols


def role_statements(template: Json, fn: Json) -> tuple[str | None, list[Json]]:
    """(role logical id, statements of every policy attached to it) of a function."""
    role = fn.get("Properties", {}).get("Role")
    if not (isinstance(role, dict) and "Fn::GetAtt" in role):
        return None, []
    role_id = role["Fn::GetAtt"][0]
    resources = template.get("Resources", {})
    statements: list[Json] = []
    for p in resources.get(role_id, {}).get("Properties", {}).get("Policies", []):
        statements.extend(p.get("PolicyDocument", {}).get("Statement", []))
    for r in resources.values():
        if r.get("Type") == "AWS::IAM::RolePolicy" and \
                r.get("Properties", {}).get("RoleName") == {"Ref": role_id}:
            statements.extend(r["Properties"]["PolicyDocument"].get("Statement", []))
        if r.get("Type") in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy") and \
                {"Ref": role_id} in r.get("Properties", {}).get("Roles", []):
            statements.extend(r["Properties"]["PolicyDocument"].get("Statement", []))
    return role_id, statements


def _platform(fn: LambdaInfo, stage: str) -> set[tuple[str, str]]:
    out: set[tuple[str, str]] = set()
    for s in stack.platform_statements(fn, stage):
        res = s["Resource"]
        symbol = "logs/own" if "logs:" in s["Action"][0] else _resource_symbols()[_key(res)]
        out.update((symbol, a) for a in s["Action"])
    return out


def check_policies(template: Json, stage: str, fns: list[LambdaInfo],
                   scan: codescan.Scan) -> list[str]:
    problems = []
    symbols = _resource_symbols()
    cfn = functions(template)
    for fn in fns:
        resource = cfn.get(fn.cfn_name)
        if resource is None:
            problems.append(f"{fn.cfn_name} ({fn.name}) is not in the template")
            continue
        missing_roots = scan.missing_roots(fn.roots)
        if missing_roots:
            problems.append(f"{fn.name}: codescan does not know its handlers {missing_roots}")
        role_id, statements = role_statements(template, resource)
        if role_id is None:
            problems.append(f"{fn.cfn_name}: its role is not a role of this stack "
                            f"({resource.get('Properties', {}).get('Role')})")
            continue
        log_group = f"/aws/lambda/{resource['Properties'].get('FunctionName')}:*"
        allowed: set[tuple[str, str]] = set()
        denied: set[tuple[str, str]] = set()
        for st in statements:
            actions = _as_list(st.get("Action", []))
            for a in actions:
                if "*" in a:
                    problems.append(f"{role_id}: wildcard action {a}")
            for res in _as_list(st.get("Resource", [])):
                if isinstance(res, dict) and "Fn::Sub" in res and \
                        str(res["Fn::Sub"]).endswith(log_group) and ":logs:" in res["Fn::Sub"]:
                    symbol = "logs/own"
                else:
                    symbol = symbols.get(_key(res), f"<unknown {res}>")
                if symbol == "*" and not all(a.startswith("xray:") for a in actions):
                    problems.append(f"{role_id}: resource '*' for {actions}")
                target = allowed if st.get("Effect") == "Allow" else denied
                target.update((symbol, a) for a in actions)
        platform = _platform(fn, stage)
        for item in sorted(platform - allowed):
            problems.append(f"{role_id}: Lambda needs {item[1]} on {item[0]}")
        app = {(r, a) for r, a in allowed - platform if r != "key/previous"}
        calls = scan.calls_from(fn.roots)
        derived: dict[tuple[str, str], list[str]] = {}
        for c in calls:
            derived.setdefault((c.resource, f"{c.service}:{c.action}"), []).append(c.where)
        for (res, action), where in sorted(derived.items()):
            if (res, action) not in app:
                problems.append(
                    f"{fn.name}: the code calls {action} on {res} ({where[0]}) but the role "
                    f"does not allow it: add it to infra/policy.py POLICIES[{fn.name!r}]"
                    f"[{res!r}] and run `make package`")
        for res, action in sorted(app - set(derived)):
            problems.append(
                f"{fn.name}: the role allows {action} on {res}, which no code reachable from "
                f"{fn.name} calls: remove it from infra/policy.py POLICIES[{fn.name!r}]")
        if ("key/previous", "kms:Decrypt") in allowed and ("key/secrets", "kms:Decrypt") \
                not in allowed:
            problems.append(f"{role_id}: the previous key without the current one")
        audit_allowed = {a for r, a in allowed if r == policy.AUDIT_TABLE}
        if audit_allowed - policy.audit_allowed(fn.name):
            problems.append(f"{role_id}: the audit table must stay append-only, but "
                            f"{sorted(audit_allowed - policy.audit_allowed(fn.name))} "
                            "are allowed")
        for action in policy.audit_denied(fn.name):
            if (policy.AUDIT_TABLE, action) not in denied:
                problems.append(f"{role_id}: no explicit Deny of {action} on the audit table")
    declared = set(policy.POLICIES)
    for missing in sorted({fn.name for fn in fns} - declared):
        problems.append(f"{missing}: not listed in infra/policy.py POLICIES")
    return problems


def _statements_for(key: Json) -> list[Json]:
    return key.get("Properties", {}).get("KeyPolicy", {}).get("Statement", [])


def check_security(template: Json, stage: str) -> list[str]:
    problems = []
    resources = template.get("Resources", {})
    storage = {"Fn::GetAtt": [names.STORAGE_KEY, "Arn"]}
    for lid, r in resources.items():
        props = r.get("Properties", {})
        kind = r.get("Type")
        if kind == "AWS::DynamoDB::Table":
            sse = props.get("SSESpecification", {})
            if not (sse.get("SSEEnabled") and sse.get("SSEType") == "KMS" and
                    sse.get("KMSMasterKeyId") == storage):
                problems.append(f"{lid}: not encrypted with the stack's storage key")
            if not props.get("PointInTimeRecoverySpecification", {}).get(
                    "PointInTimeRecoveryEnabled"):
                problems.append(f"{lid}: point-in-time recovery is off")
            if props.get("BillingMode") != "PAY_PER_REQUEST":
                problems.append(f"{lid}: not on-demand")
            if stage == "prod" and not (props.get("DeletionProtectionEnabled") is True and
                                        r.get("DeletionPolicy") == "Retain"):
                problems.append(f"{lid}: prod tables need deletion protection and Retain")
        elif kind == "AWS::KMS::Key":
            if props.get("EnableKeyRotation") is not True:
                problems.append(f"{lid}: automatic rotation is off")
            for st in _statements_for(r):
                for a in _as_list(st.get("Action", [])):
                    if a in ("*", "kms:*"):
                        problems.append(f"{lid}: key policy grants {a}")
        elif kind == "AWS::SNS::Topic" and not props.get("KmsMasterKeyId"):
            problems.append(f"{lid}: topic not encrypted")
        elif kind == "AWS::SQS::Queue" and not (props.get("SqsManagedSseEnabled") or
                                                props.get("KmsMasterKeyId")):
            problems.append(f"{lid}: queue not encrypted")
    problems += _check_secrets_key(template)
    problems += _check_queue_and_alarms(template)
    if stage == "prod" and resources.get(names.USER_POOL, {}).get("Properties", {}).get(
            "DeletionProtection") != "ACTIVE":
        problems.append("prod user pool without deletion protection")
    for lid in (names.USER_POOL, names.USER_POOL_CLIENT, names.ADMINS_GROUP):
        if lid not in resources:
            problems.append(f"{lid} is missing")
    return problems


def _check_secrets_key(template: Json) -> list[str]:
    problems = []
    key = template.get("Resources", {}).get(names.SECRETS_KEY)
    if key is None:
        return [f"{names.SECRETS_KEY} is missing"]
    crypto = {"kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey", "kms:ReEncryptFrom",
              "kms:ReEncryptTo", "kms:GenerateDataKeyWithoutPlaintext", "kms:CreateGrant"}
    want = {f"kms:EncryptionContext:{k}" for k in policy.KMS_CONTEXT_KEYS}
    for st in _statements_for(key):
        actions = set(_as_list(st.get("Action", [])))
        if st.get("Effect") != "Allow" or not (actions & crypto or any("*" in a for a in
                                                                     actions)):
            continue
        cond = st.get("Condition", {})
        keys = cond.get("ForAllValues:StringEquals", {}).get("kms:EncryptionContextKeys")
        present = {k for k, v in cond.get("Null", {}).items() if v == "false"}
        if sorted(keys or []) != sorted(policy.KMS_CONTEXT_KEYS) or present != want:
            problems.append(f"{names.SECRETS_KEY}: statement {st.get('Sid')} allows "
                            f"{sorted(actions)} without exactly the context keys "
                            f"{list(policy.KMS_CONTEXT_KEYS)}")
    return problems


def _check_queue_and_alarms(template: Json) -> list[str]:
    problems = []
    resources = template.get("Resources", {})
    redrive = resources.get(names.WORK_QUEUE, {}).get("Properties", {}).get("RedrivePolicy", {})
    if redrive.get("maxReceiveCount") != 3 or \
            redrive.get("deadLetterTargetArn") != {"Fn::GetAtt": [names.DEAD_LETTER_QUEUE, "Arn"]}:
        problems.append(f"{names.WORK_QUEUE}: redrive to the dead-letter queue after 3 receives")
    alarms = [r["Properties"] for r in resources.values()
              if r.get("Type") == "AWS::CloudWatch::Alarm"]
    ops = {"Ref": names.OPS_TOPIC}
    for a in alarms:
        if ops not in a.get("AlarmActions", []):
            problems.append(f"alarm {a.get('MetricName')} does not notify the ops topic")

    def has(namespace: str, metric: str, dim: Any = None) -> bool:
        return any(a["Namespace"] == namespace and a["MetricName"] == metric and
                   (dim is None or dim in [d["Value"] for d in a.get("Dimensions", [])])
                   for a in alarms)

    if not has("AWS/SQS", "ApproximateNumberOfMessagesVisible",
               {"Fn::GetAtt": [names.DEAD_LETTER_QUEUE, "QueueName"]}):
        problems.append("no alarm on the dead-letter queue")
    if not has(metrics_names.NAMESPACE, metrics_names.DAILY_RUN_FAILED):
        problems.append(f"no alarm on {metrics_names.DAILY_RUN_FAILED}")
    for fn_id in functions(template):
        for metric in ("Errors", "Throttles"):
            if not has("AWS/Lambda", metric, {"Ref": fn_id}):
                problems.append(f"no alarm on {fn_id} {metric}")
    return problems


def check_all(template: Json, stage: str, fns: list[LambdaInfo] | None = None,
              scan: codescan.Scan | None = None) -> list[str]:
    fns = fns if fns is not None else lambdas.load(stage)
    scan = scan if scan is not None else codescan.scan()
    return [*check_intrinsics(template), *check_tables(template, stage),
            *check_environment(template), *check_events(template),
            *check_policies(template, stage, fns, scan), *check_security(template, stage),
            *[f"codescan: {p}" for p in scan.problems]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--stage", choices=names.DEPLOY_STAGES, action="append")
    args = parser.parse_args()
    failed = False
    for stage in args.stage or names.DEPLOY_STAGES:
        problems = check_all(load_template(stage), stage)
        for p in problems:
            print(f"{stage}: {p}", file=sys.stderr)
        failed |= bool(problems)
        print(f"{stage}: {'FAILED' if problems else 'template matches the code'}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
