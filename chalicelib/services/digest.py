"""The owner's digest: one message per owner per run listing every connection that failed,
recovered or became due for rotation, for subscriptions with ``delivery: digest``.

The worker writes a digest line per such connection with the message's batch; once the run's
finished messages reach the queued ones, one ``{"digest": run date}`` message is queued and
the worker that takes it sends the digests (once: a conditional update of the run's progress).
Nothing is sent to an owner without lines, nor to an owner without a digest subscription.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from itertools import groupby
from typing import Any

from chalicelib.data.daily_repo import RunRepository
from chalicelib.data.models import DigestEntryModel
from chalicelib.observability import logger, redact
from chalicelib.services.alerts import _subject
from chalicelib.services.common import iso, utcnow

ROTATION_REMEDIATION = (
    "Create a new key with the provider and add it to the connection as a new key (\"next\").",
    "Test the new key, make it primary, then remove the old key and revoke it at the provider.",
)

_HEADINGS = {"failure": "Failing", "reminder": "Still failing", "recovery": "Working again",
             "rotation_due": "Due for key rotation"}
ORDER = ("failure", "reminder", "recovery", "rotation_due")


def build_digest(owner: str, run_date: str, entries: list[DigestEntryModel]) -> dict[str, Any]:
    """Subject, text, JSON form and filterable attributes of one owner's digest."""
    counts = {k: sum(1 for e in entries if e.kind == k) for k in ORDER}
    failing = counts["failure"] + counts["reminder"]
    parts = [f"{failing} failing" if failing else "",
             f"{counts['recovery']} recovered" if counts["recovery"] else "",
             f"{counts['rotation_due']} due for rotation" if counts["rotation_due"] else ""]
    title = f"Daily connection digest {run_date}: " + ", ".join(p for p in parts if p)
    lines = [title, ""]
    for kind in ORDER:
        of_kind = [e for e in entries if e.kind == kind]
        if not of_kind:
            continue
        lines += [f"{_HEADINGS[kind]} ({len(of_kind)}):", ""]
        for e in of_kind:
            code = f" [{e.code}]" if e.code else ""
            lines.append(f"- {e.connection_name} ({e.connection_id}), {e.provider}: "
                         f"{e.status}{code}")
            if e.message and kind != "recovery":
                lines.append(f"    {e.message}")
            if kind != "recovery":
                lines += [f"    {i}. {step}" for i, step in enumerate(e.remediation or [], 1)]
        lines.append("")
    doc = {"type": "connection.digest", "owner": owner, "run_date": run_date,
           "connections": [{"connection_id": e.connection_id,
                            "connection_name": e.connection_name, "provider": e.provider,
                            "kind": e.kind, "status": e.status, "code": e.code,
                            "message": e.message, "remediation": e.remediation or [],
                            "tested_at": e.tested_at} for e in entries]}
    worst = "error" if failing else "active"
    codes = sorted({e.code for e in entries if e.code})
    return {"subject": _subject(title), "text": redact("\n".join(lines)),
            "json": json.loads(redact(json.dumps(doc))),
            "attributes": {"owner": owner, "kind": "digest", "status": worst,
                           "error_code": codes[0] if len(codes) == 1 else
                           ("multiple" if codes else "none"),
                           "connections": str(len(entries))}}


class DigestService:
    def __init__(self, runs: RunRepository, wants_digest: Callable[[str], bool],
                 publish: Callable[[dict[str, Any]], bool]) -> None:
        self._runs = runs
        self._wants_digest = wants_digest
        self._publish = publish

    def send(self, run_date: str) -> int:
        """Send the run's digests once; return how many went out."""
        if not self._runs.claim_digest(run_date, iso(utcnow())):
            return 0
        sent = 0
        for owner, group in groupby(self._runs.entries(run_date), key=lambda e: e.owner):
            entries = sorted(group, key=lambda e: (ORDER.index(e.kind), e.connection_name))
            if not self._wants_digest(owner):
                continue
            if self._publish(build_digest(owner, run_date, entries)):
                sent += 1
        logger.info("daily digests sent", extra={"run_date": run_date, "digests": sent})
        return sent
