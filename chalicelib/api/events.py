"""Non-HTTP entry points: the daily schedule and the SQS worker. Thin: parse, call, report."""

from __future__ import annotations

from typing import Any

from chalicelib.metrics_names import DAILY_RUN_FAILED
from chalicelib.observability import flush_metrics, logger, metrics


def run_daily() -> dict[str, Any]:
    from chalicelib.api.deps import services

    try:
        return services().daily.dispatch()
    except Exception:
        # The alarm on this metric tells operators; EventBridge retries the invocation.
        metrics.add_metric(name=DAILY_RUN_FAILED, unit="Count", value=1)
        logger.exception("daily dispatch failed")
        raise
    finally:
        flush_metrics()


def test_batch(records: list[tuple[str, str]]) -> dict[str, Any]:
    """Process SQS records [(message_id, body)]; report partial failures the way Lambda's
    ``ReportBatchItemFailures`` expects, so only the failed messages come back."""
    from chalicelib.api.deps import services

    try:
        failed, _stats = services().daily.handle_batch(records)
    except Exception:  # noqa: BLE001 - the batch boundary: report every message failed
        metrics.add_metric(name=DAILY_RUN_FAILED, unit="Count", value=1)
        logger.exception("daily batch failed as a whole")
        failed = [mid for mid, _ in records]
    finally:
        flush_metrics()
    return {"batchItemFailures": [{"itemIdentifier": mid} for mid in failed]}
