"""Physical names of the stack's resources, one convention for every stage.

The local stack (``devtools.localenv``) uses the same shape with the ``local`` stage, so a
name seen in a log line tells which stage and resource it belongs to.
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
APP_NAME = "llm-connections"
DEPLOY_STAGES = ("dev", "prod")

# Logical ids of the stack's resources that the code's settings point at.
WORK_QUEUE = "WorkQueue"
DEAD_LETTER_QUEUE = "WorkDeadLetterQueue"
ALERTS_TOPIC = "AlertsTopic"
OPS_TOPIC = "OpsTopic"
SECRETS_KEY = "SecretsKey"
STORAGE_KEY = "StorageKey"
USER_POOL = "UserPool"
USER_POOL_CLIENT = "UserPoolClient"
USER_POOL_DOMAIN = "UserPoolDomain"
ADMINS_GROUP = "AdminsGroup"
ADMIN_GROUP_NAME = "admins"


def prefix(stage: str) -> str:
    return f"llmc-{stage}"


def stack_name(stage: str) -> str:
    return prefix(stage)


def table_name(stage: str, key: str) -> str:
    return f"{prefix(stage)}-{key}"


def table_logical_id(key: str) -> str:
    return f"{key[:1].upper()}{key[1:]}Table"


def function_name(stage: str, resource_name: str) -> str:
    return f"{prefix(stage)}-{resource_name.replace('_', '-')}"


def work_queue_name(stage: str) -> str:
    return f"{prefix(stage)}-work"


def dead_letter_queue_name(stage: str) -> str:
    return f"{prefix(stage)}-work-dlq"


def alerts_topic_name(stage: str) -> str:
    return f"{prefix(stage)}-alerts"


def ops_topic_name(stage: str) -> str:
    return f"{prefix(stage)}-ops"


def secrets_key_alias(stage: str) -> str:
    return f"alias/{prefix(stage)}-secrets"


def storage_key_alias(stage: str) -> str:
    return f"alias/{prefix(stage)}-storage"


def build_dir(stage: str) -> Path:
    return ROOT / "build" / stage
