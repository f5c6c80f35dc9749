"""Connections, their unique-name locks and their dependents.

Every multi-item change is one ``TransactWriteItems`` that also carries the audit event, so a
change and its audit record land together or not at all. Uniqueness and versions are DynamoDB
conditions, never read-then-write checks.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator, Sequence
from functools import lru_cache
from typing import Any, TypeVar
from urllib.parse import quote

from pynamodb.connection import Connection
from pynamodb.exceptions import DoesNotExist, TransactGetError, TransactWriteError
from pynamodb.expressions.update import Action
from pynamodb.transactions import TransactGet, TransactWrite

from chalicelib.data.models import (
    AuditModel,
    ConnectionModel,
    DependentModel,
    NameLockModel,
    ProviderModel,
)
from chalicelib.data.paging import Page, query_page

T = TypeVar("T")


class NameTaken(Exception):
    pass


class VersionConflict(Exception):
    """The item changed (or vanished) since it was read."""


class HasDependents(Exception):
    pass


class DependentExists(Exception):
    pass


class DependentMissing(Exception):
    pass


def name_lock_key(owner: str, name_key: str) -> str:
    return f"{quote(owner, safe='')}/{name_key}"


def _reasons(exc: Exception) -> list[str | None]:
    reasons = getattr(exc, "cancellation_reasons", None) or []
    return [r.code if r else None for r in reasons]


@lru_cache(maxsize=4)
def _connection(region: str) -> Connection:
    """One low-level connection per region, reused like the models' own: building its
    botocore client costs ~60 ms of CPU, too much to pay on every write."""
    return Connection(region=region)


CONFLICT_ATTEMPTS = 5


class _TransactWrite(TransactWrite):
    """DynamoDB cancels a transaction touching an item that another transaction is writing
    (reason ``TransactionConflict``; botocore does not retry it). Every transaction here is
    conditional, so sending it again is safe: its conditions decide the outcome."""

    def _commit(self) -> Any:
        return _retrying_conflicts(super()._commit)


def _retrying_conflicts(run: Callable[[], T]) -> T:
    """``run`` a transaction, again (with jitter) while DynamoDB cancels it only for a
    conflict with another transaction on the same item; a failed condition is final."""
    for attempt in range(CONFLICT_ATTEMPTS):
        try:
            return run()
        except (TransactWriteError, TransactGetError) as exc:
            reasons = _reasons(exc)
            if ("TransactionConflict" not in reasons or "ConditionalCheckFailed" in reasons
                    or attempt == CONFLICT_ATTEMPTS - 1):
                raise
            time.sleep(random.uniform(0, 0.02 * 2**attempt))
    raise AssertionError("unreachable")


def _resolved(future: Any) -> Any:
    try:
        return future.get()
    except DoesNotExist:
        return None


def _txn() -> TransactWrite:
    return _TransactWrite(connection=_connection(ConnectionModel.Meta.region))


class ConnectionRepository:
    def get_with_provider(self, connection_id: str, provider_id: str
                          ) -> tuple[ConnectionModel | None, ProviderModel | None]:
        """A connection and a catalogue entry in one strongly consistent read
        (TransactGetItems): a warm invoke's only read, which sees a disabled provider at once."""
        def read() -> tuple[Any, Any]:
            with TransactGet(connection=_connection(ConnectionModel.Meta.region)) as tg:
                conn = tg.get(ConnectionModel, connection_id)
                prov = tg.get(ProviderModel, "provider", provider_id)
            return conn, prov

        conn, prov = _retrying_conflicts(read)
        return _resolved(conn), _resolved(prov)

    def get(self, connection_id: str) -> ConnectionModel | None:
        try:
            return ConnectionModel.get(connection_id, consistent_read=True)
        except ConnectionModel.DoesNotExist:
            return None

    def list_by_owner(self, owner: str, *, cursor: str | None, limit: int) -> Page[ConnectionModel]:
        return query_page(lambda start: ConnectionModel.owner_index.query(
            owner, limit=limit, page_size=limit, last_evaluated_key=start),
            f"connections:{owner}", cursor=cursor)

    def iter_by_owner(self, owner: str) -> Iterator[ConnectionModel]:
        yield from ConnectionModel.owner_index.query(owner, page_size=100)

    def create(self, item: ConnectionModel, audit: AuditModel | None) -> None:
        """Create the connection and claim its name atomically."""
        self.create_many([item], audit)

    def create_many(self, items: list[ConnectionModel], audit: AuditModel | None) -> None:
        with_names = [(i, NameLockModel(key=name_lock_key(i.owner, i.name_key),
                                        connection_id=i.id)) for i in items]
        try:
            with _txn() as txn:
                for item, lock in with_names:
                    txn.save(item, condition=ConnectionModel.id.does_not_exist())
                    txn.save(lock, condition=NameLockModel.key.does_not_exist())
                if audit is not None:
                    txn.save(audit, condition=AuditModel.sk.does_not_exist())
        except TransactWriteError as exc:
            reasons = _reasons(exc)
            for idx, code in enumerate(reasons):
                if code == "ConditionalCheckFailed" and idx < 2 * len(items) and idx % 2 == 1:
                    raise NameTaken(with_names[idx // 2][0].name) from None
            raise

    def update(
        self,
        item: ConnectionModel,
        actions: list[Action],
        expected_version: int,
        audit: AuditModel | None,
        *,
        rename_from: str | None = None,
    ) -> None:
        """Apply ``actions`` if the stored version is still ``expected_version``."""
        cond = ConnectionModel.version == expected_version
        try:
            with _txn() as txn:
                txn.update(item, actions=actions, condition=cond)
                if rename_from is not None:
                    txn.delete(NameLockModel(key=name_lock_key(item.owner, rename_from)))
                    txn.save(
                        NameLockModel(key=name_lock_key(item.owner, item.name_key),
                                      connection_id=item.id),
                        condition=NameLockModel.key.does_not_exist(),
                    )
                if audit is not None:
                    txn.save(audit, condition=AuditModel.sk.does_not_exist())
        except TransactWriteError as exc:
            # PynamoDB sends deletes, then puts, then updates (not the order written above):
            # [old lock delete, new lock put,] audit put, connection update.
            reasons = _reasons(exc)
            if reasons and reasons[-1] == "ConditionalCheckFailed":
                raise VersionConflict(item.id) from None
            renamed = rename_from is not None and len(reasons) > 1
            if renamed and reasons[1] == "ConditionalCheckFailed":
                raise NameTaken(item.name) from None
            raise

    def update_unversioned(self, item: ConnectionModel, actions: Sequence[Action]) -> None:
        """Update fields owned by the system (test results), only if the item still exists."""
        item.update(actions=list(actions), condition=ConnectionModel.id.exists())

    def delete(self, item: ConnectionModel, expected_version: int, audit: AuditModel | None,
               *, force: bool) -> None:
        cond = ConnectionModel.version == expected_version
        if not force:
            cond &= ConnectionModel.dependents_count == 0
        try:
            with _txn() as txn:
                txn.delete(item, condition=cond)
                txn.delete(NameLockModel(key=name_lock_key(item.owner, item.name_key)))
                if audit is not None:
                    txn.save(audit, condition=AuditModel.sk.does_not_exist())
        except TransactWriteError as exc:
            if _reasons(exc)[:1] == ["ConditionalCheckFailed"]:
                raise VersionConflict(item.id) from None
            raise

    # dependents -----------------------------------------------------------------------

    def dependents_page(self, connection_id: str, *, cursor: str | None,
                        limit: int) -> Page[DependentModel]:
        return query_page(lambda start: DependentModel.query(
            connection_id, limit=limit, page_size=limit, last_evaluated_key=start),
            f"dependents:{connection_id}", cursor=cursor)

    def dependents(self, connection_id: str, limit: int = 100) -> list[DependentModel]:
        return list(DependentModel.query(connection_id, limit=limit, page_size=limit))

    def add_dependent(self, dep: DependentModel) -> None:
        """Record a new dependent and count it on the connection, atomically."""
        conn = ConnectionModel(id=dep.connection_id)
        try:
            with _txn() as txn:
                txn.save(dep, condition=DependentModel.dependent_id.does_not_exist())
                txn.update(conn, actions=[ConnectionModel.dependents_count.add(1)],
                           condition=ConnectionModel.id.exists())
        except TransactWriteError as exc:
            reasons = _reasons(exc)
            if reasons[:1] == ["ConditionalCheckFailed"]:
                raise DependentExists(dep.dependent_id) from None
            if len(reasons) > 1 and reasons[1] == "ConditionalCheckFailed":
                raise VersionConflict(dep.connection_id) from None
            raise

    def refresh_dependent(self, dep: DependentModel) -> None:
        dep.save(condition=DependentModel.dependent_id.exists())

    def remove_dependent(self, connection_id: str, dependent_id: str) -> None:
        dep = DependentModel(connection_id=connection_id, dependent_id=dependent_id)
        conn = ConnectionModel(id=connection_id)
        try:
            with _txn() as txn:
                txn.delete(dep, condition=DependentModel.dependent_id.exists())
                txn.update(conn, actions=[ConnectionModel.dependents_count.add(-1)],
                           condition=ConnectionModel.id.exists())
        except TransactWriteError as exc:
            if _reasons(exc)[:1] == ["ConditionalCheckFailed"]:
                raise DependentMissing(dependent_id) from None
            raise

    def purge_dependents(self, connection_id: str) -> None:
        """After a forced delete, drop the dependents that pointed at it."""
        with DependentModel.batch_write() as batch:
            for dep in DependentModel.query(connection_id):
                batch.delete(dep)

    def count_by_owner(self, owner: str) -> int:
        return int(ConnectionModel.owner_index.count(owner))

    def count_by_provider(self, provider_id: str, *, following_only: bool = False) -> int:
        """How many connections use ``provider_id``; ``following_only``: only those without
        their own base URL (which follow the provider's)."""
        cond = ((ConnectionModel.base_url.does_not_exist() | (ConnectionModel.base_url == ""))
                if following_only else None)
        return int(ConnectionModel.provider_index.count(provider_id, filter_condition=cond))

    def scan_ids(self) -> Iterator[str]:
        """Every connection id. A table scan: for operator tasks (rewrap), never a request."""
        for item in ConnectionModel.scan(attributes_to_get=["id"], page_size=500):
            yield item.id

    # daily run ------------------------------------------------------------------------

    def due(self, shard: str, tested_before: str) -> Iterator[Any]:
        """Stream connections of one shard whose last test is older than ``tested_before``."""
        yield from ConnectionModel.due_index.query(
            shard, ConnectionModel.last_tested_at < tested_before, page_size=500,
        )
