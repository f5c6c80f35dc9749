"""The merge template: everything the stack adds to, or changes in, `chalice package` output.

Built from the code's own definitions: tables from the PynamoDB models (``ALL_MODELS`` and
``SHARED_MODELS``, grouped by ``Meta.env_key``), environment variables from
``settings.TABLE_ENV`` and the settings' resources, functions from Chalice's application
graph (``infra.lambdas``), permissions from ``infra.policy``, metric names from
``chalicelib.metrics_names``.

Keys: two customer managed keys. ``SecretsKey`` is the envelope key of connection secrets:
only the function roles may use it, only with exactly the encryption context the code sends,
and IAM cannot widen that (the account's key-policy statement is limited to administration).
``StorageKey`` encrypts the tables and topics: usable only through DynamoDB and SNS (and by
CloudWatch for alarm notifications), so a role that may read a table still cannot decrypt
anything with it directly, and rotating or moving the envelope key never touches storage.
"""

from __future__ import annotations

import json
from typing import Any

from chalicelib import metrics_names
from chalicelib.api.http import HSTS
from chalicelib.settings import TABLE_ENV
from infra import names, policy
from infra.lambdas import LambdaInfo, stage_config

Json = dict[str, Any]

TEMPLATE_DESCRIPTION = "LLM Connections ({stage}): Chalice app, tables, keys, queues, alerts"
ALARM_PERIOD = 300
# SQS: visibility at least six times the consumer's timeout (AWS guidance for Lambda).
VISIBILITY_FACTOR = 6
MAX_RECEIVES = 3
DLQ_RETENTION_SECONDS = 14 * 24 * 3600
KEY_ADMIN_ACTIONS = (
    "kms:CancelKeyDeletion", "kms:CreateAlias", "kms:DeleteAlias", "kms:DescribeKey",
    "kms:DisableKey", "kms:DisableKeyRotation", "kms:EnableKey", "kms:EnableKeyRotation",
    "kms:GetKeyPolicy", "kms:GetKeyRotationStatus", "kms:ListAliases", "kms:ListGrants",
    "kms:ListKeyPolicies", "kms:ListResourceTags", "kms:PutKeyPolicy", "kms:RetireGrant",
    "kms:RevokeGrant", "kms:RotateKeyOnDemand", "kms:ScheduleKeyDeletion", "kms:TagResource",
    "kms:UntagResource", "kms:UpdateAlias", "kms:UpdateKeyDescription",
)
LAMBDA_PLATFORM_LOGS = ("logs:CreateLogStream", "logs:PutLogEvents")
XRAY_ACTIONS = ("xray:PutTraceSegments", "xray:PutTelemetryRecords")
SQS_CONSUMER_ACTIONS = ("sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes")


class StackError(RuntimeError):
    """The code asks for something the stack cannot provide (a build-time mistake)."""


def _sub(text: str) -> Json:
    return {"Fn::Sub": text}


def _ref(name: str) -> Json:
    return {"Ref": name}


def _arn(logical_id: str) -> Json:
    return {"Fn::GetAtt": [logical_id, "Arn"]}


def is_prod(stage: str) -> bool:
    return stage == "prod"


def table_specs() -> dict[str, Json]:
    """{settings key: {"key_schema", "attributes", "indexes", "ttl", "models"}} from the
    models; models that share a table must agree on its keys and TTL attribute."""
    from chalicelib.data import models

    all_models = [*models.ALL_MODELS, *getattr(models, "SHARED_MODELS", ())]
    specs: dict[str, Json] = {}
    for model in all_models:
        key = model.Meta.env_key
        schema = model._get_schema()
        key_schema = sorted(({"AttributeName": k["AttributeName"], "KeyType": k["KeyType"]}
                             for k in schema["key_schema"]), key=lambda k: k["KeyType"])
        ttl = model._ttl_attribute()
        ttl_name = ttl.attr_name if ttl is not None else None
        spec = specs.setdefault(key, {"key_schema": key_schema, "attributes": {},
                                      "indexes": {}, "ttl": ttl_name, "models": []})
        if spec["key_schema"] != key_schema:
            raise StackError(f"{model.__name__} and {spec['models']} share table {key!r} "
                             "but not its key schema")
        if ttl_name and spec["ttl"] not in (None, ttl_name):
            raise StackError(f"table {key!r}: models disagree on the TTL attribute")
        spec["ttl"] = spec["ttl"] or ttl_name
        spec["models"].append(model.__name__)
        for a in schema["attribute_definitions"]:
            spec["attributes"][a["AttributeName"]] = a["AttributeType"]
        for index in schema["global_secondary_indexes"]:
            projection = {"ProjectionType": index["projection"]["ProjectionType"]}
            if index["projection"].get("NonKeyAttributes"):
                projection["NonKeyAttributes"] = sorted(index["projection"]["NonKeyAttributes"])
            spec["indexes"][index["index_name"]] = {
                "IndexName": index["index_name"],
                "KeySchema": sorted(({"AttributeName": k["AttributeName"],
                                      "KeyType": k["KeyType"]} for k in index["key_schema"]),
                                    key=lambda k: k["KeyType"]),
                "Projection": projection,
            }
        if schema["local_secondary_indexes"]:
            raise StackError(f"{model.__name__}: local secondary indexes are not supported")
    unknown = set(specs) - set(TABLE_ENV)
    if unknown:
        raise StackError(f"models use tables that settings.TABLE_ENV lacks: {sorted(unknown)}")
    missing = set(TABLE_ENV) - set(specs)
    if missing:
        raise StackError(f"settings.TABLE_ENV names tables no model defines: {sorted(missing)}")
    return specs


def _table(stage: str, key: str, spec: Json) -> Json:
    props: Json = {
        "TableName": names.table_name(stage, key),
        "BillingMode": "PAY_PER_REQUEST",
        "AttributeDefinitions": [{"AttributeName": n, "AttributeType": t}
                                 for n, t in sorted(spec["attributes"].items())],
        "KeySchema": spec["key_schema"],
        "PointInTimeRecoverySpecification": {"PointInTimeRecoveryEnabled": True},
        "SSESpecification": {"SSEEnabled": True, "SSEType": "KMS",
                             "KMSMasterKeyId": _arn(names.STORAGE_KEY)},
        "DeletionProtectionEnabled": is_prod(stage),
        "Tags": [{"Key": "app", "Value": names.APP_NAME}, {"Key": "stage", "Value": stage}],
    }
    if spec["indexes"]:
        props["GlobalSecondaryIndexes"] = [spec["indexes"][n] for n in sorted(spec["indexes"])]
    if spec["ttl"]:
        props["TimeToLiveSpecification"] = {"AttributeName": spec["ttl"], "Enabled": True}
    keep = "Retain" if is_prod(stage) else "Delete"
    return {"Type": "AWS::DynamoDB::Table", "DeletionPolicy": keep,
            "UpdateReplacePolicy": keep, "Properties": props}


def secrets_key_arn() -> Json:
    return {"Fn::If": ["CreateSecretsKey", _arn(names.SECRETS_KEY), _ref("SecretsKeyArn")]}


def resource_arn(resource: str) -> Json:
    """The ARN expression of a symbolic resource of ``infra.policy``."""
    kind, _, rest = resource.partition("/")
    if kind == "table":
        key, _, index = rest.partition("/index/")
        if key not in TABLE_ENV:
            raise StackError(f"unknown table in the policy: {resource}")
        logical = names.table_logical_id(key)
        return _sub(f"${{{logical}.Arn}}/index/{index}") if index else _arn(logical)
    if resource == "key/secrets":
        return secrets_key_arn()
    if resource == "topic/alerts":
        return _ref(names.ALERTS_TOPIC)
    if resource == "queue/work":
        return _arn(names.WORK_QUEUE)
    raise StackError(f"unknown resource in the policy: {resource}")


def subscriptions_arn(topic: str) -> Json:
    return _sub(f"${{{resource_arn(topic)['Ref']}}}:*")


def known_resources() -> list[str]:
    out = []
    for key, spec in table_specs().items():
        out.append(f"table/{key}")
        out.extend(f"table/{key}/index/{i}" for i in spec["indexes"])
    return [*out, "key/secrets", "topic/alerts", "queue/work"]


def role_id(fn: LambdaInfo) -> str:
    return f"{fn.cfn_name}Role"


def role_policy_id(fn: LambdaInfo) -> str:
    return f"{fn.cfn_name}RolePolicy"


def _context_condition() -> Json:
    # Exactly these keys: every key present (Null false) and no other key (ForAllValues).
    return {
        "ForAllValues:StringEquals": {"kms:EncryptionContextKeys": list(policy.KMS_CONTEXT_KEYS)},
        "Null": {f"kms:EncryptionContext:{k}": "false" for k in policy.KMS_CONTEXT_KEYS},
    }


def app_statements(fn: LambdaInfo) -> list[Json]:
    """The statements of ``infra.policy.POLICIES`` for ``fn`` (empty if it is not listed)."""
    statements: list[Json] = []
    for resource, actions in sorted(policy.POLICIES.get(fn.name, {}).items()):
        service = policy.service_of(resource)
        sid = "".join(p.capitalize() for p in resource.replace("-", "/").split("/"))
        plain = sorted(a for a in actions
                       if not (service == "kms" and a in policy.KMS_CONTEXT_ACTIONS))
        context = sorted(a for a in actions
                         if service == "kms" and a in policy.KMS_CONTEXT_ACTIONS)
        if resource.startswith("topic/") and "Unsubscribe" in plain:
            # Unsubscribe names a subscription, "<topic ARN>:<id>": this topic's only.
            plain.remove("Unsubscribe")
            statements.append({"Sid": f"{sid}Subscriptions", "Effect": "Allow",
                               "Action": ["sns:Unsubscribe"],
                               "Resource": [resource_arn(resource),
                                            subscriptions_arn(resource)]})
        if plain:
            statements.append({"Sid": sid, "Effect": "Allow",
                               "Action": [f"{service}:{a}" for a in plain],
                               "Resource": resource_arn(resource)})
        if context:
            arns: list[Any] = [resource_arn(resource)]
            if "Decrypt" in context:
                # While `make rewrap` moves records to a new key, the old one still opens them.
                arns.append({"Fn::If": ["HasPreviousSecretsKey", _ref("PreviousSecretsKeyArn"),
                                        _ref("AWS::NoValue")]})
            statements.append({"Sid": f"{sid}WithConnectionContext", "Effect": "Allow",
                               "Action": [f"{service}:{a}" for a in context],
                               "Resource": arns, "Condition": _context_condition()})
    return statements


def platform_statements(fn: LambdaInfo, stage: str) -> list[Json]:
    """What Lambda itself needs for this function: its logs, traces, the queue it polls."""
    log_group = _sub("arn:${AWS::Partition}:logs:${AWS::Region}:${AWS::AccountId}:log-group:"
                     f"/aws/lambda/{fn.physical_name(stage)}:*")
    logs = list(LAMBDA_PLATFORM_LOGS)
    if fn.log_group_cfn_name is None:
        logs.insert(0, "logs:CreateLogGroup")
    out: list[Json] = [{"Sid": "OwnLogs", "Effect": "Allow", "Action": logs,
                        "Resource": log_group}]
    if fn.xray:
        # X-Ray has no resource-level permissions: "*" is the only resource it accepts.
        out.append({"Sid": "Traces", "Effect": "Allow", "Action": list(XRAY_ACTIONS),
                    "Resource": "*"})
    if any(e.kind == "sqs_event" for e in fn.events):
        out.append({"Sid": "PollWorkQueue", "Effect": "Allow",
                    "Action": list(SQS_CONSUMER_ACTIONS), "Resource": _arn(names.WORK_QUEUE)})
    return out


def audit_deny_statement(function: str) -> Json:
    return {"Sid": "AuditTrailIsAppendOnly", "Effect": "Deny",
            "Action": list(policy.audit_denied(function)),
            "Resource": resource_arn(policy.AUDIT_TABLE)}


def _roles(stage: str, fns: list[LambdaInfo]) -> Json:
    out: Json = {}
    for fn in fns:
        out[role_id(fn)] = {
            "Type": "AWS::IAM::Role",
            "Properties": {
                "Description": f"{names.APP_NAME} {stage}: {fn.name}",
                "AssumeRolePolicyDocument": {"Version": "2012-10-17", "Statement": [{
                    "Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"},
                    "Action": "sts:AssumeRole"}]},
                "Tags": [{"Key": "app", "Value": names.APP_NAME}, {"Key": "stage", "Value": stage}],
            },
        }
        # A separate policy resource: the key policies name the roles, and the role policies
        # name the keys; attaching afterwards keeps that from being a cycle.
        out[role_policy_id(fn)] = {
            "Type": "AWS::IAM::RolePolicy",
            "Properties": {
                "RoleName": _ref(role_id(fn)),
                "PolicyName": f"{fn.physical_name(stage)}-least-privilege",
                "PolicyDocument": {"Version": "2012-10-17", "Statement": [
                    *app_statements(fn), audit_deny_statement(fn.name),
                    *platform_statements(fn, stage)]},
            },
        }
    return out


def _roles_using(fns: list[LambdaInfo], resource: str, actions: set[str]) -> list[Json]:
    return [_arn(role_id(fn)) for fn in fns
            if actions & set(policy.POLICIES.get(fn.name, {}).get(resource, ()))]


def _admin_statement() -> Json:
    return {"Sid": "AccountAdministersTheKeyButCannotUseIt", "Effect": "Allow",
            "Principal": {"AWS": _sub("arn:${AWS::Partition}:iam::${AWS::AccountId}:root")},
            "Action": list(KEY_ADMIN_ACTIONS), "Resource": "*"}


def _secrets_key(stage: str, fns: list[LambdaInfo]) -> Json:
    statements: list[Json] = [_admin_statement()]
    for fn in fns:
        actions = policy.POLICIES.get(fn.name, {}).get("key/secrets", ())
        context = sorted(a for a in actions if a in policy.KMS_CONTEXT_ACTIONS)
        plain = sorted(a for a in actions if a not in policy.KMS_CONTEXT_ACTIONS)
        principal = {"AWS": _arn(role_id(fn))}
        if context:
            statements.append({"Sid": f"{fn.cfn_name}WithConnectionContext", "Effect": "Allow",
                               "Principal": principal, "Action": [f"kms:{a}" for a in context],
                               "Resource": "*", "Condition": _context_condition()})
        if plain:
            statements.append({"Sid": f"{fn.cfn_name}KeyMetadata", "Effect": "Allow",
                               "Principal": principal, "Action": [f"kms:{a}" for a in plain],
                               "Resource": "*"})
    # `make rewrap` runs with an operator's credentials: moving a data key between keys
    # (never seeing it) still needs the connection's context.
    statements.append({"Sid": "OperatorsRewrapWithConnectionContext", "Effect": "Allow",
                       "Principal": {"AWS": _sub(
                           "arn:${AWS::Partition}:iam::${AWS::AccountId}:root")},
                       "Action": ["kms:ReEncryptFrom", "kms:ReEncryptTo"], "Resource": "*",
                       "Condition": _context_condition()})
    return {
        names.SECRETS_KEY: {
            "Type": "AWS::KMS::Key", "Condition": "CreateSecretsKey",
            # Retained in every stage: deleting it makes every stored secret unreadable.
            "DeletionPolicy": "Retain", "UpdateReplacePolicy": "Retain",
            "Properties": _key_properties(stage, "envelope key of connection secrets", statements),
        },
        "SecretsKeyAlias": {
            "Type": "AWS::KMS::Alias", "Condition": "CreateSecretsKey",
            "Properties": {"AliasName": names.secrets_key_alias(stage),
                           "TargetKeyId": _ref(names.SECRETS_KEY)},
        },
    }


def _key_properties(stage: str, purpose: str, statements: list[Json]) -> Json:
    """A symmetric key with yearly automatic rotation, a 30-day deletion window, and a tag."""
    return {
        "Description": f"{names.APP_NAME} {stage}: {purpose}",
        "KeySpec": "SYMMETRIC_DEFAULT", "KeyUsage": "ENCRYPT_DECRYPT",
        "EnableKeyRotation": True, "RotationPeriodInDays": 365,
        "PendingWindowInDays": 30,
        "KeyPolicy": {"Version": "2012-10-17", "Statement": statements},
        "Tags": [{"Key": "app", "Value": names.APP_NAME}, {"Key": "stage", "Value": stage}],
    }


def _storage_key(stage: str, fns: list[LambdaInfo]) -> Json:
    account_root = _sub("arn:${AWS::Partition}:iam::${AWS::AccountId}:root")
    roles = [_arn(role_id(fn)) for fn in fns]
    publishers = _roles_using(fns, "topic/alerts", {"Publish"})
    statements: list[Json] = [
        _admin_statement(),
        {"Sid": "TablesThroughDynamoDB", "Effect": "Allow",
         "Principal": {"AWS": [account_root, *roles]},
         "Action": ["kms:Encrypt", "kms:Decrypt", "kms:ReEncrypt*", "kms:GenerateDataKey*",
                    "kms:CreateGrant", "kms:DescribeKey"],
         "Resource": "*",
         "Condition": {"StringEquals": {
             "kms:ViaService": _sub("dynamodb.${AWS::Region}.amazonaws.com"),
             "kms:CallerAccount": _ref("AWS::AccountId")}}},
        {"Sid": "TopicsThroughSNS", "Effect": "Allow",
         "Principal": {"AWS": [account_root, *publishers]},
         "Action": ["kms:Decrypt", "kms:GenerateDataKey*"], "Resource": "*",
         "Condition": {"StringEquals": {
             "kms:ViaService": _sub("sns.${AWS::Region}.amazonaws.com"),
             "kms:CallerAccount": _ref("AWS::AccountId")}}},
        {"Sid": "AlarmsPublishToTheOpsTopic", "Effect": "Allow",
         "Principal": {"Service": "cloudwatch.amazonaws.com"},
         "Action": ["kms:Decrypt", "kms:GenerateDataKey*"], "Resource": "*"},
    ]
    keep = "Retain" if is_prod(stage) else "Delete"
    return {
        names.STORAGE_KEY: {
            "Type": "AWS::KMS::Key", "DeletionPolicy": keep, "UpdateReplacePolicy": keep,
            "Properties": _key_properties(stage, "tables and topics at rest", statements),
        },
        "StorageKeyAlias": {
            "Type": "AWS::KMS::Alias",
            "Properties": {"AliasName": names.storage_key_alias(stage),
                           "TargetKeyId": _ref(names.STORAGE_KEY)},
        },
    }


def _tls_only(resource: Any, actions: str) -> Json:
    return {"Sid": "DenyInsecureTransport", "Effect": "Deny", "Principal": "*",
            "Action": actions, "Resource": resource,
            "Condition": {"Bool": {"aws:SecureTransport": "false"}}}


def _queues(stage: str, fns: list[LambdaInfo]) -> Json:
    consumer_timeout = max((fn.timeout for fn in fns
                            if any(e.kind == "sqs_event" for e in fn.events)), default=30)
    work_arn = _sub("arn:${AWS::Partition}:sqs:${AWS::Region}:${AWS::AccountId}:"
                    + names.work_queue_name(stage))
    return {
        names.DEAD_LETTER_QUEUE: {
            "Type": "AWS::SQS::Queue",
            "Properties": {
                "QueueName": names.dead_letter_queue_name(stage),
                "MessageRetentionPeriod": DLQ_RETENTION_SECONDS,
                "SqsManagedSseEnabled": True,
                "RedriveAllowPolicy": {"redrivePermission": "byQueue",
                                       "sourceQueueArns": [work_arn]},
            },
        },
        names.WORK_QUEUE: {
            "Type": "AWS::SQS::Queue",
            "Properties": {
                "QueueName": names.work_queue_name(stage),
                "VisibilityTimeout": min(43200, VISIBILITY_FACTOR * consumer_timeout),
                "MessageRetentionPeriod": 4 * 24 * 3600,
                "SqsManagedSseEnabled": True,
                "RedrivePolicy": {"deadLetterTargetArn": _arn(names.DEAD_LETTER_QUEUE),
                                  "maxReceiveCount": MAX_RECEIVES},
            },
        },
        "QueuesPolicy": {
            "Type": "AWS::SQS::QueuePolicy",
            "Properties": {
                "Queues": [_ref(names.WORK_QUEUE), _ref(names.DEAD_LETTER_QUEUE)],
                "PolicyDocument": {"Version": "2012-10-17", "Statement": [
                    _tls_only([_arn(names.WORK_QUEUE), _arn(names.DEAD_LETTER_QUEUE)], "sqs:*")]},
            },
        },
    }


def _topics(stage: str) -> Json:
    return {
        names.ALERTS_TOPIC: {
            "Type": "AWS::SNS::Topic",
            "Properties": {"TopicName": names.alerts_topic_name(stage),
                           "DisplayName": "LLM Connections alerts",
                           "KmsMasterKeyId": _ref(names.STORAGE_KEY)},
        },
        names.OPS_TOPIC: {
            "Type": "AWS::SNS::Topic",
            "Properties": {"TopicName": names.ops_topic_name(stage),
                           "DisplayName": "LLM Connections operations",
                           "KmsMasterKeyId": _ref(names.STORAGE_KEY)},
        },
        "TopicsPolicy": {
            "Type": "AWS::SNS::TopicPolicy",
            "Properties": {
                "Topics": [_ref(names.ALERTS_TOPIC), _ref(names.OPS_TOPIC)],
                "PolicyDocument": {"Version": "2012-10-17", "Statement": [
                    {"Sid": "AlarmsPublishToOps", "Effect": "Allow",
                     "Principal": {"Service": "cloudwatch.amazonaws.com"},
                     "Action": "sns:Publish", "Resource": _ref(names.OPS_TOPIC),
                     "Condition": {"StringEquals": {"aws:SourceAccount":
                                                    _ref("AWS::AccountId")}}},
                    _tls_only([_ref(names.ALERTS_TOPIC), _ref(names.OPS_TOPIC)], "sns:Publish"),
                ]},
            },
        },
        "OpsEmailSubscription": {
            "Type": "AWS::SNS::Subscription", "Condition": "HasAlarmEmail",
            "Properties": {"TopicArn": _ref(names.OPS_TOPIC), "Protocol": "email",
                           "Endpoint": _ref("AlarmEmail")},
        },
    }


def _cognito(stage: str) -> Json:
    keep = "Retain" if is_prod(stage) else "Delete"
    return {
        names.USER_POOL: {
            "Type": "AWS::Cognito::UserPool", "Condition": "CreateUserPool",
            "DeletionPolicy": keep, "UpdateReplacePolicy": keep,
            "Properties": {
                "UserPoolName": f"{names.prefix(stage)}-users",
                "AdminCreateUserConfig": {"AllowAdminCreateUserOnly": True},
                "UsernameAttributes": ["email"],
                "AutoVerifiedAttributes": ["email"],
                "AccountRecoverySetting": {"RecoveryMechanisms": [
                    {"Name": "verified_email", "Priority": 1}]},
                "MfaConfiguration": "OPTIONAL",
                "EnabledMfas": ["SOFTWARE_TOKEN_MFA"],
                "Policies": {"PasswordPolicy": {
                    "MinimumLength": 12, "RequireLowercase": True, "RequireUppercase": True,
                    "RequireNumbers": True, "RequireSymbols": True,
                    "TemporaryPasswordValidityDays": 7}},
                "DeletionProtection": "ACTIVE" if is_prod(stage) else "INACTIVE",
            },
        },
        names.USER_POOL_DOMAIN: {
            "Type": "AWS::Cognito::UserPoolDomain", "Condition": "CreateUserPool",
            "Properties": {
                "Domain": {"Fn::If": ["HasCognitoDomainPrefix", _ref("CognitoDomainPrefix"),
                                      _sub(f"{names.prefix(stage)}-${{AWS::AccountId}}")]},
                "UserPoolId": _ref(names.USER_POOL),
            },
        },
        names.ADMINS_GROUP: {
            "Type": "AWS::Cognito::UserPoolGroup", "Condition": "CreateUserPool",
            "Properties": {"GroupName": names.ADMIN_GROUP_NAME,
                           "Description": "Administrators of LLM Connections",
                           "UserPoolId": _ref(names.USER_POOL)},
        },
        names.USER_POOL_CLIENT: {
            "Type": "AWS::Cognito::UserPoolClient", "Condition": "CreateUserPool",
            "Properties": {
                "ClientName": f"{names.prefix(stage)}-app",
                "UserPoolId": _ref(names.USER_POOL),
                "GenerateSecret": False,
                # SRP for applications; ADMIN_USER_PASSWORD needs IAM credentials (the
                # operator's token for `make smoke`), never a public password endpoint.
                "ExplicitAuthFlows": ["ALLOW_USER_SRP_AUTH", "ALLOW_REFRESH_TOKEN_AUTH",
                                      "ALLOW_ADMIN_USER_PASSWORD_AUTH"],
                "PreventUserExistenceErrors": "ENABLED",
                "EnableTokenRevocation": True,
                # The web console signs in through the hosted UI: authorization code with
                # PKCE, a public client (no secret), redirects only to the stage's console.
                # Without callback URLs (the first deploy: the API's URL does not exist yet)
                # the client has no OAuth flow at all.
                **{key: {"Fn::If": ["HasConsoleLogoutUrls" if key == "LogoutURLs"
                                    else "HasConsoleUrls", value, _ref("AWS::NoValue")]}
                   for key, value in _console_oauth().items()},
                "IdTokenValidity": 60, "AccessTokenValidity": 60, "RefreshTokenValidity": 30,
                "TokenValidityUnits": {"IdToken": "minutes", "AccessToken": "minutes",
                                       "RefreshToken": "days"},
            },
        },
    }


def _console_oauth() -> Json:
    return {
        "AllowedOAuthFlows": ["code"],
        "AllowedOAuthFlowsUserPoolClient": True,
        "AllowedOAuthScopes": ["openid", "email", "profile"],
        "SupportedIdentityProviders": ["COGNITO"],
        "CallbackURLs": _ref("ConsoleCallbackUrls"),
        "LogoutURLs": _ref("ConsoleLogoutUrls"),
    }


def console_values() -> dict[str, Json]:
    """The console's hosted-UI sign-in, when the stack's user pool has it (ConsoleSignIn)."""
    return {
        "COGNITO_DOMAIN_URL": {"Fn::If": [
            "ConsoleSignIn",
            _sub(f"https://${{{names.USER_POOL_DOMAIN}}}.auth.${{AWS::Region}}.amazoncognito.com"),
            _ref("AWS::NoValue")]},
        "COGNITO_CLIENT_ID": {"Fn::If": ["ConsoleSignIn", _ref(names.USER_POOL_CLIENT),
                                         _ref("AWS::NoValue")]},
    }


def jwt_values() -> dict[str, Json]:
    issuer = _sub("https://cognito-idp.${AWS::Region}.amazonaws.com/${UserPool}")
    return {
        "JWT_ISSUER": {"Fn::If": ["CreateUserPool", issuer, _ref("JwtIssuer")]},
        "JWT_AUDIENCE": {"Fn::If": ["CreateUserPool", _ref(names.USER_POOL_CLIENT),
                                    _ref("JwtAudience")]},
        "JWKS_URL": {"Fn::If": [
            "CreateUserPool",
            _sub("https://cognito-idp.${AWS::Region}.amazonaws.com/${UserPool}"
                 "/.well-known/jwks.json"),
            {"Fn::If": ["HasJwksUrl", _ref("JwksUrl"),
                        _sub("${JwtIssuer}/.well-known/jwks.json")]}]},
    }


def environment() -> dict[str, Any]:
    """Every variable the functions get from the stack (Chalice's config adds STAGE etc.)."""
    env: dict[str, Any] = {var: _ref(names.table_logical_id(key))
                           for key, var in TABLE_ENV.items()}
    env.update({
        "KMS_KEY_ID": secrets_key_arn(),
        "ALERTS_TOPIC_ARN": _ref(names.ALERTS_TOPIC),
        "WORK_QUEUE_URL": _ref(names.WORK_QUEUE),
        "ADMIN_GROUP": names.ADMIN_GROUP_NAME,
        **jwt_values(),
    })
    return env


def _function_overrides(stage: str, fns: list[LambdaInfo]) -> Json:
    out: Json = {}
    env = environment()
    for fn in fns:
        props: Json = {
            "FunctionName": fn.physical_name(stage),
            "Role": _arn(role_id(fn)),
            "Environment": {"Variables": {**env, **console_values()} if fn.is_api else env},
        }
        events: Json = {}
        for e in fn.events:
            if e.kind == "sqs_event":
                if not (e.queue or "").endswith("work"):
                    raise StackError(f"{fn.name}: @app.on_sqs_message(queue={e.queue!r}) is not "
                                     f"a queue of this stack (the work queue is "
                                     f"{names.work_queue_name(stage)!r})")
                # The stack's queue by reference, so the mapping waits for the queue; and the
                # handler's batchItemFailures are honoured (only failed messages return).
                # Fn::Sub on purpose: Chalice writes {"Fn::Sub": <ARN of the name>} here, and
                # the merge is deep, so only the same intrinsic replaces it (a GetAtt would be
                # merged into the same object, next to Chalice's Fn::Sub).
                events[e.cfn_name] = {"Properties": {
                    "Queue": _sub(f"${{{names.WORK_QUEUE}.Arn}}"),
                    "FunctionResponseTypes": ["ReportBatchItemFailures"]}}
        if events:
            props["Events"] = events
        # Permissions and the log group exist before the function can run.
        depends = [role_policy_id(fn)]
        if fn.log_group_cfn_name:
            depends.append(fn.log_group_cfn_name)
        out[fn.cfn_name] = {"DependsOn": depends, "Properties": props}
        if fn.log_group_cfn_name:
            # Chalice names the REST API's log group after a resource it renames (ApiHandler
            # vs APIHandler); the explicit function name makes every log group name literal.
            out[fn.log_group_cfn_name] = {"Properties": {
                "LogGroupName": f"/aws/lambda/{fn.physical_name(stage)}"}}
    return out


def _alarm(description: str, namespace: str, metric: str, dimensions: list[Json],
           statistic: str, threshold: float, comparison: str, period: int = ALARM_PERIOD) -> Json:
    return {
        "Type": "AWS::CloudWatch::Alarm",
        "Properties": {
            "AlarmDescription": description,
            "Namespace": namespace, "MetricName": metric, "Dimensions": dimensions,
            "Statistic": statistic, "Period": period, "EvaluationPeriods": 1,
            "Threshold": threshold, "ComparisonOperator": comparison,
            "TreatMissingData": "notBreaching",
            "AlarmActions": [_ref(names.OPS_TOPIC)], "OKActions": [_ref(names.OPS_TOPIC)],
        },
    }


# Log lines counted as metrics (the request or message itself goes on): (resource suffix,
# the log message, the metric).
LOG_METRICS = (
    ("AuditWriteFailures", metrics_names.AUDIT_WRITE_FAILED_MESSAGE,
     metrics_names.AUDIT_WRITE_FAILURES),
    ("KeyServiceFaults", metrics_names.KEY_SERVICE_FAULT_MESSAGE,
     metrics_names.KEY_SERVICE_FAULTS),
)


def _alarms(stage: str, fns: list[LambdaInfo]) -> Json:
    service_dim = [{"Name": "service", "Value": metrics_names.SERVICE}]
    out: Json = {
        "DeadLetterQueueAlarm": _alarm(
            f"{stage}: work items failed {MAX_RECEIVES} times and wait in the dead-letter queue",
            "AWS/SQS", "ApproximateNumberOfMessagesVisible",
            [{"Name": "QueueName", "Value": {"Fn::GetAtt": [names.DEAD_LETTER_QUEUE,
                                                             "QueueName"]}}],
            "Maximum", 0, "GreaterThanThreshold"),
        "DailyRunFailedAlarm": _alarm(
            f"{stage}: the daily run failed (dispatch or a whole worker batch)",
            metrics_names.NAMESPACE, metrics_names.DAILY_RUN_FAILED, service_dim,
            "Sum", 1, "GreaterThanOrEqualToThreshold", period=3600),
        "AlertPublishFailuresAlarm": _alarm(
            f"{stage}: connection alerts could not be published",
            metrics_names.NAMESPACE, metrics_names.ALERT_PUBLISH_FAILURES, service_dim,
            "Sum", 1, "GreaterThanOrEqualToThreshold"),
        "AuditWriteFailuresAlarm": _alarm(
            f"{stage}: audit events could not be written",
            metrics_names.NAMESPACE, metrics_names.AUDIT_WRITE_FAILURES, [],
            "Sum", 1, "GreaterThanOrEqualToThreshold"),
        "KeyServiceFaultsAlarm": _alarm(
            f"{stage}: KMS refuses the secrets key (role, disabled or pending deletion); "
            "users get 503s and the daily run retries",
            metrics_names.NAMESPACE, metrics_names.KEY_SERVICE_FAULTS, [],
            "Sum", 1, "GreaterThanOrEqualToThreshold"),
    }
    for fn in fns:
        dims = [{"Name": "FunctionName", "Value": _ref(fn.cfn_name)}]
        out[f"{fn.cfn_name}ErrorsAlarm"] = _alarm(
            f"{stage}: {fn.name} failed", "AWS/Lambda", "Errors", dims,
            "Sum", 1, "GreaterThanOrEqualToThreshold")
        out[f"{fn.cfn_name}ThrottlesAlarm"] = _alarm(
            f"{stage}: {fn.name} was throttled", "AWS/Lambda", "Throttles", dims,
            "Sum", 1, "GreaterThanOrEqualToThreshold")
        if fn.log_group_cfn_name:
            for suffix, message, metric in LOG_METRICS:
                out[f"{fn.cfn_name}{suffix}"] = {
                    "Type": "AWS::Logs::MetricFilter",
                    "DependsOn": [fn.log_group_cfn_name],
                    "Properties": {
                        "LogGroupName": f"/aws/lambda/{fn.physical_name(stage)}",
                        "FilterPattern": json.dumps(message).join(("{ $.message = ", " }")),
                        "MetricTransformations": [{
                            "MetricNamespace": metrics_names.NAMESPACE,
                            "MetricName": metric, "MetricValue": "1", "Unit": "Count"}],
                    },
                }
    return out


PARAMETERS: Json = {
    "AlarmEmail": {"Type": "String", "Default": "",
                   "AllowedPattern": r"^$|^[^@\s]+@[^@\s]+\.[^@\s]+$",
                   "Description": "Optional: an address subscribed to the operations topic"},
    "JwtIssuer": {"Type": "String", "Default": "",
                  "Description": "Optional: an existing OIDC issuer; empty creates a Cognito "
                                 "user pool"},
    "JwtAudience": {"Type": "String", "Default": "",
                    "Description": "With JwtIssuer: the audience (client id) tokens carry"},
    "JwksUrl": {"Type": "String", "Default": "",
                "Description": "With JwtIssuer: the JWKS URL (default <issuer>/.well-known/"
                               "jwks.json)"},
    "CognitoDomainPrefix": {"Type": "String", "Default": "",
                            "AllowedPattern": r"^$|^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$",
                            "Description": "The hosted UI's domain, https://<prefix>.auth."
                                           "<region>.amazoncognito.com (unique in the region; "
                                           "default llmc-<stage>-<account id>)"},
    "ConsoleCallbackUrls": {"Type": "CommaDelimitedList", "Default": "",
                            "Description": "The console's sign-in callback: <EndpointURL>"
                                           "console/ (known after the first deploy; empty "
                                           "leaves console sign-in off)"},
    "ConsoleLogoutUrls": {"Type": "CommaDelimitedList", "Default": "",
                          "Description": "Where the hosted UI may send a signed-out user "
                                         "(usually the same as ConsoleCallbackUrls)"},
    "SecretsKeyArn": {"Type": "String", "Default": "",
                      "AllowedPattern": r"^$|^arn:aws[a-z-]*:kms:[a-z0-9-]+:\d{12}:key/[a-f0-9-]+$",
                      "Description": "Optional: an existing envelope key (moving keys; see "
                                     "docs/deploy.md); empty creates one"},
    "PreviousSecretsKeyArn": {"Type": "String", "Default": "",
                              "AllowedPattern":
                                  r"^$|^arn:aws[a-z-]*:kms:[a-z0-9-]+:\d{12}:key/[a-f0-9-]+$",
                              "Description": "During `make rewrap`: the key being moved away "
                                             "from (decrypt only)"},
}

CONDITIONS: Json = {
    "CreateUserPool": {"Fn::Equals": [_ref("JwtIssuer"), ""]},
    "HasJwksUrl": {"Fn::Not": [{"Fn::Equals": [_ref("JwksUrl"), ""]}]},
    "CreateSecretsKey": {"Fn::Equals": [_ref("SecretsKeyArn"), ""]},
    "HasPreviousSecretsKey": {"Fn::Not": [{"Fn::Equals": [_ref("PreviousSecretsKeyArn"), ""]}]},
    "HasAlarmEmail": {"Fn::Not": [{"Fn::Equals": [_ref("AlarmEmail"), ""]}]},
    "HasCognitoDomainPrefix": {"Fn::Not": [{"Fn::Equals": [_ref("CognitoDomainPrefix"), ""]}]},
    "HasConsoleUrls": {"Fn::Not": [{"Fn::Equals": [
        {"Fn::Join": [",", _ref("ConsoleCallbackUrls")]}, ""]}]},
    "HasConsoleLogoutUrls": {"Fn::Not": [{"Fn::Equals": [
        {"Fn::Join": [",", _ref("ConsoleLogoutUrls")]}, ""]}]},
    "ConsoleSignIn": {"Fn::And": [{"Condition": "CreateUserPool"},
                                  {"Condition": "HasConsoleUrls"}]},
}

RULES: Json = {
    "ExistingIssuerNeedsAudience": {
        "RuleCondition": {"Fn::Not": [{"Fn::Equals": [_ref("JwtIssuer"), ""]}]},
        "Assertions": [{"Assert": {"Fn::Not": [{"Fn::Equals": [_ref("JwtAudience"), ""]}]},
                        "AssertDescription": "JwtAudience is required with JwtIssuer"}],
    },
}


def _outputs() -> Json:
    jwt = jwt_values()
    return {
        "UserPoolId": {"Condition": "CreateUserPool", "Value": _ref(names.USER_POOL)},
        "UserPoolClientId": {"Condition": "CreateUserPool",
                             "Value": _ref(names.USER_POOL_CLIENT)},
        "CognitoDomainUrl": {"Condition": "CreateUserPool", "Value": _sub(
            f"https://${{{names.USER_POOL_DOMAIN}}}.auth.${{AWS::Region}}.amazoncognito.com")},
        "JwtIssuer": {"Value": jwt["JWT_ISSUER"]},
        "SecretsKeyArn": {"Value": secrets_key_arn()},
        "AlertsTopicArn": {"Value": _ref(names.ALERTS_TOPIC)},
        "OpsTopicArn": {"Value": _ref(names.OPS_TOPIC)},
        "WorkQueueUrl": {"Value": _ref(names.WORK_QUEUE)},
        "DeadLetterQueueUrl": {"Value": _ref(names.DEAD_LETTER_QUEUE)},
    }


def _gateway_responses() -> Json:
    """API Gateway's own answers in the service's error shape: an unknown path is a JSON 404
    (API Gateway's default is a 403 "Missing Authentication Token", and with a bearer header a
    message quoting the header back), and every other gateway-made 4xx/5xx is JSON too."""
    def response(kind: str, status: str | None, code: str, message: str) -> Json:
        props: Json = {
            "RestApiId": _ref("RestAPI"),
            "ResponseType": kind,
            # messageString is API Gateway's already-quoted message, so it is not quoted here.
            "ResponseTemplates": {"application/json": (
                '{"error": {"code": ' + json.dumps(code) + ', "message": '
                + (message if message.startswith("$") else json.dumps(message))
                + ', "request_id": "$context.requestId"}}')},
            "ResponseParameters": {
                "gatewayresponse.header.Cache-Control": "'no-store'",
                "gatewayresponse.header.X-Content-Type-Options": "'nosniff'",
                # Deployed stages are HTTPS only: the same HSTS as the app's own answers.
                "gatewayresponse.header.Strict-Transport-Security":
                    f"'{HSTS}'"},
        }
        if status:
            props["StatusCode"] = status
        return {"Type": "AWS::ApiGateway::GatewayResponse", "Properties": props}

    return {
        "GatewayMissingRoute": response("MISSING_AUTHENTICATION_TOKEN", "404", "not_found",
                                        "no such route"),
        "GatewayDefault4xx": response("DEFAULT_4XX", None, "bad_request",
                                      "$context.error.messageString"),
        "GatewayDefault5xx": response("DEFAULT_5XX", None, "service_unavailable",
                                      "the service is temporarily unavailable"),
    }


def build(stage: str, fns: list[LambdaInfo]) -> Json:
    """The merge template of ``stage`` for the functions Chalice emits (``infra.lambdas``)."""
    if stage not in names.DEPLOY_STAGES:
        raise StackError(f"stage must be one of {names.DEPLOY_STAGES}")
    unknown = sorted(set(policy.POLICIES) - {fn.name for fn in fns})
    if unknown:
        raise StackError(f"infra/policy.py lists functions the app does not have: {unknown}")
    for fn_policy in policy.POLICIES.values():
        for resource in fn_policy:
            resource_arn(resource)
    config = stage_config(stage)
    if config.get("manage_iam_role", True):
        raise StackError(f"stage {stage}: set manage_iam_role false in .chalice/config.json "
                         "(the stack owns the roles)")
    resources: Json = {}
    for key, spec in sorted(table_specs().items()):
        resources[names.table_logical_id(key)] = _table(stage, key, spec)
    resources.update(_secrets_key(stage, fns))
    resources.update(_storage_key(stage, fns))
    resources.update(_queues(stage, fns))
    resources.update(_topics(stage))
    resources.update(_cognito(stage))
    resources.update(_roles(stage, fns))
    resources.update(_alarms(stage, fns))
    resources.update(_function_overrides(stage, fns))
    resources.update(_gateway_responses())
    return {
        "Description": TEMPLATE_DESCRIPTION.format(stage=stage),
        "Parameters": PARAMETERS,
        "Conditions": CONDITIONS,
        "Rules": RULES,
        "Resources": resources,
        "Outputs": _outputs(),
    }
