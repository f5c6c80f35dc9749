"""Audit events: append-only writes and newest-first queries."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pynamodb.transactions import TransactWrite

from chalicelib.data.batch import put_all
from chalicelib.data.models import AuditModel
from chalicelib.data.paging import Page, query_page


class AuditRepository:
    def put(self, item: AuditModel) -> None:
        """Write one event; the condition makes the write append-only."""
        item.save(condition=AuditModel.sk.does_not_exist())

    def append_many(self, items: Sequence[AuditModel]) -> None:
        """Write many events with BatchWriteItem: puts only, never a delete request.

        A batch put cannot carry a condition, so it is append-only by its keys: each event's
        sort key holds its time and a fresh random id, so a put never lands on an existing
        event. Only the daily worker's role may call BatchWriteItem on this table (every other
        role has an explicit Deny), and tests/infra checks that no code deletes through it."""
        put_all(lambda: AuditModel.batch_write(auto_commit=False), AuditModel.from_raw_data,
                items)

    def add_to(self, txn: TransactWrite, item: AuditModel) -> None:
        """Write the event in the same transaction as the change it records."""
        txn.save(item, condition=AuditModel.sk.does_not_exist())

    def query(
        self, *, actor: str | None, action: str | None, target: str | None,
        cursor: str | None, limit: int,
    ) -> Page[AuditModel]:
        source: Any
        if target:
            scope, source, key = f"target:{target}", AuditModel.target_index, target
        elif action:
            scope, source, key = f"action:{action}", AuditModel.action_index, action
        else:
            scope, source, key = f"actor:{actor}", AuditModel, actor or ""
        kwargs: dict[str, Any] = {}
        if actor and (target or action):
            kwargs["filter_condition"] = AuditModel.actor == actor
        return query_page(lambda start: source.query(
            key, scan_index_forward=False, limit=limit, page_size=limit,
            last_evaluated_key=start, **kwargs), scope, cursor=cursor)
