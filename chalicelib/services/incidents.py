"""Provider incidents: when, within one run, a provider's connections fail together with
provider-side codes, the failure is the provider's, not each owner's.

The decision point: each message's results are added to the run's counters for the provider
key (``IncidentRepository.tally``, atomic ADDs, so every worker sees the run's totals); once at
least ``incident_min_connections`` are tested and ``incident_failure_pct`` of them failed with
provider-side codes, the worker that sees it opens the incident (a conditional put: one per
key). That message's provider-side failures, and every later one while it is open, are
recorded as ``warning`` with the warning code ``provider_incident`` and no owner alert; the
failures recorded by earlier messages of the run are reclassified. The dispatcher groups a
run's messages by provider key, so a provider with enough connections reaches the threshold
in its first message, before any owner alert. The incident closes, with one recovery alert to
the admins, when a later run or a delayed retest finds the share under the threshold.
"""

from __future__ import annotations

import hashlib
import secrets as pysecrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from chalicelib.data.incidents_repo import IncidentRepository
from chalicelib.data.models import ConnectionModel, IncidentModel
from chalicelib.data.paging import BadCursor
from chalicelib.errors import InvalidInput
from chalicelib.observability import logger, metrics
from chalicelib.providers.base import TestWarning
from chalicelib.services.alerts import _subject
from chalicelib.services.audit import AuditService
from chalicelib.services.common import SYSTEM, Caller, iso, utcnow
from chalicelib.settings import Settings

# Failures a provider causes (outage, overload, garbage); the others are the user's to fix.
PROVIDER_SIDE = frozenset({"provider_unavailable", "timeout", "network_error", "bad_response"})
USER_SIDE = frozenset({"invalid_api_key", "permission_denied", "quota_exhausted",
                       "model_not_available"})


def provider_key(provider: str, base_url: str | None) -> str:
    """What an incident is counted under: the provider, and the base URL when the connection
    has its own (custom providers), hashed to keep the key short."""
    if not base_url:
        return provider
    digest = hashlib.sha256(base_url.rstrip("/").encode()).hexdigest()[:20]
    return f"{provider}|{digest}"


def provider_side_code(result: dict[str, Any]) -> str | None:
    if result.get("status") != "error":
        return None
    code = (result.get("error") or {}).get("code")
    return code if code in PROVIDER_SIDE else None


def incident_warning(incident_id: str, code: str, message: str) -> dict[str, Any]:
    out = TestWarning("provider_incident",
                      f"provider incident {incident_id} ({code}): {message}").to_dict()
    out["incident_id"] = incident_id
    return out


def as_incident_result(result: dict[str, Any], incident_id: str) -> dict[str, Any]:
    """A provider-side failure during an incident: yellow, the incident's warning, the
    provider's error kept for the record."""
    error = result.get("error") or {}
    return {**result, "status": "warning", "error": None,
            "warnings": [*(result.get("warnings") or []),
                         incident_warning(incident_id, str(error.get("code")),
                                          str(error.get("message") or ""))],
            "incident_id": incident_id, "provider_error": error}


@dataclass(frozen=True)
class Decision:
    incident_id: str | None  # the open incident that this message's failures belong to
    opened: bool = False
    closed: IncidentModel | None = None
    reclassify: frozenset[str] = frozenset()  # earlier failures of the run to turn yellow


class IncidentService:
    def __init__(self, repo: IncidentRepository, audit: AuditService, settings: Settings,
                 publish: Callable[[dict[str, Any]], bool],
                 provider_name: Callable[[str], str]) -> None:
        self._repo = repo
        self._audit = audit
        self._settings = settings
        self._publish = publish
        self._provider_name = provider_name

    def observe(self, run_id: str, *, provider: str, base_url: str | None, tested: int,
                failures: dict[str, str], retest: bool = False) -> Decision:
        """Count one message's results for a provider key (``failures``: connection id ->
        provider-side code) and decide: open, keep, or close an incident."""
        key = provider_key(provider, base_url)
        s = self._settings
        tally = self._repo.tally(run_id, key, tested=tested, failed_ids=failures,
                                 expires_at=utcnow() + timedelta(days=7))
        over = tally.failed * 100 >= s.incident_failure_pct * tally.tested
        if tally.incident_id is not None:
            enough = tally.tested >= s.incident_min_connections or retest
            if not over and enough:
                closed = self._close(tally.incident_id, key, run_id)
                return Decision(None, closed=closed)
            return Decision(tally.incident_id)
        if tally.tested >= s.incident_min_connections and over and tally.failed > 0:
            incident_id, opened = self._open(run_id, key, provider, base_url, failures,
                                             tally.failed)
            return Decision(incident_id, opened=opened,
                            reclassify=tally.failed_ids - set(failures) if opened
                            else frozenset())
        return Decision(None)

    def add_affected(self, incident_id: str, count: int, codes: set[str]) -> None:
        """Count connections marked with the incident (each once: a message's own failures,
        or the run's earlier ones reclassified; retests mark again and are not counted)."""
        if count:
            self._repo.add_affected(incident_id, count, codes)

    def _open(self, run_id: str, key: str, provider: str, base_url: str | None,
              failures: dict[str, str], seen: int) -> tuple[str, bool]:
        """Open an incident; ``affected`` starts with this message's failures (the run's
        earlier ones are added as they are reclassified); ``seen``: the run's so far."""
        failed = len(failures)
        now = utcnow()
        incident = IncidentModel(
            pk="incident", sk=f"inc_{now.strftime('%Y%m%d%H%M%S')}_{pysecrets.token_hex(4)}",
            provider=provider, base_url=base_url, provider_key=key, state="open",
            started_at=iso(now), run_date=run_id.split("~", 1)[0], affected=failed,
            codes=set(failures.values()) or None, retests=0)
        audit = self._audit.event(SYSTEM, "incident.open", f"incident:{incident.sk}",
                                  detail={"provider": provider, "failing_in_run": seen,
                                          "codes": sorted(set(failures.values())),
                                          "run": run_id})
        incident_id = self._repo.open(incident, run_id, audit)
        if incident_id != incident.sk:
            return incident_id, False
        metrics.add_metric(name="ProviderIncidentsOpened", unit="Count", value=1)
        logger.warning("provider incident opened", extra={
            "incident_id": incident_id, "provider": provider, "failing_in_run": seen})
        self._publish(self.alert("opened", incident))
        return incident_id, True

    def _close(self, incident_id: str, key: str, run_id: str) -> IncidentModel | None:
        audit = self._audit.event(SYSTEM, "incident.close", f"incident:{incident_id}",
                                  detail={"run": run_id})
        closed = self._repo.close(incident_id, key, run_id, iso(utcnow()), audit)
        if closed is not None:
            logger.info("provider incident closed", extra={"incident_id": incident_id})
            self._publish(self.alert("closed", closed))
        return closed

    def count_retest(self, incident_id: str) -> int:
        return self._repo.count_retest(incident_id)

    def alert(self, kind: str, incident: IncidentModel) -> dict[str, Any]:
        """The admins' message. No ``owner`` attribute: owners' filter policies
        ({"owner": [...]}) never match it; a scope-all (admin) subscription gets it."""
        name = self._provider_name(incident.provider)
        where = f" at {incident.base_url}" if incident.base_url else ""
        codes = ", ".join(sorted(incident.codes or ())) or "unknown"
        if kind == "opened":
            title = f"Provider incident: {name}{where} is failing ({codes})"
        else:
            title = f"Provider incident over: {name}{where} works again"
        view = to_view(incident)
        lines = [title, "", f"Incident:    {incident.sk}", f"Provider:    {name}{where}",
                 f"Started:     {incident.started_at}",
                 f"Affected:    {int(incident.affected or 0)} connections",
                 f"Codes:       {codes}"]
        if incident.ended_at:
            lines.append(f"Ended:       {incident.ended_at}")
        if kind == "opened":
            lines += ["", "Owners are not alerted for it: their connections show the status "
                      "'warning' (provider_incident) until the provider recovers."]
        return {"subject": _subject(title), "text": "\n".join(lines),
                "json": {"type": f"incident.{kind}", **view},
                "attributes": {"kind": f"incident.{kind}", "audience": "admins",
                               "provider": incident.provider,
                               "status": "incident" if kind == "opened" else "recovered",
                               "error_code": "provider_incident",
                               "incident_id": incident.sk}}

    def list(self, caller: Caller, *, cursor: str | None, limit: int) -> dict[str, Any]:
        """Newest first. Admins see every incident; users those of catalogue providers (a
        custom base URL is another user's endpoint)."""
        try:
            page = self._repo.page(cursor=cursor, limit=limit,
                                   catalogue_only=not caller.is_admin)
        except BadCursor as exc:
            raise InvalidInput(str(exc), field="cursor") from None
        return {"items": [to_view(i) for i in page.items], "next_cursor": page.next_cursor}


def reclassify_action_values(incident_id: str) -> dict[str, Any]:
    """The status hint a connection gets when an incident opened after its failure was
    recorded (the warning a later test would give it)."""
    return incident_warning(incident_id, "provider", "failure recorded before the incident "
                            "was recognised")


def to_view(i: IncidentModel) -> dict[str, Any]:
    return {"id": i.sk, "provider": i.provider, "base_url": i.base_url,
            "state": i.state, "started_at": i.started_at, "ended_at": i.ended_at,
            "affected": int(i.affected or 0), "codes": sorted(i.codes or ()),
            "run_date": i.run_date, "retests": int(i.retests or 0)}


def reclassify_actions(incident_id: str) -> list[Any]:
    M = ConnectionModel
    hint = reclassify_action_values(incident_id)
    return [M.status.set("warning"), M.status_hint.set(hint),
            M.status_message.set(hint["message"])]
