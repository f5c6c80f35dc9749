"""Claims of the daily run: at most one test per connection per day.

The claim lives on the connection item (``daily``), so taking it is one conditional
UpdateItem that also returns the connection, and completing it rides on the update that
records the result.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from pynamodb.exceptions import UpdateError
from pynamodb.expressions.update import Action

from chalicelib.data.models import ConnectionModel, DailyClaimAttribute


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
