"""The daily run: a dispatcher that streams due connections into the work queue, and a
worker that tests a batch with bounded async concurrency, a cap per provider, and the
(connection, date) claim that makes each connection tested at most once a day."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from chalicelib.data.connections_repo import ConnectionRepository
from chalicelib.data.daily_repo import DailyClaimRepository
from chalicelib.data.models import ProviderModel
from chalicelib.errors import SealBroken
from chalicelib.observability import logger, metrics
from chalicelib.services.common import SYSTEM, iso, utcnow
from chalicelib.services.providers import ProviderService
from chalicelib.services.testing import TestingService, failed_outcome
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
    ) -> None:
        self._repo = repo
        self._providers = providers
        self._testing = testing
        self._claims = claims
        self._sqs = sqs_factory
        self._settings = settings
        self.concurrency = concurrency
        self.per_provider = per_provider

    # dispatcher --------------------------------------------------------------------------

    def due_ids(self, now: Any = None) -> Iterator[str]:
        """Stream the ids of due connections of enabled providers (index queries, no scan)."""
        now = now or utcnow()
        enabled = {p.id for p in self._providers.all_models() if p.enabled}
        cutoff = iso(now - DUE_AFTER)
        for shard in range(self._settings.daily_shards):
            for row in self._repo.due(f"s{shard}", cutoff):
                if row.provider in enabled:
                    yield row.id

    def dispatch(self, now: Any = None) -> dict[str, Any]:
        """Send every due connection to the work queue, 25 ids a message, 10 messages a call."""
        started = time.monotonic()
        now = now or utcnow()
        run_date = run_date_of(now)
        sent_ids = 0
        messages = 0
        entries: list[dict[str, str]] = []
        chunk: list[str] = []

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

        def add_chunk() -> None:
            nonlocal chunk
            if chunk:
                body = json.dumps({"run_date": run_date, "connection_ids": chunk})
                entries.append({"Id": str(len(entries)), "MessageBody": body})
                chunk = []
                if len(entries) == SQS_BATCH:
                    flush_entries()

        for cid in self.due_ids(now):
            chunk.append(cid)
            sent_ids += 1
            if len(chunk) == IDS_PER_MESSAGE:
                add_chunk()
        add_chunk()
        flush_entries()
        summary = {"run_date": run_date, "connections_queued": sent_ids, "messages": messages,
                   "duration_ms": round((time.monotonic() - started) * 1000)}
        metrics.add_metric(name="ConnectionsQueued", unit="Count", value=sent_ids)
        logger.info("daily run dispatched", extra=summary)
        return summary

    # worker ------------------------------------------------------------------------------

    async def test_one(self, cid: str, run_date: str, stats: RunStats, client: Any,
                       limits: dict[str, asyncio.Semaphore], overall: asyncio.Semaphore,
                       providers: Mapping[str, ProviderModel] | None = None) -> None:
        """Claim, test, record, complete. Raises only on processing failures (not on a
        failing connection), so the message is redelivered and the claim is retried."""
        lease = timedelta(seconds=self._settings.daily_lease_seconds)
        # Claiming returns the connection: no separate read.
        item = await asyncio.to_thread(self._claims.claim, cid, run_date, utcnow(), lease)
        if item is None:
            stats.skipped += 1
            return
        try:
            if item.sealed is None or item.needs_credentials:
                stats.skipped += 1
                await asyncio.to_thread(self._claims.complete, item)
                return
            try:
                prepared = await asyncio.to_thread(self._testing.prepare, item, providers)
            except SealBroken as exc:
                # The user's fix is the same as for a bad key: enter the secret again.
                result = failed_outcome("invalid_api_key", exc.message)
                prepared = None
            if prepared is not None and prepared.target is None:
                result = self._testing.disabled_outcome(item.provider)
            elif prepared is not None:
                from chalicelib.providers.runner import test_target

                sem = limits.setdefault(item.provider, asyncio.Semaphore(self.per_provider))
                probe = bool((item.settings or {}).get("probe_model_daily"))
                # Provider cap first: a task queued behind a busy provider must not sit on one
                # of the batch's slots while other providers' connections wait for it.
                async with sem, overall:
                    outcome = await test_target(prepared.target, probe_model=probe,
                                                client=None if prepared.target.adapter ==
                                                "bedrock" else client)
                result = outcome.to_dict()
            # Recording the result also completes the claim: one write.
            await asyncio.to_thread(self._testing.record, item, result, trigger="daily",
                                    caller=SYSTEM, also=[self._claims.completed()])
        except BaseException:
            stats.errors += 1
            await asyncio.to_thread(self._claims.release, cid, run_date)
            raise
        stats.tested += 1
        stats.by_status[result["status"]] += 1
        if result["status"] == "error":
            stats.failed += 1
            stats.by_code[(result.get("error") or {}).get("code") or "unknown"] += 1

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

            async def one_message(mid: str, body: str) -> None:
                try:
                    doc = json.loads(body)
                    run_date = str(doc["run_date"])
                    ids = [str(i) for i in doc["connection_ids"]]
                except (ValueError, KeyError, TypeError):
                    logger.error("malformed daily message", extra={"message_id": mid})
                    failed.append(mid)
                    return
                results = await asyncio.gather(
                    *(self.test_one(cid, run_date, stats, client, limits, overall, providers)
                      for cid in ids), return_exceptions=True)
                errors = [r for r in results if isinstance(r, BaseException)]
                if errors:
                    logger.error("daily message partly failed", extra={
                        "message_id": mid, "failures": len(errors),
                        "error": type(errors[0]).__name__})
                    failed.append(mid)

            await asyncio.gather(*(one_message(mid, body) for mid, body in messages))
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

