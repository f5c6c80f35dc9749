"""``Idempotency-Key`` for creates, with Powertools idempotency, scoped to the caller.

The key is hashed with the caller's id, and the request is validated against the first use:
the same key with another body is a conflict, never a second resource. What is validated is
the caller's ``validate`` document, never the raw body: Powertools keeps an unsalted SHA-256
of it for 24 hours, and a hash of a body holding a key would let anyone who can read the
table test guesses of that key offline (see ``ConnectionService.idempotency_fingerprint``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from chalicelib.errors import Conflict, InvalidInput

# API Gateway ends every HTTP request within 29 s, so no create can still be running after this.
REQUEST_BUDGET_MS = 30_000


class _RequestBudget:
    """Stands in for the Lambda context that Powertools asks for the time left. Without one,
    an in-progress record never expires on its own: a request that dies without cleaning up
    (a Lambda timeout) would block its key for the full 24 hours."""

    def get_remaining_time_in_millis(self) -> int:
        return REQUEST_BUDGET_MS


class IdempotentRunner:
    def __init__(self, table_name: str, client_factory: Callable[[], Any]) -> None:
        self._table = table_name
        self._client_factory = client_factory
        self._persistence: Any = None
        self._config: Any = None

    def _setup(self) -> None:
        if self._persistence is None:
            from aws_lambda_powertools.utilities.idempotency import (
                DynamoDBPersistenceLayer,
                IdempotencyConfig,
            )

            self._persistence = DynamoDBPersistenceLayer(
                table_name=self._table, boto3_client=self._client_factory()
            )
            self._config = IdempotencyConfig(
                event_key_jmespath="[scope, owner, key]",
                payload_validation_jmespath="validate",
                raise_on_no_idempotency_key=True,
                expires_after_seconds=24 * 3600,
                hash_function="sha256",
            )
            self._config.register_lambda_context(_RequestBudget())

    def run(self, scope: str, owner: str, key: str, body: dict[str, Any],
            fn: Callable[[dict[str, Any]], dict[str, Any]], *, validate: Any,
            wait_seconds: float = 10.0) -> dict[str, Any]:
        """Run ``fn(body)`` once per (scope, owner, key); replays return the first result.
        ``validate``: what a replay must match, without secrets (it is hashed and stored)."""
        from aws_lambda_powertools.utilities.idempotency import idempotent_function
        from aws_lambda_powertools.utilities.idempotency.exceptions import (
            IdempotencyAlreadyInProgressError,
            IdempotencyValidationError,
        )

        if not key or len(key) > 255 or not key.isprintable():
            raise InvalidInput("Idempotency-Key must be 1-255 printable characters",
                               field="Idempotency-Key")
        self._setup()

        @idempotent_function(data_keyword_argument="request", config=self._config,
                             persistence_store=self._persistence)
        def once(request: dict[str, Any]) -> dict[str, Any]:
            return fn(request["body"])

        deadline = time.monotonic() + wait_seconds
        delay = 0.05
        while True:
            try:
                return once(request={"scope": scope, "owner": owner, "key": key, "body": body,
                                     "validate": validate})
            except IdempotencyValidationError:
                raise Conflict("this Idempotency-Key was used with a different request body",
                               field="Idempotency-Key", code="idempotency_key_reused") from None
            except IdempotencyAlreadyInProgressError:
                # A concurrent retry: wait for the first request's result instead of failing.
                if time.monotonic() > deadline:
                    raise Conflict("a request with this Idempotency-Key is still in progress",
                                   field="Idempotency-Key", code="in_progress") from None
                time.sleep(delay)
                delay = min(delay * 1.5, 0.5)
