"""Claims of the daily run: at most one test per connection per day."""

from __future__ import annotations

from datetime import datetime, timedelta

from pynamodb.exceptions import DeleteError, PutError, UpdateError

from chalicelib.data.models import DailyClaimModel


def _conditional_failed(exc: Exception) -> bool:
    return getattr(exc, "cause_response_code", None) == "ConditionalCheckFailedException"


def _iso(dt: datetime) -> str:
    return dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class DailyClaimRepository:
    def claim(self, connection_id: str, run_date: str, now: datetime, lease: timedelta) -> bool:
        """Take the (connection, date) claim: free, or left in progress past its lease."""
        item = DailyClaimModel(
            connection_id=connection_id, sk=f"daily#{run_date}", state="in_progress",
            lease_until=_iso(now + lease), expires_at=now + timedelta(days=3),
        )
        cond = DailyClaimModel.sk.does_not_exist() | (
            (DailyClaimModel.state == "in_progress") & (DailyClaimModel.lease_until < _iso(now))
        )
        try:
            item.save(condition=cond)
            return True
        except PutError as exc:
            if _conditional_failed(exc):
                return False
            raise

    def complete(self, connection_id: str, run_date: str) -> None:
        item = DailyClaimModel(connection_id=connection_id, sk=f"daily#{run_date}")
        try:
            item.update(actions=[DailyClaimModel.state.set("completed")],
                        condition=DailyClaimModel.sk.exists())
        except UpdateError as exc:
            if not _conditional_failed(exc):
                raise

    def release(self, connection_id: str, run_date: str) -> None:
        """Give a claim back after a failure so a redelivery can test the connection."""
        try:
            DailyClaimModel(connection_id=connection_id, sk=f"daily#{run_date}").delete(
                condition=DailyClaimModel.state == "in_progress")
        except DeleteError as exc:
            if not _conditional_failed(exc):
                raise
