"""Claims of the daily run: at most one test per connection per day.

The claim lives on the connection item (``daily``), so taking it is one conditional
UpdateItem that also returns the connection, and completing it rides on the update that
records the result.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta

from pynamodb.exceptions import UpdateError
from pynamodb.expressions.update import Action

from chalicelib.data.batch import put_all
from chalicelib.data.models import (
    ConnectionModel,
    DailyClaimAttribute,
    DigestEntryModel,
    RunProgressModel,
)


def _conditional_failed(exc: Exception) -> bool:
    return getattr(exc, "cause_response_code", None) == "ConditionalCheckFailedException"


def _iso(dt: datetime) -> str:
    return dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class DailyClaimRepository:
    def claim(self, connection_id: str, run_date: str, now: datetime,
              lease: timedelta) -> ConnectionModel | None:
        """Take the (connection, date) claim if it is free, from another day, or left in
        progress past its lease; return the claimed connection, or None."""
        M = ConnectionModel
        item = M(id=connection_id)
        cond = M.id.exists() & (
            M.daily.does_not_exist()
            | (M.daily.run_date != run_date)
            | ((M.daily.state == "in_progress") & (M.daily.lease_until < _iso(now)))
        )
        try:
            item.update(
                actions=[M.daily.set(DailyClaimAttribute(
                    run_date=run_date, state="in_progress", lease_until=_iso(now + lease)))],
                condition=cond,
            )
        except UpdateError as exc:
            if _conditional_failed(exc):
                return None
            raise
        return item

    @staticmethod
    def completed() -> Action:
        """The action that marks today's claim done, for the update that records a result."""
        return ConnectionModel.daily.state.set("completed")  # type: ignore[attr-defined]  # a map path

    def complete(self, item: ConnectionModel) -> None:
        try:
            item.update(actions=[self.completed()], condition=ConnectionModel.daily.exists())
        except UpdateError as exc:
            if not _conditional_failed(exc):
                raise

    def release(self, connection_id: str, run_date: str) -> None:
        """Give a claim back after a failure so a redelivery can test the connection."""
        M = ConnectionModel
        try:
            M(id=connection_id).update(
                actions=[M.daily.remove()],
                condition=(M.daily.state == "in_progress") & (M.daily.run_date == run_date),  # type: ignore[arg-type]
            )
        except UpdateError as exc:
            if not _conditional_failed(exc):
                raise

    def reclassify(self, connection_id: str, run_date: str, actions: list[Action]) -> bool:
        """Apply ``actions`` to a connection whose result of ``run_date`` is still red (a
        failure recorded before its provider's incident was recognised)."""
        M = ConnectionModel
        try:
            M(id=connection_id).update(
                actions=actions,
                condition=(M.daily.run_date == run_date) & (M.status == "error"),
            )
        except UpdateError as exc:
            if _conditional_failed(exc):
                return False
            raise
        return True


class RunRepository:
    """A run's progress (messages queued against messages finished) and its digest lines."""

    def add_messages(self, run_date: str, count: int, expires_at: datetime) -> tuple[int, int]:
        """Count queued messages; return (queued, finished) so far."""
        item = RunProgressModel(pk=f"run#{run_date}")
        item.update(actions=[RunProgressModel.messages.add(count),
                             RunProgressModel.expires_at.set(expires_at)])
        return int(item.messages or 0), int(item.done or 0)

    def finish_message(self, run_date: str, expires_at: datetime) -> tuple[int, int]:
        """Count one finished message; return (queued, finished) so far."""
        item = RunProgressModel(pk=f"run#{run_date}")
        item.update(actions=[RunProgressModel.done.add(1),
                             RunProgressModel.expires_at.set(expires_at)])
        return int(item.messages or 0), int(item.done or 0)

    def claim_digest(self, run_date: str, now: str) -> bool:
        """Take the run's one digest sending (a redelivered or duplicated trigger loses)."""
        try:
            RunProgressModel(pk=f"run#{run_date}").update(
                actions=[RunProgressModel.digest_at.set(now)],
                condition=RunProgressModel.digest_at.does_not_exist())
        except UpdateError as exc:
            if _conditional_failed(exc):
                return False
            raise
        return True

    def add_entries(self, entries: Sequence[DigestEntryModel]) -> None:
        put_all(lambda: DigestEntryModel.batch_write(auto_commit=False),
                DigestEntryModel.from_raw_data, entries)

    def entries(self, run_date: str) -> Iterator[DigestEntryModel]:
        """The run's digest lines, by owner (the sort key starts with the owner)."""
        yield from DigestEntryModel.query(f"digest#{run_date}", page_size=500)
