"""The deployable stack against the code: names, permissions and security properties.

The templates are `make package` output (``build/<stage>/sam.json``); the expectations come
from the code itself: models, settings, the Chalice app and ``infra.codescan``'s reading of
the source.
"""

from __future__ import annotations

import ast
import copy
import json
import shutil
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from chalicelib import metrics_names
from chalicelib.settings import TABLE_ENV
from infra import checks, codescan, names, policy, stack

pytestmark = pytest.mark.unit

STAGES = names.DEPLOY_STAGES
Template = dict[str, Any]


def resources_of(template: Template, kind: str) -> dict[str, Any]:
    return {k: v for k, v in template["Resources"].items() if v["Type"] == kind}


def role_policies(template: Template) -> dict[str, list[dict[str, Any]]]:
    """{function logical id: statements of its role}."""
    return {fn_id: checks.role_statements(template, fn)[1]
            for fn_id, fn in checks.functions(template).items()}


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


@pytest.mark.parametrize("stage", STAGES)
def test_packaged_template_matches_the_code(templates, functions, scan, stage):
    # Given the packaged template of the stage, the functions Chalice emits and the code scan
    # When every consistency check runs
    problems = checks.check_all(templates[stage], stage, functions[stage], scan)
    # Then nothing disagrees
    assert problems == []


def test_the_code_scan_attributes_every_aws_call(scan):
    # Given the scan of app.py and chalicelib/
    # Then every client, model operation and table argument was understood
    assert scan.problems == []
    assert {c.service for c in scan.calls} >= {"dynamodb", "kms", "sns", "sqs"}


@pytest.mark.parametrize("stage", STAGES)
def test_each_function_has_its_own_role_listed_in_the_policy_table(templates, functions,
                                                                   stage):
    # Given the functions Chalice emits
    fns = functions[stage]
    # Then each is listed in infra/policy.py and runs under a role of its own
    assert sorted(fn.name for fn in fns) == sorted(policy.POLICIES)
    roles = [checks.role_statements(templates[stage], checks.functions(templates[stage])[
        fn.cfn_name])[0] for fn in fns]
    assert None not in roles
    assert len(set(roles)) == len(roles)


def test_written_down_policies_are_exactly_what_each_function_calls(functions, scan):
    # Given each function's handlers and the calls the code reachable from them makes
    for fn in functions["dev"]:
        derived = codescan.grants(scan.calls_from(fn.roots))
        # Then infra/policy.py lists exactly those actions on exactly those resources
        assert policy.declared(fn.name) == derived, fn.name


@pytest.mark.parametrize("stage", STAGES)
def test_no_wildcard_or_service_wide_actions(templates, stage):
    # Given every statement of every function role
    for fn_id, statements in role_policies(templates[stage]).items():
        for st in statements:
            actions = as_list(st["Action"])
            # Then no action is a wildcard (no "*", no "dynamodb:*", no "kms:*")
            assert not [a for a in actions if "*" in a], (fn_id, st)
            # And "*" resources are only for X-Ray, which has no resource-level permissions
            if "*" in as_list(st["Resource"]):
                assert all(a.startswith("xray:") for a in actions), (fn_id, st)


@pytest.mark.parametrize("stage", STAGES)
def test_the_audit_table_cannot_be_updated_or_deleted_by_any_role(templates, functions, stage):
    audit = {"Fn::GetAtt": [names.table_logical_id("audit"), "Arn"]}
    by_id = {fn.cfn_name: fn.name for fn in functions[stage]}
    batch_writers = set()
    for fn_id, statements in role_policies(templates[stage]).items():
        # Given what each role allows on the audit table
        allowed = {a for st in statements if st["Effect"] == "Allow"
                   and audit in as_list(st["Resource"]) for a in as_list(st["Action"])}
        denied = {a for st in statements if st["Effect"] == "Deny"
                  and audit in as_list(st["Resource"]) for a in as_list(st["Action"])}
        # Then only appends and reads, and updates and deletes are denied outright
        assert allowed <= {"dynamodb:PutItem", "dynamodb:GetItem", "dynamodb:Query",
                           "dynamodb:BatchWriteItem"}, fn_id
        assert {"dynamodb:UpdateItem", "dynamodb:DeleteItem"} <= denied, fn_id
        # And batch writes (which IAM cannot restrict to puts) only for the daily worker
        if "dynamodb:BatchWriteItem" in allowed:
            batch_writers.add(by_id[fn_id])
        else:
            assert "dynamodb:BatchWriteItem" in denied, fn_id
    assert batch_writers == {"test_worker"}


def _calls_in(tree: ast.AST) -> list[tuple[str, str]]:
    """(receiver source, name) of every call under ``tree`` (receiver "" for a plain name)."""
    out = []
    for n in ast.walk(tree):
        if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute):
            out.append((ast.unparse(n.func.value), n.func.attr))
        elif isinstance(n, ast.Call) and isinstance(n.func, ast.Name):
            out.append(("", n.func.id))
    return out


def test_the_only_batch_on_the_audit_table_puts_and_never_deletes():
    # Given every batch opened on the audit model anywhere in the app's code
    root = Path(__file__).resolve().parents[2]
    openers = []
    for path in [root / "app.py", *sorted((root / "chalicelib").rglob("*.py"))]:
        tree = ast.parse(path.read_text())
        for fn in ast.walk(tree):
            if isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef) and \
                    ("AuditModel", "batch_write") in _calls_in(fn):
                openers.append((path.name, fn))
    # Then there is one, AuditRepository.append_many, and it hands its batch to put_all,
    # which only ever saves (puts) into a batch: no delete request can reach the table
    assert [(name, fn.name) for name, fn in openers] == [("audit_repo.py", "append_many")]
    (_, append_many), = openers
    assert {m for _, m in _calls_in(append_many)} == {"batch_write", "put_all"}
    helper = ast.parse((root / "chalicelib/data/batch.py").read_text())
    batch_calls = {m for recv, m in _calls_in(helper) if recv == "batch"}
    assert batch_calls == {"save", "commit"}


def test_the_key_policy_context_is_the_one_the_code_sends():
    from chalicelib.crypto import Binding

    # Given the encryption context the code sends to KMS
    context = Binding("owner-1", "conn-1", "openai", None).kms_context()
    # Then the key and role policies require exactly those keys
    assert sorted(context) == sorted(policy.KMS_CONTEXT_KEYS)


@pytest.mark.parametrize("stage", STAGES)
def test_only_function_roles_use_the_secrets_key_and_only_with_that_context(templates, stage):
    # Given the envelope key's policy
    key = templates[stage]["Resources"][names.SECRETS_KEY]
    roles = {f"{fn_id}Role" for fn_id in checks.functions(templates[stage])}
    crypto = {"kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey", "kms:ReEncryptFrom",
              "kms:ReEncryptTo"}
    for st in key["Properties"]["KeyPolicy"]["Statement"]:
        actions = set(as_list(st["Action"]))
        if not actions & crypto:
            continue
        # Then every statement that allows cryptography names a function role (or is the
        # operators' rewrap, which never sees plaintext) and requires exactly the context
        principal = st["Principal"]["AWS"]
        if actions <= {"kms:ReEncryptFrom", "kms:ReEncryptTo"}:
            assert "root" in json.dumps(principal)
        else:
            assert principal["Fn::GetAtt"][0] in roles, st
        assert st["Condition"]["ForAllValues:StringEquals"]["kms:EncryptionContextKeys"] == \
            list(policy.KMS_CONTEXT_KEYS)
        assert st["Condition"]["Null"] == {
            f"kms:EncryptionContext:{k}": "false" for k in policy.KMS_CONTEXT_KEYS}
    # And the account (IAM) may administer the key but never use it
    admin = key["Properties"]["KeyPolicy"]["Statement"][0]
    assert not set(admin["Action"]) & crypto
    assert "kms:CreateGrant" not in admin["Action"]


@pytest.mark.parametrize("stage", STAGES)
def test_the_storage_key_is_usable_only_through_dynamodb_sns_and_alarms(templates, stage):
    key = templates[stage]["Resources"][names.STORAGE_KEY]
    for st in key["Properties"]["KeyPolicy"]["Statement"][1:]:
        # Then each use goes through a service (kms:ViaService) or is CloudWatch's own
        via = st.get("Condition", {}).get("StringEquals", {}).get("kms:ViaService")
        assert via is not None or st["Principal"] == {"Service": "cloudwatch.amazonaws.com"}


@pytest.mark.parametrize("stage", STAGES)
def test_everything_at_rest_is_encrypted_and_keys_rotate(templates, stage):
    t = templates[stage]
    storage_key = {"Fn::GetAtt": [names.STORAGE_KEY, "Arn"]}
    for table in resources_of(t, "AWS::DynamoDB::Table").values():
        sse = table["Properties"]["SSESpecification"]
        assert sse == {"SSEEnabled": True, "SSEType": "KMS", "KMSMasterKeyId": storage_key}
    for topic in resources_of(t, "AWS::SNS::Topic").values():
        assert topic["Properties"]["KmsMasterKeyId"] == {"Ref": names.STORAGE_KEY}
    for queue in resources_of(t, "AWS::SQS::Queue").values():
        assert queue["Properties"]["SqsManagedSseEnabled"] is True
    keys = resources_of(t, "AWS::KMS::Key")
    assert set(keys) == {names.SECRETS_KEY, names.STORAGE_KEY}
    assert all(k["Properties"]["EnableKeyRotation"] is True for k in keys.values())
    # The envelope key outlives the stack in every stage: losing it loses every secret.
    assert keys[names.SECRETS_KEY]["DeletionPolicy"] == "Retain"


@pytest.mark.parametrize("stage", STAGES)
def test_tables_are_on_demand_with_point_in_time_recovery(templates, stage):
    for lid, table in resources_of(templates[stage], "AWS::DynamoDB::Table").items():
        props = table["Properties"]
        assert props["BillingMode"] == "PAY_PER_REQUEST", lid
        assert props["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}


def test_prod_is_protected_from_deletion_and_dev_can_be_torn_down(templates):
    prod = resources_of(templates["prod"], "AWS::DynamoDB::Table")
    dev = resources_of(templates["dev"], "AWS::DynamoDB::Table")
    assert all(t["Properties"]["DeletionProtectionEnabled"] is True and
               t["DeletionPolicy"] == "Retain" for t in prod.values())
    assert all(t["Properties"]["DeletionProtectionEnabled"] is False for t in dev.values())
    pool = templates["prod"]["Resources"][names.USER_POOL]
    assert pool["Properties"]["DeletionProtection"] == "ACTIVE"
    assert pool["DeletionPolicy"] == "Retain"


@pytest.mark.parametrize("stage", STAGES)
def test_alarms_cover_the_dlq_every_function_and_the_daily_run(templates, stage):
    t = templates[stage]
    alarms = [a["Properties"] for a in resources_of(t, "AWS::CloudWatch::Alarm").values()]
    ops = {"Ref": names.OPS_TOPIC}
    assert all(ops in a["AlarmActions"] for a in alarms)

    def find(namespace: str, metric: str) -> list[dict[str, Any]]:
        return [a for a in alarms if (a["Namespace"], a["MetricName"]) == (namespace, metric)]

    dlq = find("AWS/SQS", "ApproximateNumberOfMessagesVisible")
    assert [a["Dimensions"][0]["Value"] for a in dlq] == [
        {"Fn::GetAtt": [names.DEAD_LETTER_QUEUE, "QueueName"]}]
    assert dlq[0]["ComparisonOperator"] == "GreaterThanThreshold" and dlq[0]["Threshold"] == 0
    for metric in ("Errors", "Throttles"):
        watched = {a["Dimensions"][0]["Value"]["Ref"] for a in find("AWS/Lambda", metric)}
        assert watched == set(checks.functions(t)), metric
    daily = find(metrics_names.NAMESPACE, metrics_names.DAILY_RUN_FAILED)
    assert daily and daily[0]["Dimensions"] == [{"Name": "service",
                                                 "Value": metrics_names.SERVICE}]


def test_metric_names_agree_with_the_app_observability_and_config():
    from chalicelib import observability
    from infra.lambdas import stage_config

    assert metrics_names.NAMESPACE == observability.NAMESPACE
    assert metrics_names.SERVICE == observability.SERVICE
    for stage in STAGES:
        env = stage_config(stage)["environment_variables"]
        assert env["POWERTOOLS_METRICS_NAMESPACE"] == metrics_names.NAMESPACE
        assert env["POWERTOOLS_SERVICE_NAME"] == metrics_names.SERVICE


def test_the_log_metric_filters_match_messages_the_code_logs():
    # Given every literal message passed to logger.<level>(...) in chalicelib
    messages = set()
    for path in (names.ROOT / "chalicelib").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and \
                    ast.unparse(node.func.value) == "logger" and node.args and \
                    isinstance(node.args[0], ast.Constant):
                messages.add(node.args[0].value)
    # Then each metric filter's message is one of them, and each has its alarm
    from infra.stack import LOG_METRICS

    assert metrics_names.AUDIT_WRITE_FAILED_MESSAGE in messages
    assert metrics_names.KEY_SERVICE_FAULT_MESSAGE in messages
    assert {m for _, m, _ in LOG_METRICS} <= messages


@pytest.mark.parametrize("stage", STAGES)
def test_schedules_come_from_the_stage_config(templates, stage):
    from infra.lambdas import stage_config

    expected = stage_config(stage)["environment_variables"]["DAILY_SCHEDULE"]
    schedules = [e["Properties"]["Schedule"] for fn in checks.functions(templates[stage]).values()
                 for e in (fn["Properties"].get("Events") or {}).values()
                 if e["Type"] == "Schedule"]
    assert schedules == [expected]


@pytest.mark.parametrize("stage", STAGES)
def test_identity_comes_from_the_stack(templates, stage):
    # Given the stack's Cognito pool, admins group and app client
    t = templates[stage]
    assert t["Resources"][names.ADMINS_GROUP]["Properties"]["GroupName"] == "admins"
    # Then every function's issuer, audience and JWKS URL are the stack's (or parameters)
    for fn in checks.functions(t).values():
        env = fn["Properties"]["Environment"]["Variables"]
        assert env["JWT_AUDIENCE"]["Fn::If"][1] == {"Ref": names.USER_POOL_CLIENT}
        assert "${UserPool}" in env["JWT_ISSUER"]["Fn::If"][1]["Fn::Sub"]
        assert env["JWKS_URL"]["Fn::If"][1]["Fn::Sub"].endswith("/.well-known/jwks.json")


@pytest.mark.parametrize("stage", STAGES)
def test_the_console_signs_in_through_the_hosted_ui_with_pkce(templates, stage):
    # Given the stack's user pool client and domain
    t = templates[stage]
    client = t["Resources"][names.USER_POOL_CLIENT]["Properties"]
    domain = t["Resources"][names.USER_POOL_DOMAIN]
    oauth = {k: v["Fn::If"][1] for k, v in client.items()
             if isinstance(v, dict) and "Fn::If" in v}
    # Then the client is public (no secret: PKCE) with the code flow only, redirecting to the
    # stage's console URLs from parameters (a Ref to the API would be a cycle: the function's
    # environment names the client)
    assert client["GenerateSecret"] is False
    assert oauth == {"AllowedOAuthFlows": ["code"], "AllowedOAuthFlowsUserPoolClient": True,
                     "AllowedOAuthScopes": ["openid", "email", "profile"],
                     "SupportedIdentityProviders": ["COGNITO"],
                     "CallbackURLs": {"Ref": "ConsoleCallbackUrls"},
                     "LogoutURLs": {"Ref": "ConsoleLogoutUrls"}}
    assert "RestAPI" not in json.dumps(client)
    assert t["Parameters"]["ConsoleCallbackUrls"]["Type"] == "CommaDelimitedList"
    assert domain["Condition"] == "CreateUserPool"
    assert domain["Properties"]["UserPoolId"] == {"Ref": names.USER_POOL}
    # and only the API function learns the hosted UI's address and the client id
    for fn_id, fn in checks.functions(t).items():
        env = fn["Properties"]["Environment"]["Variables"]
        if fn_id == "APIHandler":
            assert env["COGNITO_CLIENT_ID"]["Fn::If"][:2] == [
                "ConsoleSignIn", {"Ref": names.USER_POOL_CLIENT}]
            assert env["COGNITO_DOMAIN_URL"]["Fn::If"][1] == {"Fn::Sub": (
                "https://${UserPoolDomain}.auth.${AWS::Region}.amazoncognito.com")}
        else:
            assert not {"COGNITO_CLIENT_ID", "COGNITO_DOMAIN_URL"} & set(env), fn_id


def test_every_table_of_the_settings_is_created():
    assert set(stack.table_specs()) == set(TABLE_ENV)


def test_the_lambda_bundle_carries_no_test_or_tooling_packages(templates):
    from devtools.package_size import DEV_ONLY, top_level, top_level_in_layer

    with zipfile.ZipFile(names.build_dir("dev") / "deployment.zip") as z:
        shipped = top_level(z)
    with zipfile.ZipFile(names.build_dir("dev") / "layer-deployment.zip") as z:
        layered = top_level_in_layer(z)
    assert not (shipped | layered) & DEV_ONLY
    assert {"app.py", "chalicelib"} <= shipped
    assert {"boto3", "botocore", "pynamodb", "cryptography"} <= layered


# The consistency checks catch what they claim to: each mutation of a copy of the template
# must be reported.


def _drop_table(t: Template) -> str:
    del t["Resources"][names.table_logical_id("connections")]
    return "llmc-dev-connections"


def _drop_index(t: Template) -> str:
    props = t["Resources"][names.table_logical_id("connections")]["Properties"]
    props["GlobalSecondaryIndexes"] = [i for i in props["GlobalSecondaryIndexes"]
                                       if i["IndexName"] != "due-index"]
    return "index due-index is missing"


def _drop_env(t: Template) -> str:
    del t["Resources"]["TestWorker"]["Properties"]["Environment"]["Variables"]["USAGE_TABLE"]
    return "USAGE_TABLE"


def _unused_env(t: Template) -> str:
    t["Resources"]["RunDaily"]["Properties"]["Environment"]["Variables"]["NOBODY_READS"] = "x"
    return "NOBODY_READS is set but nothing reads it"


def _drop_action(t: Template) -> str:
    for st in t["Resources"]["TestWorkerRolePolicy"]["Properties"]["PolicyDocument"][
            "Statement"]:
        if "kms:Decrypt" in st["Action"]:
            st["Action"].remove("kms:Decrypt")
    return "calls kms:Decrypt on key/secrets"


def _extra_action(t: Template) -> str:
    t["Resources"]["RunDailyRolePolicy"]["Properties"]["PolicyDocument"]["Statement"].append(
        {"Effect": "Allow", "Action": ["dynamodb:Scan"],
         "Resource": {"Fn::GetAtt": ["ConnectionsTable", "Arn"]}})
    return "allows dynamodb:Scan on table/connections, which no code"


def _wildcard(t: Template) -> str:
    t["Resources"]["RunDailyRolePolicy"]["Properties"]["PolicyDocument"]["Statement"].append(
        {"Effect": "Allow", "Action": ["dynamodb:*"], "Resource": "*"})
    return "wildcard action dynamodb:*"


def _audit_update(t: Template) -> str:
    for st in t["Resources"]["APIHandlerRolePolicy"]["Properties"]["PolicyDocument"][
            "Statement"]:
        if st["Effect"] == "Deny":
            st["Action"].remove("dynamodb:UpdateItem")
    return "no explicit Deny of dynamodb:UpdateItem on the audit table"


def _other_queue(t: Template) -> str:
    events = t["Resources"]["TestWorker"]["Properties"]["Events"]
    next(iter(events.values()))["Properties"]["Queue"] = "arn:aws:sqs:us-east-1:1:elsewhere"
    return "not the stack's work queue"


def _no_dlq_alarm(t: Template) -> str:
    del t["Resources"]["DeadLetterQueueAlarm"]
    return "no alarm on the dead-letter queue"


def _no_pitr(t: Template) -> str:
    t["Resources"]["AuditTable"]["Properties"]["PointInTimeRecoverySpecification"] = {
        "PointInTimeRecoveryEnabled": False}
    return "AuditTable: point-in-time recovery is off"


def _no_rotation(t: Template) -> str:
    t["Resources"][names.SECRETS_KEY]["Properties"]["EnableKeyRotation"] = False
    return "SecretsKey: automatic rotation is off"


def _context_dropped(t: Template) -> str:
    for st in t["Resources"][names.SECRETS_KEY]["Properties"]["KeyPolicy"]["Statement"]:
        st.pop("Condition", None)
    return "without exactly the context keys"


def _merged_intrinsics(t: Template) -> str:
    events = t["Resources"]["TestWorker"]["Properties"]["Events"]
    next(iter(events.values()))["Properties"]["Queue"]["Fn::GetAtt"] = ["WorkQueue", "Arn"]
    return "more than one key next to an intrinsic"


MUTATIONS: list[Callable[[Template], str]] = [
    _drop_table, _drop_index, _drop_env, _unused_env, _drop_action, _extra_action, _wildcard,
    _audit_update, _other_queue, _no_dlq_alarm, _no_pitr, _no_rotation, _context_dropped,
    _merged_intrinsics,
]


@pytest.mark.parametrize("mutate", MUTATIONS, ids=lambda m: m.__name__.strip("_"))
def test_the_checks_report_a_broken_copy_of_the_template(templates, functions, scan, mutate):
    # Given a copy of the dev template with one thing removed or wrong
    broken = copy.deepcopy(templates["dev"])
    expected = mutate(broken)
    # When the checks run on it
    problems = checks.check_all(broken, "dev", functions["dev"], scan)
    # Then they report it
    assert any(expected in p for p in problems), problems


def test_a_new_aws_call_without_a_policy_change_fails(tmp_path, templates, functions):
    # Given a copy of the code where the daily handler also purges the queue and scans the
    # audit table (calls no policy allows)
    root = tmp_path / "code"
    shutil.copytree(names.ROOT / "chalicelib", root / "chalicelib",
                    ignore=shutil.ignore_patterns("__pycache__"))
    app_py = (names.ROOT / "app.py").read_text()
    handler = next(n for n in ast.parse(app_py).body
                   if isinstance(n, ast.FunctionDef) and n.name == "run_daily")
    lines = app_py.splitlines()
    indent = " " * handler.body[0].col_offset
    lines[handler.body[0].lineno - 1:handler.body[0].lineno - 1] = [
        f"{indent}from chalicelib.data import aws as _aws",
        f"{indent}from chalicelib.data.models import AuditModel as _Audit",
        f"{indent}_aws.client('sqs').purge_queue(QueueUrl='unused')",
        f"{indent}list(_Audit.scan())",
    ]
    Path(root / "app.py").write_text("\n".join(lines) + "\n")
    # When the code is scanned and the (unchanged) template checked against it
    changed = codescan.scan(root)
    problems = checks.check_policies(templates["dev"], "dev", functions["dev"], changed)
    # Then both new calls are reported against the daily function's policy
    assert any("run_daily: the code calls sqs:PurgeQueue on queue/work" in p
               for p in problems), problems
    assert any("run_daily: the code calls dynamodb:Scan on table/audit" in p
               for p in problems), problems


@pytest.mark.parametrize("stage", STAGES)
def test_gateway_made_errors_use_the_error_shape(templates, stage):
    # An unknown path is a JSON 404 (not API Gateway's 403 that quotes the bearer header back).
    responses = resources_of(templates[stage], "AWS::ApiGateway::GatewayResponse")
    by_type = {r["Properties"]["ResponseType"]: r["Properties"] for r in responses.values()}
    missing = by_type["MISSING_AUTHENTICATION_TOKEN"]
    assert missing["StatusCode"] == "404"
    body = missing["ResponseTemplates"]["application/json"]
    assert json.loads(body.replace("$context.requestId", "r"))["error"]["code"] == "not_found"
    assert {"DEFAULT_4XX", "DEFAULT_5XX"} <= set(by_type)
    for props in by_type.values():
        assert "Authorization" not in props["ResponseTemplates"]["application/json"]
