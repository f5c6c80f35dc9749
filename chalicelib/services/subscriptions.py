"""Alert subscriptions: an SNS subscription with a filter policy on the caller's ``owner``
(admins may subscribe to all alerts). SNS sends its usual confirmation email."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator
from pynamodb.exceptions import DeleteError, PutError

from chalicelib.data.models import EndpointClaimModel, SubscriptionModel
from chalicelib.data.paging import BadCursor, Page, query_page
from chalicelib.errors import Conflict, Forbidden, InvalidInput, NotFound
from chalicelib.services.audit import AuditService
from chalicelib.services.common import Caller, iso, new_id, utcnow
from chalicelib.services.validation import Strict, parse
from chalicelib.settings import Settings

# Pragmatic address check (RFC 5322 allows more, SNS and mail servers accept less).
_EMAIL = r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+$"  # noqa: E501


# The alert kinds (SNS attribute ``kind``) each delivery receives.
DELIVERY_KINDS: dict[str, tuple[str, ...]] = {
    "immediate": ("failure", "reminder", "recovery", "rotation_due", "incident.opened",
                  "incident.closed"),
    "digest": ("digest", "incident.opened", "incident.closed"),
}


class SubscriptionRequest(Strict):
    protocol: Literal["email"]
    endpoint: Annotated[str, Field(min_length=3, max_length=254, pattern=_EMAIL)]
    scope: Literal["own", "all"] = "own"
    # Absent: every message for the scope (as before digests existed).
    delivery: Literal["immediate", "digest"] | None = None

    @field_validator("endpoint")
    @classmethod
    def _no_spaces(cls, value: str) -> str:
        if value != value.strip():
            raise ValueError("must not have surrounding spaces")
        # The pattern already keeps to printable ASCII (no control, invisible or full-width
        # characters); the domain is case-insensitive, so it is stored in one case.
        local, _, domain = value.rpartition("@")
        return f"{local}@{domain.lower()}"


class SubscriptionService:
    def __init__(self, sns_factory: Callable[[], Any], settings: Settings,
                 audit: AuditService) -> None:
        self._sns = sns_factory
        self._settings = settings
        self._audit = audit

    def subscribe(self, caller: Caller, body: dict[str, Any]) -> dict[str, Any]:
        data = parse(SubscriptionRequest, body)
        if data.scope == "all" and not caller.is_admin:
            raise Forbidden("only administrators may subscribe to every alert", field="scope")
        # SNS keeps one subscription per (topic, protocol, address) and hands its ARN back to a
        # repeated Subscribe: a second record would share it, and deleting either record would
        # silently end the other's alerts.
        # Compared case-insensitively: mail systems deliver A@x and a@x to one mailbox.
        if any(s.protocol == data.protocol and s.endpoint.casefold() == data.endpoint.casefold()
               for s in SubscriptionModel.query(caller.user_id, limit=100)):
            raise Conflict("this address is already subscribed", field="endpoint",
                           code="already_exists")
        sub_id = new_id("sub")
        claim = self._claim(caller, data.protocol, data.endpoint, sub_id)
        try:
            item = self._subscribe(caller, data, sub_id)
        except BaseException:
            self._release(claim, caller.user_id)
            raise
        self._audit.record(caller, "subscription.create", f"subscription:{item.subscription_id}",
                           target_owner=caller.user_id,
                           detail={"scope": data.scope, "delivery": data.delivery or "all"})
        return to_view(item)

    def _claim(self, caller: Caller, protocol: str, endpoint: str,
               sub_id: str) -> EndpointClaimModel:
        """Record the address as the caller's, or refuse it if another owner holds it (one
        conditional put: of two owners racing for an address, one wins)."""
        claim = EndpointClaimModel(key=_claim_key(protocol, endpoint), owner=caller.user_id,
                                   subscription_id=sub_id)
        try:
            claim.save(condition=EndpointClaimModel.key.does_not_exist()
                       | (EndpointClaimModel.owner == caller.user_id))
        except PutError as exc:
            if getattr(exc, "cause_response_code", None) == "ConditionalCheckFailedException":
                raise Conflict("this address already receives another account's alerts; "
                               "use another address", field="endpoint",
                               code="endpoint_taken") from None
            raise
        return claim

    @staticmethod
    def _release(claim: EndpointClaimModel, owner: str) -> None:
        try:
            claim.delete(condition=EndpointClaimModel.owner == owner)
        except DeleteError:
            pass  # already gone, or another owner's by now: not ours to remove

    def _subscribe(self, caller: Caller, data: SubscriptionRequest,
                   sub_id: str) -> SubscriptionModel:
        attributes: dict[str, str] = {}
        policy: dict[str, Any] = {}
        if data.scope == "own":
            policy["owner"] = [caller.user_id]
        if data.delivery is not None:
            policy["kind"] = list(DELIVERY_KINDS[data.delivery])
        if policy:
            attributes["FilterPolicy"] = json.dumps(policy)
            attributes["FilterPolicyScope"] = "MessageAttributes"
        try:
            resp = self._sns().subscribe(
                TopicArn=self._settings.alerts_topic_arn, Protocol=data.protocol,
                Endpoint=data.endpoint, Attributes=attributes, ReturnSubscriptionArn=True,
            )
        except Exception as exc:
            # SNS answers InvalidParameter for an address it refuses, or one already
            # subscribed with other attributes (another user's filter): the caller's input.
            code = getattr(exc, "response", {}).get("Error", {}).get("Code")
            if code == "InvalidParameter":
                raise InvalidInput("this address cannot be subscribed (it may already receive "
                                   "alerts under other settings)", field="endpoint") from None
            raise
        item = SubscriptionModel(
            owner=caller.user_id, subscription_id=sub_id, protocol=data.protocol,
            endpoint=data.endpoint, scope=data.scope, subscription_arn=resp["SubscriptionArn"],
            created_at=iso(utcnow()), delivery=data.delivery,
        )
        item.save()
        return item

    def wants_digest(self, owner: str) -> bool:
        """Whether ``owner`` has a digest subscription (a digest is published only then)."""
        return any(s.delivery == "digest" for s in SubscriptionModel.query(owner, limit=100))

    def list(self, caller: Caller, *, cursor: str | None = None,
             limit: int = 50) -> Page[dict[str, Any]]:
        try:
            page = query_page(lambda start: SubscriptionModel.query(
                caller.user_id, limit=limit, page_size=limit, last_evaluated_key=start),
                f"subscriptions:{caller.user_id}", cursor=cursor)
        except BadCursor as exc:
            raise InvalidInput(str(exc), field="cursor") from None
        return Page([to_view(s) for s in page.items], page.next_cursor)

    def delete(self, caller: Caller, subscription_id: str) -> None:
        check_id(subscription_id)
        try:
            item = SubscriptionModel.get(caller.user_id, subscription_id)
        except SubscriptionModel.DoesNotExist:
            # Another user's id looks exactly like a missing one, and is audited as denied.
            self._audit.record(caller, "subscription.delete", f"subscription:{subscription_id}",
                               outcome="denied", detail={"reason": "not found"})
            raise NotFound("subscription not found") from None
        try:
            self._sns().unsubscribe(SubscriptionArn=item.subscription_arn)
        except Exception as exc:
            code = getattr(exc, "response", {}).get("Error", {}).get("Code")
            if code not in ("NotFound", "InvalidParameter"):
                raise
        item.delete()
        self._release(EndpointClaimModel(key=_claim_key(item.protocol, item.endpoint)),
                      caller.user_id)
        self._audit.record(caller, "subscription.delete", f"subscription:{subscription_id}",
                           target_owner=caller.user_id)


def _claim_key(protocol: str, endpoint: str) -> str:
    """An address's claim (``EndpointClaimModel``), case-folded as its uniqueness is."""
    return f"sns:{protocol}/{endpoint.casefold()}"


def to_view(s: SubscriptionModel) -> dict[str, Any]:
    pending = "pending" in (s.subscription_arn or "").lower()
    return {"id": s.subscription_id, "protocol": s.protocol, "endpoint": s.endpoint,
            "scope": s.scope, "delivery": s.delivery or "all",
            "status": "pending_confirmation" if pending else "subscribed",
            "created_at": s.created_at}


def check_id(value: str) -> str:
    if not value or len(value) > 64:
        raise InvalidInput("subscription id is not valid", field="subscription_id")
    return value
