"""Provider catalogue storage: one partition, so listing is a single Query."""

from __future__ import annotations

import builtins

from pynamodb.exceptions import DeleteError, PutError

from chalicelib.data.models import ProviderModel
from chalicelib.data.paging import Page, query_page

PARTITION = "provider"


class ProviderExists(Exception):
    pass


class StaleProvider(Exception):
    pass


def _conditional_failed(exc: Exception) -> bool:
    return getattr(exc, "cause_response_code", None) == "ConditionalCheckFailedException"


class ProviderRepository:
    def get(self, provider_id: str, *, consistent: bool = False) -> ProviderModel | None:
        try:
            return ProviderModel.get(PARTITION, provider_id, consistent_read=consistent)
        except ProviderModel.DoesNotExist:
            return None

    def list(self, *, cursor: str | None, limit: int) -> Page[ProviderModel]:
        return query_page(lambda start: ProviderModel.query(
            PARTITION, limit=limit, page_size=limit, last_evaluated_key=start),
            "providers", cursor=cursor)

    def all(self) -> builtins.list[ProviderModel]:
        return list(ProviderModel.query(PARTITION))

    def create(self, item: ProviderModel) -> None:
        try:
            item.save(condition=ProviderModel.id.does_not_exist())
        except PutError as exc:
            if _conditional_failed(exc):
                raise ProviderExists(item.id) from None
            raise

    def replace(self, item: ProviderModel, expected_version: int) -> None:
        try:
            item.save(condition=ProviderModel.version == expected_version)
        except PutError as exc:
            if _conditional_failed(exc):
                raise StaleProvider(item.id) from None
            raise

    def delete(self, item: ProviderModel, expected_version: int) -> None:
        try:
            item.delete(condition=ProviderModel.version == expected_version)
        except DeleteError as exc:
            if _conditional_failed(exc):
                raise StaleProvider(item.id) from None
            raise

    def seed(self, item: ProviderModel) -> bool:
        """Insert a seed provider unless one with that id exists (admins' edits win)."""
        try:
            self.create(item)
            return True
        except ProviderExists:
            return False
