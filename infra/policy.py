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
        # Counting a provider's connections before its base URL changes.
        "table/connections/index/provider-index": ("Query",),
        "table/names": ("PutItem", "DeleteItem"),
        "table/dependents": ("Query", "PutItem", "DeleteItem", "BatchWriteItem"),
        # GetItem: a background test's state (GET /connections/{id}/tests/{test_id}).
        "table/tests": ("Query", "PutItem", "GetItem"),
        "table/audit": ("Query", "PutItem"),
        "table/audit/index/action-index": ("Query",),
        "table/audit/index/target-index": ("Query",),
        "table/usage": ("Query", "UpdateItem"),
        "table/subscriptions": ("Query", "GetItem", "PutItem", "DeleteItem"),
        # GET /incidents.
        "table/daily": ("Query",),
        # Powertools idempotency (Idempotency-Key on creates).
        "table/idempotency": ("GetItem", "PutItem", "UpdateItem", "DeleteItem"),
        # GenerateDataKeyWithoutPlaintext: after an AccessDenied, telling our role refused
        # (an operator alarm) from a blob pointing at a key that is not ours.
        "key/secrets": ("GenerateDataKey", "GenerateDataKeyWithoutPlaintext", "Decrypt",
                        "DescribeKey"),
        "topic/alerts": ("Publish", "Subscribe", "Unsubscribe"),
        # A background test goes to the worker through the work queue.
        "queue/work": ("SendMessage",),
    },
    # The daily dispatcher: due connections of enabled providers into the work queue.
    "run_daily": {
        "table/providers": ("Query",),
        "table/connections/index/due-index": ("Query",),
        # The run's queued-message count (the digests go out when the workers reach it).
        "table/daily": ("UpdateItem",),
        "queue/work": ("SendMessage",),
    },
    # The work-queue consumer: claim, test, record, alert.
    "test_worker": {
        "table/providers": ("GetItem", "Query"),
        # The daily claim lives on the connection: claiming is the UpdateItem that reads it.
        # GetItem: a background test reads its connection (no claim: not the daily run).
        "table/connections": ("GetItem", "UpdateItem"),
        # A message's history entries and audit events go out in batches; GetItem: a
        # background test's state.
        "table/tests": ("PutItem", "BatchWriteItem", "GetItem"),
        "table/audit": ("PutItem", "BatchWriteItem"),
        # Run counters, incidents (opened and closed in transactions), digest lines.
        "table/daily": ("GetItem", "PutItem", "UpdateItem", "DeleteItem", "Query",
                        "BatchWriteItem"),
        # Who wants a digest.
        "table/subscriptions": ("Query",),
        # GenerateDataKeyWithoutPlaintext: see the API's.
        "key/secrets": ("Decrypt", "GenerateDataKeyWithoutPlaintext"),
        "topic/alerts": ("Publish",),
        # Delayed retests of an open incident, and the run's digest message.
        "queue/work": ("SendMessage",),
    },
}

# The audit trail is append-only for the app: whatever POLICIES says, every role carries an
# explicit Deny of these on the audit table (a transaction's items are authorised one by one,
# so PutItem is all the transactional audit writes need).
#
# BatchWriteItem is the exception, for the daily worker alone: IAM cannot tell a batch's put
# requests from its delete requests (one action, no condition key for it), and a batch put
# cannot carry attribute_not_exists. So it is allowed to the one role that needs it
# (AUDIT_BATCH_WRITERS) and denied to every other, and append-only is kept by the code, which
# a test checks: the only batch on the audit table is AuditRepository.append_many, which
# sends put requests only, of events whose sort key holds their time and a fresh random id
# (a put never lands on an existing event); tests/infra fails if any code reachable from a
# Lambda deletes through a batch on that table. Point-in-time recovery covers the rest.
AUDIT_TABLE = "table/audit"
AUDIT_ALLOWED = frozenset({"dynamodb:PutItem", "dynamodb:GetItem", "dynamodb:Query"})
AUDIT_BATCH_WRITERS = frozenset({"test_worker"})
AUDIT_DENIED = ("dynamodb:UpdateItem", "dynamodb:DeleteItem", "dynamodb:BatchWriteItem",
                "dynamodb:PartiQLUpdate", "dynamodb:PartiQLDelete")


def audit_denied(function: str) -> tuple[str, ...]:
    """The explicit Deny on the audit table for ``function``'s role."""
    if function in AUDIT_BATCH_WRITERS:
        return tuple(a for a in AUDIT_DENIED if a != "dynamodb:BatchWriteItem")
    return AUDIT_DENIED


def audit_allowed(function: str) -> frozenset[str]:
    if function in AUDIT_BATCH_WRITERS:
        return AUDIT_ALLOWED | {"dynamodb:BatchWriteItem"}
    return AUDIT_ALLOWED

# KMS operations that carry the encryption context; the key policy and the role policy both
# require exactly the context keys the code sends (chalicelib.crypto.Binding.kms_context).
KMS_CONTEXT_ACTIONS = frozenset({"GenerateDataKey", "Decrypt", "ReEncryptFrom", "ReEncryptTo",
                                 "Encrypt", "GenerateDataKeyWithoutPlaintext"})
KMS_CONTEXT_KEYS = ("connection_id", "owner")


def service_of(resource: str) -> str:
    return KIND_SERVICE[resource.split("/", 1)[0]]


def declared(function: str) -> dict[str, set[str]]:
    """{resource: {"service:Action"}} declared for ``function`` (empty if not listed)."""
    return {res: {f"{service_of(res)}:{a}" for a in actions}
            for res, actions in POLICIES.get(function, {}).items()}
