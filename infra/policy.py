"""What each Lambda function may do, written down and reviewed like code.

One entry per Chalice function (its resource name), one line per resource: the IAM actions on
it. Resources are symbolic (``table/<settings key>``, ``table/<key>/index/<index name>``,
``key/secrets``, ``topic/alerts``, ``queue/work``); ``infra.stack`` turns them into ARNs of
the stack's resources.

``tests/infra/test_template.py`` derives, from the source (``infra.codescan``), the calls each
function can make, and fails when this table and the code disagree in either direction: a new
call needs a line here (so a permission change shows in review), and a line no code needs
must go. Platform permissions (logs, X-Ray, polling the queue a function consumes) are not
listed here: ``infra.stack`` adds them from the function's configuration.
"""

from __future__ import annotations

KIND_SERVICE = {"table": "dynamodb", "key": "kms", "topic": "sns", "queue": "sqs"}

POLICIES: dict[str, dict[str, tuple[str, ...]]] = {
    # The REST API: every route.
    "api_handler": {
        "table/providers": ("Query", "GetItem", "PutItem", "DeleteItem"),
        "table/connections": ("GetItem", "PutItem", "UpdateItem", "DeleteItem",
                              "DescribeTable"),  # DescribeTable: GET /health
        "table/connections/index/owner-name-index": ("Query",),
        "table/names": ("PutItem", "DeleteItem"),
        "table/dependents": ("Query", "PutItem", "DeleteItem", "BatchWriteItem"),
        "table/tests": ("Query", "PutItem"),
        "table/audit": ("Query", "PutItem"),
        "table/audit/index/action-index": ("Query",),
        "table/audit/index/target-index": ("Query",),
        "table/usage": ("Query", "UpdateItem"),
        "table/subscriptions": ("Query", "GetItem", "PutItem", "DeleteItem"),
        # Powertools idempotency (Idempotency-Key on creates).
        "table/idempotency": ("GetItem", "PutItem", "UpdateItem", "DeleteItem"),
        "key/secrets": ("GenerateDataKey", "Decrypt", "DescribeKey"),
        "topic/alerts": ("Publish", "Subscribe", "Unsubscribe"),
    },
    # The daily dispatcher: due connections of enabled providers into the work queue.
    "run_daily": {
        "table/providers": ("Query",),
        "table/connections/index/due-index": ("Query",),
        "queue/work": ("SendMessage",),
    },
    # The work-queue consumer: claim, test, record, alert.
    "test_worker": {
        "table/providers": ("GetItem", "Query"),
        # The daily claim lives on the connection: claiming is the UpdateItem that reads it.
        "table/connections": ("UpdateItem",),
        "table/tests": ("PutItem",),
        "table/audit": ("PutItem",),
        "key/secrets": ("Decrypt",),
        "topic/alerts": ("Publish",),
    },
}

# The audit trail is append-only for the app: whatever POLICIES says, every role carries an
# explicit Deny of these on the audit table (a transaction's items are authorised one by one,
# so PutItem is all the transactional audit writes need).
AUDIT_TABLE = "table/audit"
AUDIT_ALLOWED = frozenset({"dynamodb:PutItem", "dynamodb:GetItem", "dynamodb:Query"})
AUDIT_DENIED = ("dynamodb:UpdateItem", "dynamodb:DeleteItem", "dynamodb:BatchWriteItem",
                "dynamodb:PartiQLUpdate", "dynamodb:PartiQLDelete")

# KMS operations that carry the encryption context; the key policy and the role policy both
# require exactly the context keys the code sends (chalicelib.crypto.Binding.kms_context).
KMS_CONTEXT_ACTIONS = frozenset({"GenerateDataKey", "Decrypt", "ReEncryptFrom", "ReEncryptTo",
                                 "Encrypt"})
KMS_CONTEXT_KEYS = ("connection_id", "owner")


def service_of(resource: str) -> str:
    return KIND_SERVICE[resource.split("/", 1)[0]]


def declared(function: str) -> dict[str, set[str]]:
    """{resource: {"service:Action"}} declared for ``function`` (empty if not listed)."""
    return {res: {f"{service_of(res)}:{a}" for a in actions}
            for res, actions in POLICIES.get(function, {}).items()}
