"""Provider incidents and the per-run counters that open and close them.

A daily run spans many SQS messages and worker invocations, so what one run has seen of a
provider is an item (``run#<run id>``, provider key) updated with atomic ``ADD``s; the open
incident of a provider key is a pointer item taken with a conditional put, so two workers
crossing the threshold together open one incident.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from pynamodb.exceptions import TransactWriteError, UpdateError
from pynamodb.expressions.condition import Condition, size
from pynamodb.expressions.update import Action

from chalicelib.data.connections_repo import _reasons, _txn
from chalicelib.data.models import AuditModel, IncidentModel, OpenIncidentModel, ProviderRunModel
from chalicelib.data.paging import Page, query_page

# About 7 KB of ids: the item is updated once per message of its provider, and every update
# pays for the whole item (1 WRU per KB), on one partition key.
FAILED_IDS_CAP = 250


@dataclass(frozen=True)
class RunTally:
    """A provider key's counters in one run, after this message's update."""

    tested: int
    failed: int
    failed_ids: frozenset[str]
    incident_id: str | None


class IncidentRepository:
    def tally(self, run_id: str, key: str, *, tested: int, failed_ids: Iterable[str],
              expires_at: datetime) -> RunTally:
        """Add one message's results to the run's counters; return the run's totals so far.

        The first message of a provider key in a run also reads the key's open incident
        (one GetItem), and stores its id on the counters so later messages need no read."""
        ids = set(failed_ids)
        M = ProviderRunModel
        item = M(pk=f"run#{run_id}", sk=key)
        actions: list[Action] = [M.tested.add(tested), M.failed.add(len(ids)),
                                 M.expires_at.set(expires_at)]
        if ids:
            # The ids are kept only while no incident is open, and at most FAILED_IDS_CAP of
            # them: an item is capped at 400 KB, and every write pays for its whole size.
            try:
                item.update(actions=[*actions, M.failed_ids.add(ids)],
                            condition=M.incident_id.does_not_exist() & (
                                M.failed_ids.does_not_exist()
                                | (size(M.failed_ids) < FAILED_IDS_CAP)))
            except UpdateError as exc:
                if getattr(exc, "cause_response_code", None) != \
                        "ConditionalCheckFailedException":
                    raise
                item.update(actions=actions)
        else:
            item.update(actions=actions)
        if item.incident_id is None and not item.pointer_read:
            try:
                pointer: OpenIncidentModel | None = OpenIncidentModel.get("open", key)
            except OpenIncidentModel.DoesNotExist:
                pointer = None
            more: list[Action] = [M.pointer_read.set(True)]
            if pointer is not None:
                more.append(M.incident_id.set(pointer.incident_id))
            item.update(actions=more)
        return RunTally(int(item.tested), int(item.failed), frozenset(item.failed_ids or ()),
                        item.incident_id)

    def open(self, incident: IncidentModel, run_id: str, audit: AuditModel) -> str:
        """Open ``incident`` unless the key already has one; return the open incident's id."""
        pointer = OpenIncidentModel(pk="open", sk=incident.provider_key,
                                    incident_id=incident.sk, started_at=incident.started_at)
        counters = ProviderRunModel(pk=f"run#{run_id}", sk=incident.provider_key)
        try:
            with _txn() as txn:
                txn.save(pointer, condition=OpenIncidentModel.sk.does_not_exist())
                txn.save(incident, condition=IncidentModel.sk.does_not_exist())
                txn.update(counters, actions=[ProviderRunModel.incident_id.set(incident.sk)])
                txn.save(audit, condition=AuditModel.sk.does_not_exist())
        except TransactWriteError as exc:
            if "ConditionalCheckFailed" not in _reasons(exc):
                raise
            # Another worker opened one first: use it.
            existing = OpenIncidentModel.get("open", incident.provider_key, consistent_read=True)
            counters.update(actions=[ProviderRunModel.incident_id.set(existing.incident_id)])
            return existing.incident_id
        return incident.sk

    def add_affected(self, incident_id: str, count: int, codes: set[str]) -> None:
        actions: list[Action] = [IncidentModel.affected.add(count)]
        if codes:
            actions.append(IncidentModel.codes.add(codes))
        IncidentModel(pk="incident", sk=incident_id).update(actions=actions)

    def count_retest(self, incident_id: str) -> int:
        item = IncidentModel(pk="incident", sk=incident_id)
        item.update(actions=[IncidentModel.retests.add(1)])
        return int(item.retests)

    def close(self, incident_id: str, key: str, run_id: str, ended_at: str,
              audit: AuditModel) -> IncidentModel | None:
        """Close the incident (once: the pointer's condition); return it, or None when another
        worker closed it first."""
        incident = IncidentModel(pk="incident", sk=incident_id)
        try:
            with _txn() as txn:
                txn.delete(OpenIncidentModel(pk="open", sk=key),
                           condition=OpenIncidentModel.incident_id == incident_id)
                txn.update(incident, actions=[IncidentModel.state.set("closed"),
                                              IncidentModel.ended_at.set(ended_at)],
                           condition=IncidentModel.state == "open")
                txn.update(ProviderRunModel(pk=f"run#{run_id}", sk=key),
                           actions=[ProviderRunModel.incident_id.remove()])
                txn.save(audit, condition=AuditModel.sk.does_not_exist())
        except TransactWriteError as exc:
            if "ConditionalCheckFailed" in _reasons(exc):
                return None
            raise
        return IncidentModel.get("incident", incident_id, consistent_read=True)

    def get(self, incident_id: str) -> IncidentModel | None:
        try:
            return IncidentModel.get("incident", incident_id, consistent_read=True)
        except IncidentModel.DoesNotExist:
            return None

    def page(self, *, cursor: str | None, limit: int, catalogue_only: bool
             ) -> Page[IncidentModel]:
        """Newest first. ``catalogue_only``: leave out custom base URLs (a user's endpoint is
        not for other users to see)."""
        scope = "incidents" + (":catalogue" if catalogue_only else "")
        only: Condition | None = IncidentModel.base_url.does_not_exist() \
            if catalogue_only else None
        return query_page(lambda start: IncidentModel.query(
            "incident", scan_index_forward=False, limit=limit, page_size=limit,
            filter_condition=only, last_evaluated_key=start), scope, cursor=cursor)
