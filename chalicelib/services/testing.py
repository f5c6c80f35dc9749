"""Connection tests: build a provider target from a connection, run the adapter, record the
result (status, history, audit) and hand transitions to the alerting service."""

from __future__ import annotations

import secrets as pysecrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from chalicelib.data.connections_repo import ConnectionRepository
from chalicelib.data.models import AuditModel, ConnectionModel, ProviderModel, TestRecordModel
from chalicelib.data.paging import BadCursor
from chalicelib.data.tests_repo import TestHistoryRepository
from chalicelib.data.usage_repo import UsageRepository
from chalicelib.errors import InvalidInput, NotFound, RateLimited, Unprocessable
from chalicelib.observability import logger, metrics
from chalicelib.providers.base import warning_dicts
from chalicelib.services.audit import AuditService
from chalicelib.services.common import Caller, iso, utcnow
from chalicelib.services.connections import ConnectionCreate, ConnectionService
from chalicelib.services.providers import ProviderService
from chalicelib.services.validation import Strict, parse
from chalicelib.settings import Settings


class TestOptions(Strict):
    __test__ = False
    probe_model: bool = False
    # Run with the connection's own timeout (up to BACKGROUND_TEST_SECONDS) on the queue
    # worker: 202 with a test id to poll, instead of a result capped at the API's 25 s.
    background: bool = False
    # Proposed changes (a PATCH body) to test before saving them; the result is not recorded.
    changes: dict[str, Any] | None = None


@dataclass(frozen=True)
class Prepared:
    """A connection ready to test: its provider and the decrypted target."""

    item: ConnectionModel
    provider: ProviderModel | None
    target: Any  # chalicelib.providers.base.Target, or None when the provider is unusable


@dataclass
class RecordSink:
    """History and audit items held back to be written in batches (the daily worker writes
    one message's worth with BatchWriteItem instead of two PutItems per connection)."""

    history: list[TestRecordModel] = field(default_factory=list)
    audit: list[AuditModel] = field(default_factory=list)


def failed_outcome(code: str, message: str) -> dict[str, Any]:
    """A test result for a failure found before any provider call (nothing was checked)."""
    from chalicelib.providers.base import REMEDIATION, Check, TestOutcome

    return TestOutcome(
        status="error",
        checks={k: Check(ok=None) for k in ("connectivity", "authentication",
                                            "model_access", "performance")},
        latency_ms=None, available_models=[],
        error={"code": code, "message": message, "remediation": list(REMEDIATION[code])},
        warnings=[],
    ).to_dict()


def percentile(values: list[int], pct: float) -> int | None:
    """Nearest-rank percentile."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * pct // 100))
    return int(ordered[int(rank) - 1])


class TestingService:
    __test__ = False

    def __init__(
        self,
        connections: ConnectionService,
        providers: ProviderService,
        repo: ConnectionRepository,
        history: TestHistoryRepository,
        audit: AuditService,
        settings: Settings,
        on_result: Callable[[ConnectionModel, dict[str, Any], str], None] | None = None,
        usage: UsageRepository | None = None,
        sqs_factory: Callable[[], Any] | None = None,
    ) -> None:
        self._usage = usage
        self._sqs = sqs_factory
        self._connections = connections
        self._providers = providers
        self._repo = repo
        self._history = history
        self._audit = audit
        self._settings = settings
        self._on_result = on_result

    # targets ------------------------------------------------------------------------

    def target(self, provider: ProviderModel, *, base_url: str | None,
               credentials: dict[str, str], default_model: str | None,
               settings: dict[str, Any]) -> Any:
        from chalicelib.providers.base import Target

        defaults = provider.default_settings or {}
        return Target(
            adapter=provider.adapter,
            base_url=(base_url or provider.base_url or "").rstrip("/"),
            credentials=credentials,
            default_model=default_model,
            timeout_seconds=float(settings.get("timeout_seconds")
                                  or defaults.get("timeout_seconds", 30)),
            max_retries=int(settings.get("max_retries", defaults.get("max_retries", 3))),
            slow_threshold_ms=int(defaults.get("slow_threshold_ms", 5000)),
            allow_hosts=self._settings.outbound_allow_hosts,
            allow_http=self._settings.outbound_allow_http,
            max_calls=self._settings.provider_calls_per_test,
        )

    def prepare(self, item: ConnectionModel,
                providers: Mapping[str, ProviderModel] | None = None) -> Prepared:
        """Provider lookup and secret decryption (one KMS call) for a saved connection.
        ``providers``: the catalogue already loaded (a daily batch reads it once)."""
        provider = (providers.get(item.provider) if providers is not None
                    else self._providers.get_model(item.provider))
        if provider is None or not provider.enabled:
            return Prepared(item, provider, None)
        secrets = self._connections.open_secrets(item, provider)
        creds = {**(item.credentials_public or {}), **secrets}
        target = self.target(provider, base_url=item.base_url, credentials=creds,
                             default_model=item.default_model, settings=item.settings or {})
        return Prepared(item, provider, target)

    @staticmethod
    def disabled_outcome(provider_id: str) -> dict[str, Any]:
        return failed_outcome("provider_disabled",
                              f"provider {provider_id!r} is disabled or no longer exists")

    # manual tests --------------------------------------------------------------------

    def run_for_api(self, target: Any, probe: bool) -> dict[str, Any]:
        """A test through the API: within the API's time, and saying so when it cut the
        connection's own timeout."""
        from chalicelib.providers.runner import run_sync, test_target

        cap = self._settings.api_call_seconds
        result: dict[str, Any] = run_sync(
            test_target(target.within(cap), probe_model=probe)).to_dict()
        if target.timeout_seconds > cap:
            result["timeout_capped_at"] = cap
        return result

    def throttle(self, caller: Caller) -> None:
        """A user's tests per minute (each costs provider calls and, saved, a KMS Decrypt)."""
        if self._usage is None:
            return
        now = utcnow()
        wait = self._usage.take_rate_slot(f"tests#{caller.user_id}", now,
                                          self._settings.tests_per_minute)
        if wait is not None:
            raise RateLimited(f"at most {self._settings.tests_per_minute} tests a minute per "
                              "user; try again shortly", retry_after=wait,
                              code="too_many_tests")

    def test_saved(self, caller: Caller, connection_id: str, body: dict[str, Any]
                   ) -> dict[str, Any]:
        options = parse(TestOptions, body)
        item = self._connections.get(caller, connection_id)
        self.throttle(caller)
        if options.changes is not None:
            return self._test_draft(caller, item, options)
        if item.needs_credentials or item.sealed is None:
            raise Unprocessable("this connection has no credentials yet; supply them first",
                                field="credentials", code="needs_credentials")
        if options.background:
            return self._queue_background(caller, item, options.probe_model)
        prepared = self.prepare(item)
        if prepared.target is None:
            result = self.disabled_outcome(item.provider)
        else:
            result = self.run_for_api(prepared.target, options.probe_model)
        self.record(item, result, trigger="manual", caller=caller)
        return result

    # background tests ---------------------------------------------------------------------

    def _queue_background(self, caller: Caller, item: ConnectionModel,
                          probe: bool) -> dict[str, Any]:
        import json

        if self._sqs is None:
            raise Unprocessable("background tests are not available here", field="background")
        test_id = f"test_{pysecrets.token_urlsafe(12)}"
        now = utcnow()
        self._history.put_job(test_id, TestRecordModel(
            connection_id="", sk="", owner=item.owner, tested_at=iso(now), trigger="manual",
            status="queued", result={"connection_id": item.id},
            expires_at=now + timedelta(days=1)))
        self._sqs().send_message(QueueUrl=self._settings.work_queue_url, MessageBody=json.dumps(
            {"background_test": {"test_id": test_id, "connection_id": item.id,
                                 "user_id": caller.user_id, "admin": caller.is_admin,
                                 "probe_model": probe}}))
        return {"test_id": test_id, "status": "queued", "connection_id": item.id,
                "location": f"/connections/{item.id}/tests/{test_id}"}

    async def run_background(self, job: dict[str, Any], client: Any = None) -> None:
        """The queue worker's side: test with the connection's own timeout (up to the
        setting), record it as any manual test, and complete the job the caller polls."""
        import asyncio

        from chalicelib.providers.runner import test_target
        from chalicelib.services.identity import Principal

        test_id, cid = str(job["test_id"]), str(job["connection_id"])
        record = await asyncio.to_thread(self._history.get_job, test_id)
        item = await asyncio.to_thread(self._repo.get, cid)
        if record is None or item is None or record.status != "queued":
            return  # expired, deleted, or already run (a redelivered message)
        caller = Caller(Principal(user_id=str(job["user_id"]), is_admin=bool(job["admin"])),
                        request_id=test_id)
        prepared = await asyncio.to_thread(self.prepare, item)
        if prepared.target is None:
            result = self.disabled_outcome(item.provider)
        else:
            target = prepared.target.within(self._settings.background_test_seconds)
            result = (await test_target(target, probe_model=bool(job.get("probe_model")),
                                        client=client)).to_dict()
        await asyncio.to_thread(self.record, item, result, trigger="manual", caller=caller)
        record.status, record.result = result["status"], {"connection_id": cid, **result}
        record.tested_at = result.get("tested_at") or iso(utcnow())
        await asyncio.to_thread(self._history.put_job, test_id, record)

    def background_result(self, caller: Caller, connection_id: str,
                          test_id: str) -> dict[str, Any]:
        item = self._connections.get(caller, connection_id)
        record = self._history.get_job(test_id) if test_id.startswith("test_") else None
        if record is None or (record.result or {}).get("connection_id") != item.id:
            raise NotFound("no such test of this connection (they are kept for a day)")
        result = {k: v for k, v in (record.result or {}).items() if k != "connection_id"}
        return {"test_id": test_id, "status": record.status, "queued_or_tested_at":
                record.tested_at, "result": result or None}

    def _test_draft(self, caller: Caller, item: ConnectionModel,
                    options: TestOptions) -> dict[str, Any]:
        if not options.changes:
            raise InvalidInput("changes must name at least one field", field="changes")
        provider, draft = self._connections.draft_config(item, options.changes)
        if not provider.enabled:
            return self.disabled_outcome(provider.id)
        target = self.target(provider, base_url=draft["base_url"],
                             credentials=draft["credentials"],
                             default_model=draft["default_model"], settings=draft["settings"])
        return self._test_unrecorded(caller, target, options.probe_model, "connection.test_draft",
                                     f"connection:{item.id}", item.owner,
                                     changed_fields=sorted(options.changes))

    def _test_unrecorded(self, caller: Caller, target: Any, probe: bool, action: str,
                         audit_target: str, owner: str, **detail: Any) -> dict[str, Any]:
        """Run a test whose result is stored nowhere but in its audit event."""
        result = self.run_for_api(target, probe)
        self._audit.record(caller, action, audit_target, target_owner=owner,
                           detail={"status": result["status"], **detail,
                                   "error_code": (result.get("error") or {}).get("code")})
        return result

    def test_unsaved(self, caller: Caller, body: dict[str, Any]) -> dict[str, Any]:
        """Test a configuration before saving it; stores nothing but an audit event."""
        probe = body.get("probe_model", False) if isinstance(body, dict) else False
        if not isinstance(probe, bool):
            raise InvalidInput("probe_model must be true or false", field="probe_model")
        data = parse(ConnectionCreate, {k: v for k, v in body.items() if k != "probe_model"})
        self.throttle(caller)
        provider, base_url, public, secrets, conn_settings = \
            self._connections.prepare_config(data)
        target = self.target(provider, base_url=base_url, credentials={**public, **secrets},
                             default_model=data.default_model, settings=conn_settings)
        return self._test_unrecorded(caller, target, probe, "connection.test_unsaved",
                                     f"provider:{provider.id}", caller.user_id)

    # recording -----------------------------------------------------------------------

    def record(self, item: ConnectionModel, result: dict[str, Any], *, trigger: str,
               caller: Caller, also: Sequence[Any] = (), sink: RecordSink | None = None
               ) -> None:
        """Save a result: connection status, history entry, audit event, alert hook.
        ``also``: more update actions for the same write (the daily run completes its claim).
        ``sink``: hold the history entry and audit event there for ``flush`` instead of
        writing each on its own."""
        error = result.get("error") or {}
        tested_at = result.get("tested_at") or iso(utcnow())
        summary = {
            "status": result["status"],
            "tested_at": tested_at,
            "latency_ms": result.get("latency_ms"),
            "error_code": error.get("code"),
            "error_message": error.get("message"),
            "warnings": result.get("warnings") or [],
            "trigger": trigger,
        }
        message = error.get("message") or "; ".join(
            w["message"] for w in warning_dicts(result.get("warnings"))) or None
        M = ConnectionModel
        actions = [
            M.status.set(result["status"]),
            M.status_hint.remove(),
            M.last_tested_at.set(tested_at),
            M.last_test.set(summary),
            M.status_message.set(message) if message else M.status_message.remove(),
        ]
        if result.get("available_models"):
            actions.append(M.available_models.set(result["available_models"]))
        # The primary set's "failed for auth" mark (invoke failover skips a marked set) is
        # set or cleared by each test of it.
        actions.append(M.credential_meta.set({"auth_failed_at": tested_at})
                       if error.get("code") in ("invalid_api_key", "permission_denied")
                       else M.credential_meta.remove())
        actions.extend(also)
        try:
            self._repo.update_unversioned(item, actions)
        except Exception as exc:
            if getattr(exc, "cause_response_code", None) == "ConditionalCheckFailedException":
                logger.info("connection vanished before its test was recorded",
                            extra={"connection_id": item.id})
                return
            raise
        now = utcnow()
        record = TestRecordModel(
            connection_id=item.id,
            sk=f"{tested_at}#{pysecrets.token_hex(4)}",
            owner=item.owner,
            tested_at=tested_at,
            trigger=trigger,
            status=result["status"],
            latency_ms=result.get("latency_ms"),
            error_code=error.get("code"),
            result=result,
            expires_at=now + timedelta(days=self._settings.test_history_ttl_days),
        )
        detail = {"trigger": trigger, "status": result["status"],
                  "error_code": error.get("code")}
        if result.get("incident_id"):
            detail["incident_id"] = result["incident_id"]
        outcome = "success" if result["status"] != "error" else "failure"
        if sink is not None:
            sink.history.append(record)
            sink.audit.append(self._audit.event(caller, "connection.test",
                                                f"connection:{item.id}",
                                                target_owner=item.owner, outcome=outcome,
                                                detail=detail))
        else:
            self._history.add(record)
            self._audit.record(caller, "connection.test", f"connection:{item.id}",
                               target_owner=item.owner, outcome=outcome, detail=detail)
        metrics.add_metric(name="ConnectionTests", unit="Count", value=1)
        if self._on_result is not None:
            self._on_result(item, result, trigger)

    def flush(self, sink: RecordSink) -> None:
        """Write what ``record`` held back: BatchWriteItem, 25 items a call, unprocessed
        items resent until written."""
        if sink.history:
            self._history.add_many(sink.history)
            sink.history = []
        if sink.audit:
            self._audit.record_many(sink.audit)
            sink.audit = []

    # history and stats ----------------------------------------------------------------

    def history(self, caller: Caller, connection_id: str, *, cursor: str | None,
                limit: int) -> dict[str, Any]:
        item = self._connections.get(caller, connection_id)
        try:
            page = self._history.page(item.id, cursor=cursor, limit=limit)
        except BadCursor as exc:
            raise InvalidInput(str(exc), field="cursor") from None
        return {"items": [_record_view(r) for r in page.items], "next_cursor": page.next_cursor}

    def test_stats(self, item: ConnectionModel) -> dict[str, Any]:
        now = utcnow()
        since30 = iso(now - timedelta(days=30))
        since7 = iso(now - timedelta(days=7))
        rows = list(self._history.since(item.id, since30))
        out: dict[str, Any] = {}
        for label, since in (("7d", since7), ("30d", since30)):
            window = [r for r in rows if r.tested_at >= since]
            lat = [int(r.latency_ms) for r in window if r.latency_ms is not None]
            out[label] = {
                "tests": len(window),
                "failures": sum(1 for r in window if r.status == "error"),
                "warnings": sum(1 for r in window if r.status == "warning"),
                "latency_p50_ms": percentile(lat, 50),
                "latency_p95_ms": percentile(lat, 95),
            }
        return out


def _record_view(r: TestRecordModel) -> dict[str, Any]:
    result = r.result
    if isinstance(result, dict):
        result = {**result, "warnings": warning_dicts(result.get("warnings"))}
    return {"tested_at": r.tested_at, "trigger": r.trigger, "status": r.status,
            "latency_ms": r.latency_ms, "error_code": r.error_code, "result": result}
