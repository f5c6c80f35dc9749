"""Test history: one item per test, newest first, expiring by TTL."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from chalicelib.data.batch import put_all
from chalicelib.data.models import TestRecordModel
from chalicelib.data.paging import Page, query_page


class TestHistoryRepository:
    __test__ = False

    def add(self, record: TestRecordModel) -> None:
        record.save()

    # A background test's own item: its partition is ``job#<test id>``, never a
    # connection's, so history pages and stats never see it.
    def put_job(self, test_id: str, record: TestRecordModel) -> None:
        record.connection_id, record.sk = f"job#{test_id}", "job"
        record.save()

    def get_job(self, test_id: str) -> TestRecordModel | None:
        try:
            return TestRecordModel.get(f"job#{test_id}", "job", consistent_read=True)
        except TestRecordModel.DoesNotExist:
            return None

    def add_many(self, records: Sequence[TestRecordModel]) -> None:
        """Write many records with BatchWriteItem (unprocessed items resent until written)."""
        put_all(lambda: TestRecordModel.batch_write(auto_commit=False),
                TestRecordModel.from_raw_data, records)

    def page(self, connection_id: str, *, cursor: str | None, limit: int
             ) -> Page[TestRecordModel]:
        return query_page(lambda start: TestRecordModel.query(
            connection_id, scan_index_forward=False, limit=limit, page_size=limit,
            last_evaluated_key=start), f"tests:{connection_id}", cursor=cursor)

    def since(self, connection_id: str, since_iso: str, cap: int = 5000
              ) -> Iterator[TestRecordModel]:
        yield from TestRecordModel.query(
            connection_id, TestRecordModel.sk >= since_iso, scan_index_forward=False,
            limit=cap, page_size=500,
        )
