"""The daily run: a dispatcher that streams due connections into the work queue, and a
worker that tests a batch with bounded async concurrency, a cap per provider, and the
(connection, date) claim that makes each connection tested at most once a day.

AWS calls per tested connection: the claim (an UpdateItem that also reads the connection),
one KMS Decrypt, and the UpdateItem that records the result and completes the claim. The
history entries and audit events of a message go out together with BatchWriteItem (25 items a
call, unprocessed items resent), and each message adds one counter update per provider key
(provider incidents) and one to the run's progress (the digests go out when it is complete).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from chalicelib.data.connections_repo import ConnectionRepository
from chalicelib.data.daily_repo import DailyClaimRepository, RunRepository
from chalicelib.data.models import ConnectionModel, DigestEntryModel, ProviderModel
from chalicelib.errors import SealBroken
from chalicelib.observability import logger, metrics
from chalicelib.services.alerts import decide, rotation_message
from chalicelib.services.common import SYSTEM, iso, parse_iso, utcnow
from chalicelib.services.credential_sets import CredentialSetService, set_result, sets_of
from chalicelib.services.digest import ROTATION_REMEDIATION, DigestService
from chalicelib.services.incidents import (
    Decision,
    IncidentService,
    as_incident_result,
    provider_key,
    provider_side_code,
    reclassify_actions,
)
from chalicelib.services.providers import ProviderService
from chalicelib.services.testing import RecordSink, TestingService, failed_outcome
from chalicelib.settings import Settings

IDS_PER_MESSAGE = 25
SQS_BATCH = 10
# A connection tested less than this long ago is not due: a daily schedule drifts by
# seconds to minutes, so "24 hours" would skip connections tested at yesterday's run.
DUE_AFTER = timedelta(hours=23)


@dataclass
class RunStats:
    tested: int = 0
    skipped: int = 0
    failed: int = 0
    errors: int = 0
    by_status: Counter[str] = field(default_factory=Counter)
    by_code: Counter[str] = field(default_factory=Counter)

    def as_dict(self) -> dict[str, Any]:
        return {"tested": self.tested, "skipped": self.skipped, "failed": self.failed,
                "processing_errors": self.errors, "by_status": dict(self.by_status),
                "by_code": dict(self.by_code)}


@dataclass
class Tested:
    """A claimed connection and its result, before it is recorded."""

    item: ConnectionModel
    result: dict[str, Any]
    # Results of the connection's other credential sets, by name (kept on each set).
    other_sets: dict[str, dict[str, Any]] = field(default_factory=dict)


def run_date_of(now: Any = None) -> str:
    return (now or utcnow()).strftime("%Y-%m-%d")


class DailyRun:
    def __init__(
        self,
        repo: ConnectionRepository,
        providers: ProviderService,
        testing: TestingService,
        claims: DailyClaimRepository,
        sqs_factory: Callable[[], Any],
        settings: Settings,
        *,
        concurrency: int = 50,
        per_provider: int = 10,
        incidents: IncidentService | None = None,
        runs: RunRepository | None = None,
        digests: DigestService | None = None,
        credential_sets: CredentialSetService | None = None,
        publish: Callable[[dict[str, Any]], bool] | None = None,
        provider_name: Callable[[str], str] = str,
    ) -> None:
        self._repo = repo
        self._sets = credential_sets
        self._publish = publish
        self._provider_name = provider_name
        self._providers = providers
        self._testing = testing
        self._claims = claims
        self._sqs = sqs_factory
        self._settings = settings
        self.concurrency = concurrency
        self.per_provider = per_provider
        self.per_owner = max(1, min(settings.daily_owner_share, per_provider))
        self._incidents = incidents
        self._runs = runs
        self._digests = digests

    # dispatcher --------------------------------------------------------------------------

    def due_rows(self, now: Any = None) -> Iterator[Any]:
        """Stream the due connections of enabled providers (index queries, no scan)."""
        now = now or utcnow()
        enabled = {p.id for p in self._providers.all_models() if p.enabled}
        cutoff = iso(now - DUE_AFTER)
        for shard in range(self._settings.daily_shards):
            for row in self._repo.due(f"s{shard}", cutoff):
                if row.provider in enabled:
                    yield row

    def due_ids(self, now: Any = None) -> Iterator[str]:
        for row in self.due_rows(now):
            yield row.id

    def dispatch(self, now: Any = None) -> dict[str, Any]:
        """Send every due connection to the work queue, 10 messages a call.

        Messages are grouped by provider key (provider, and base URL when it has one), 25 ids
        each, so a provider's first message already holds enough of its connections to
        recognise an incident before any owner is alerted. Memory stays bounded per key: a
        key's ids are sent as soon as two messages' worth are buffered; what is left at the
        end goes out per key when it could be an incident, and packed 25 to a message
        (marked ``small``: not counted) when the key has too few connections for one."""
        started = time.monotonic()
        now = now or utcnow()
        run_date = run_date_of(now)
        min_conn = self._settings.incident_min_connections
        sent_ids = 0
        messages = 0
        entries: list[dict[str, str]] = []
        buffers: dict[str, list[str]] = {}
        sent_keys: set[str] = set()

        def flush_entries() -> None:
            nonlocal entries, messages
            if not entries:
                return
            resp = self._sqs().send_message_batch(QueueUrl=self._settings.work_queue_url,
                                                  Entries=entries)
            if resp.get("Failed"):
                # The scheduled run is retried by EventBridge; the claims make a re-run safe.
                raise RuntimeError(f"{len(resp['Failed'])} messages were not queued")
            messages += len(entries)
            entries = []

        def add_message(ids: list[str], *, small: bool = False) -> None:
            doc: dict[str, Any] = {"run_date": run_date, "connection_ids": ids}
            if small:
                doc["small"] = True
            entries.append({"Id": str(len(entries)), "MessageBody": json.dumps(doc)})
            if len(entries) == SQS_BATCH:
                flush_entries()

        for row in self.due_rows(now):
            key = provider_key(row.provider, getattr(row, "base_url", None))
            buf = buffers.setdefault(key, [])
            buf.append(row.id)
            sent_ids += 1
            if len(buf) == 2 * IDS_PER_MESSAGE:
                add_message(buf[:IDS_PER_MESSAGE])
                del buf[:IDS_PER_MESSAGE]
                sent_keys.add(key)
        small: list[str] = []
        for key, buf in buffers.items():
            if key not in sent_keys and len(buf) < min_conn:
                small.extend(buf)
            elif len(buf) - IDS_PER_MESSAGE >= min_conn:
                add_message(buf[:IDS_PER_MESSAGE])
                add_message(buf[IDS_PER_MESSAGE:])
            else:
                # Never a tail too short to be counted on its own: at most 25 + min - 1 ids.
                add_message(buf)
        buffers.clear()
        for i in range(0, len(small), IDS_PER_MESSAGE):
            add_message(small[i:i + IDS_PER_MESSAGE], small=True)
        flush_entries()
        if self._runs is not None and messages:
            queued, finished = self._runs.add_messages(run_date, messages,
                                                       now + timedelta(days=7))
            if finished >= queued:
                # The workers were faster than this count: the digest is due now.
                self._sqs().send_message(QueueUrl=self._settings.work_queue_url,
                                         MessageBody=json.dumps({"digest": run_date}))
        summary = {"run_date": run_date, "connections_queued": sent_ids, "messages": messages,
                   "duration_ms": round((time.monotonic() - started) * 1000)}
        metrics.add_metric(name="ConnectionsQueued", unit="Count", value=sent_ids)
        logger.info("daily run dispatched", extra=summary)
        return summary

    # worker ------------------------------------------------------------------------------

    async def claim_and_test(self, cid: str, run_date: str, stats: RunStats, client: Any,
                             limits: dict[str, asyncio.Semaphore], overall: asyncio.Semaphore,
                             providers: Mapping[str, ProviderModel] | None = None
                             ) -> Tested | None:
        """Claim and test one connection; None when there is nothing to record (claimed
        elsewhere, or no credentials: that claim is completed here). On a processing failure
        the claim is released and the error raised, so the redelivery tests it."""
        lease = timedelta(seconds=self._settings.daily_lease_seconds)
        # Claiming returns the connection: no separate read.
        item = await asyncio.to_thread(self._claims.claim, cid, run_date, utcnow(), lease)
        if item is None:
            stats.skipped += 1
            return None
        try:
            if item.sealed is None or item.needs_credentials:
                stats.skipped += 1
                await asyncio.to_thread(self._claims.complete, item)
                return None
            try:
                prepared = await asyncio.to_thread(self._testing.prepare, item, providers)
            except SealBroken as exc:
                # The user's fix is the same as for a bad key: enter the secret again.
                return Tested(item, failed_outcome("invalid_api_key", exc.message))
            if prepared.target is None:
                return Tested(item, self._testing.disabled_outcome(item.provider))
            from chalicelib.providers.runner import test_target

            # However long the connection's own timeout, a daily test ends well inside the
            # worker's Lambda timeout (a hanging provider cannot take the batch with it).
            prepared = dataclasses.replace(prepared, target=prepared.target.within(
                self._settings.daily_test_timeout_seconds))
            gates = (
                # One owner's share of the provider first: twenty hanging connections of one
                # user hold their share of the slots, not the ones other owners' tests need.
                limits.setdefault(f"{item.provider}\0{item.owner}",
                                  asyncio.Semaphore(self.per_owner)),
                # Then the provider's cap: a task queued behind a busy provider must not sit
                # on one of the batch's slots while other providers' connections wait for it.
                limits.setdefault(item.provider, asyncio.Semaphore(self.per_provider)),
                overall,
            )
            probe = bool((item.settings or {}).get("probe_model_daily"))
            shared = None if prepared.target.adapter == "bedrock" else client
            async with gates[0], gates[1], gates[2]:
                outcome = await test_target(prepared.target, probe_model=probe, client=shared)
            others = await self._test_other_sets(prepared, gates, shared)
            return Tested(item, outcome.to_dict(), others)
        except BaseException:
            stats.errors += 1
            await asyncio.to_thread(self._claims.release, cid, run_date)
            raise

    async def _test_other_sets(self, prepared: Any, gates: tuple[asyncio.Semaphore, ...],
                               client: Any) -> dict[str, dict[str, Any]]:
        """Test every credential set besides the primary (one KMS Decrypt each); the
        connection's status stays the primary's."""
        item = prepared.item
        if self._sets is None or not item.credential_sets:
            return {}
        from chalicelib.providers.runner import test_target

        out: dict[str, dict[str, Any]] = {}
        for cs in sets_of(item)[1:]:
            try:
                secrets = await asyncio.to_thread(self._sets.open, item, cs,
                                                  prepared.provider)
            except SealBroken as exc:
                out[cs.name] = set_result(failed_outcome("invalid_api_key", exc.message))
                continue
            target = dataclasses.replace(
                prepared.target, credentials={**(item.credentials_public or {}), **secrets})
            async with gates[0], gates[1], gates[2]:
                outcome = await test_target(target, client=client)
            out[cs.name] = set_result(outcome.to_dict())
        return out

    async def record_one(self, tested: Tested, run_date: str, stats: RunStats,
                         sink: RecordSink | None = None) -> None:
        """Record a result; the same write completes the claim."""
        item, result = tested.item, tested.result
        try:
            await asyncio.to_thread(self._testing.record, item, result, trigger="daily",
                                    caller=SYSTEM, also=[self._claims.completed()], sink=sink)
            if tested.other_sets and self._sets is not None:
                await asyncio.to_thread(self._sets.record_results, item, tested.other_sets)
        except BaseException:
            stats.errors += 1
            await asyncio.to_thread(self._claims.release, item.id, run_date)
            raise
        stats.tested += 1
        stats.by_status[result["status"]] += 1
        if result["status"] == "error":
            stats.failed += 1
            stats.by_code[(result.get("error") or {}).get("code") or "unknown"] += 1
        elif result.get("incident_id"):
            stats.by_code["provider_incident"] += 1

    async def test_one(self, cid: str, run_date: str, stats: RunStats, client: Any,
                       limits: dict[str, asyncio.Semaphore], overall: asyncio.Semaphore,
                       providers: Mapping[str, ProviderModel] | None = None) -> None:
        """Claim, test, record, complete one connection on its own (no incident counting,
        history and audit written at once)."""
        tested = await self.claim_and_test(cid, run_date, stats, client, limits, overall,
                                           providers)
        if tested is not None:
            await self.record_one(tested, run_date, stats)

    async def one_message(self, mid: str, doc: dict[str, Any], stats: RunStats, client: Any,
                          limits: dict[str, asyncio.Semaphore], overall: asyncio.Semaphore,
                          providers: Mapping[str, ProviderModel]) -> bool:
        """Test, decide incidents, record and flush one message; False if it must come back."""
        run_date = str(doc["run_date"])
        ids = [str(i) for i in doc["connection_ids"]]
        retest = doc.get("retest")
        outcomes = await asyncio.gather(
            *(self.claim_and_test(cid, run_date, stats, client, limits, overall, providers)
              for cid in ids), return_exceptions=True)
        errors = [o for o in outcomes if isinstance(o, BaseException)]
        tested = [o for o in outcomes if isinstance(o, Tested)]
        decisions: dict[str, Decision] = {}
        if not doc.get("small") and self._incidents is not None:
            decisions = await asyncio.to_thread(self._decide, run_date, tested, bool(retest))
        for t in tested:
            decision = decisions.get(provider_key(t.item.provider, t.item.base_url))
            if decision is not None and decision.incident_id and provider_side_code(t.result):
                t.result = as_incident_result(t.result, decision.incident_id)
        # Digest lines from the alert state before recording (recording moves it on).
        lines = {} if retest else self._digest_entries(run_date, tested)
        sink = RecordSink()
        recorded = await asyncio.gather(
            *(self.record_one(t, run_date, stats, sink) for t in tested), return_exceptions=True)
        errors += [r for r in recorded if isinstance(r, BaseException)]
        entries = [lines[t.item.id] for t, r in zip(tested, recorded, strict=True)
                   if not isinstance(r, BaseException) and t.item.id in lines]
        if not retest:
            done = [t for t, r in zip(tested, recorded, strict=True)
                    if not isinstance(r, BaseException)]
            try:
                await asyncio.to_thread(self._rotation_alerts, done)
            except Exception:  # noqa: BLE001 - a reminder must not fail the run
                logger.exception("rotation alerts not sent")
        try:
            await asyncio.to_thread(self._flush, sink, entries)
        except Exception as exc:  # noqa: BLE001 - the message comes back; logged below
            errors.append(exc)
        await asyncio.to_thread(self._after_decisions, run_date, decisions, tested, doc)
        if errors:
            logger.error("daily message partly failed", extra={
                "message_id": mid, "failures": len(errors),
                "error": type(errors[0]).__name__})
            return False
        if not retest and self._runs is not None:
            await asyncio.to_thread(self._finish_message, run_date)
        return True

    def _decide(self, run_date: str, tested: list[Tested], retest: bool) -> dict[str, Decision]:
        """One counter update per provider key of the message (usually one: messages are
        grouped by provider key); never fails the message (no incident is the fallback)."""
        assert self._incidents is not None
        groups: dict[str, list[Tested]] = {}
        for t in tested:
            groups.setdefault(provider_key(t.item.provider, t.item.base_url), []).append(t)
        out: dict[str, Decision] = {}
        for key, group in groups.items():
            failures = {t.item.id: code for t in group
                        if (code := provider_side_code(t.result)) is not None}
            try:
                out[key] = self._incidents.observe(
                    run_date, provider=group[0].item.provider, base_url=group[0].item.base_url,
                    tested=len(group), failures=failures, retest=retest)
            except Exception:  # noqa: BLE001 - owners are alerted as without incidents
                logger.exception("incident decision failed", extra={"provider_key": key})
        return out

    def _after_decisions(self, run_date: str, decisions: dict[str, Decision],
                         tested: list[Tested], doc: dict[str, Any]) -> None:
        """Reclassify the run's earlier failures of a new incident, and schedule a retest of
        this message's connections that the incident holds."""
        if self._incidents is None:
            return
        for decision in decisions.values():
            if decision.incident_id is None:
                continue
            try:
                marked = {t.item.id: str((t.result.get("provider_error") or {}).get("code"))
                          for t in tested if t.result.get("incident_id") ==
                          decision.incident_id}
                if decision.opened:
                    reclassified = sum(
                        self._claims.reclassify(cid, run_date,
                                                reclassify_actions(decision.incident_id))
                        for cid in sorted(decision.reclassify))
                    self._incidents.add_affected(decision.incident_id, reclassified, set())
                elif not doc.get("retest"):
                    self._incidents.add_affected(decision.incident_id, len(marked),
                                                 set(marked.values()))
                ids = sorted(marked)
                self._schedule_retest(run_date, decision.incident_id, ids,
                                      int(doc.get("attempt") or 0) + 1)
            except Exception:  # noqa: BLE001 - the next run decides instead
                logger.exception("incident follow-up failed",
                                 extra={"incident_id": decision.incident_id})

    def _schedule_retest(self, run_date: str, incident_id: str, ids: list[str],
                         attempt: int) -> None:
        """Test ``ids`` again after ``incident_retest_seconds`` (SQS DelaySeconds): the retest
        is a run of its own (``<day>~<incident>~<attempt>``), so the claims let it through
        and its counters decide whether the incident is over."""
        if not ids or self._incidents is None or attempt > self._settings.incident_max_retests:
            return
        day = run_date.split("~", 1)[0]
        body = {"run_date": f"{day}~{incident_id}~{attempt}", "connection_ids": ids,
                "retest": incident_id, "attempt": attempt}
        self._sqs().send_message(QueueUrl=self._settings.work_queue_url,
                                 MessageBody=json.dumps(body),
                                 DelaySeconds=self._settings.incident_retest_seconds)
        self._incidents.count_retest(incident_id)

    def _digest_entries(self, run_date: str, done: list[Tested]
                        ) -> dict[str, DigestEntryModel]:
        """The digest lines of a message: connections that failed, recovered or became due
        for rotation (an incident's warnings are the admins' concern, not the owners')."""
        now = utcnow()
        expires = now + timedelta(days=7)
        out: dict[str, DigestEntryModel] = {}
        for t in done:
            item, result = t.item, t.result
            if result.get("incident_id"):
                continue
            kind = decide(item.alert, result["status"], iso(now),
                          self._settings.alert_reminder_days)
            error = result.get("error") or {}
            if kind is None and self._rotation_due_today(item, now):
                kind = "rotation_due"
                error = {"code": "rotation_due",
                         "message": f"credentials older than {self._settings.rotation_days} "
                                    "days", "remediation": list(ROTATION_REMEDIATION)}
            if kind is None:
                continue
            out[item.id] = DigestEntryModel(
                pk=f"digest#{run_date}", sk=f"{item.owner}#{item.id}", owner=item.owner,
                connection_id=item.id, connection_name=item.name, provider=item.provider,
                kind=kind, status=result["status"], code=error.get("code"),
                message=error.get("message"), remediation=error.get("remediation") or [],
                tested_at=result.get("tested_at") or iso(now), expires_at=expires)
        return out

    def _rotation_due_today(self, item: ConnectionModel, now: Any) -> bool:
        return bool(self._keys_due_today(item, now))

    def _keys_due_today(self, item: ConnectionModel, now: Any) -> list[str]:
        """The keys (credential sets) that pass the rotation age today, or come to another
        reminder period: each key is said on its own days only."""
        due = []
        for cs in sets_of(item):
            if not cs.created_at:
                continue
            over = (now - parse_iso(cs.created_at)).days - self._settings.rotation_days
            if over >= 0 and over % self._settings.alert_reminder_days == 0:
                due.append(cs.name)
        return due

    def _rotation_alerts(self, done: list[Tested]) -> None:
        """Immediate alerts for keys due for rotation today (the digest has its own line).
        Once a day: the run tests a connection once (its claim), and this follows its record."""
        if self._publish is None:
            return
        now = utcnow()
        for t in done:
            keys = self._keys_due_today(t.item, now)
            if not keys or t.result.get("incident_id"):
                continue
            self._publish(rotation_message(
                t.item, self._provider_name(t.item.provider), keys,
                self._settings.rotation_days, ROTATION_REMEDIATION))

    def _flush(self, sink: RecordSink, entries: list[DigestEntryModel]) -> None:
        self._testing.flush(sink)
        if entries and self._runs is not None:
            self._runs.add_entries(entries)

    def _finish_message(self, run_date: str) -> None:
        assert self._runs is not None
        try:
            queued, finished = self._runs.finish_message(run_date, utcnow() + timedelta(days=7))
            if queued and finished >= queued:
                self._queue_digest(run_date)
        except Exception:  # noqa: BLE001 - the digest is late, the tests are recorded
            logger.exception("run progress update failed", extra={"run_date": run_date})

    def _queue_digest(self, run_date: str) -> None:
        self._sqs().send_message(QueueUrl=self._settings.work_queue_url,
                                 MessageBody=json.dumps({"digest": run_date}))

    async def process(self, messages: list[tuple[str, str]]) -> tuple[list[str], RunStats]:
        """Test every connection of ``messages`` ([(message_id, body)]); return the ids of
        messages that must be redelivered, and the run statistics."""
        from concurrent.futures import ThreadPoolExecutor

        from chalicelib.providers.netguard import guarded_client

        # Blocking AWS calls run in threads: as many as tests in flight, not the default 6.
        asyncio.get_running_loop().set_default_executor(
            ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="daily"))
        stats = RunStats()
        overall = asyncio.Semaphore(self.concurrency)
        limits: dict[str, asyncio.Semaphore] = {}
        # The catalogue once per batch, not one read per connection.
        providers = {p.id: p for p in await asyncio.to_thread(self._providers.all_models)}
        failed: list[str] = []
        async with guarded_client(allow_hosts=self._settings.outbound_allow_hosts,
                                  allow_http=self._settings.outbound_allow_http) as client:

            async def one(mid: str, body: str) -> None:
                try:
                    doc = json.loads(body)
                    if isinstance(doc, dict) and "digest" in doc and self._digests is not None:
                        await asyncio.to_thread(self._digests.send, str(doc["digest"]))
                        return
                    if isinstance(doc, dict) and isinstance(doc.get("background_test"), dict):
                        await self._testing.run_background(doc["background_test"], client)
                        return
                    if not isinstance(doc, dict) or not isinstance(doc["connection_ids"], list):
                        raise TypeError("connection_ids")
                    str(doc["run_date"])
                except (ValueError, KeyError, TypeError):
                    logger.error("malformed daily message", extra={"message_id": mid})
                    failed.append(mid)
                    return
                except Exception:  # noqa: BLE001 - the message comes back
                    logger.exception("work message failed (a digest or a background test)",
                                     extra={"message_id": mid})
                    failed.append(mid)
                    return
                if not await self.one_message(mid, doc, stats, client, limits, overall,
                                              providers):
                    failed.append(mid)

            await asyncio.gather(*(one(mid, body) for mid, body in messages))
        return failed, stats

    def handle_batch(self, messages: list[tuple[str, str]]) -> tuple[list[str], RunStats]:
        started = time.monotonic()
        failed, stats = asyncio.run(self.process(messages))
        summary = {**stats.as_dict(), "messages": len(messages), "failed_messages": len(failed),
                   "duration_ms": round((time.monotonic() - started) * 1000)}
        metrics.add_metric(name="ConnectionsTested", unit="Count", value=stats.tested)
        metrics.add_metric(name="ConnectionsFailed", unit="Count", value=stats.failed)
        metrics.add_metric(name="DailyProcessingErrors", unit="Count", value=stats.errors)
        logger.info("daily batch done", extra=summary)
        return failed, stats

