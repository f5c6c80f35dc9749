"""Anthropic Messages API (``https://api.anthropic.com``; ``/v1/models``, ``/v1/messages``)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from chalicelib.providers.adapter import (
    DEFAULT_MAX_TOKENS,
    Adapter,
    Completion,
    GenerationRequest,
    StreamPiece,
    as_dict,
    as_int,
    as_list,
    json_event,
    names,
    paginate,
    secret,
    segment,
    split_system,
    sse_events,
    sub_dict,
)
from chalicelib.providers.base import ProviderError, Target
from chalicelib.providers.classify import ErrorResponse, by_status, error
from chalicelib.providers.session import ProviderSession

API_VERSION = "2023-06-01"
PAGE_LIMIT = 1000
_FINISH = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "refusal": "content_filter",
}


def classify(resp: ErrorResponse) -> ProviderError:
    """Anthropic errors: ``{"type": "error", "error": {"type", "message", "details"?}}``.

    529 ``overloaded_error`` is an outage (retryable); a 429 carrying
    ``details.error_code: enforced_spend_limit_reached`` is a spend cap, not a rate limit.
    """
    err = sub_dict(resp.body, "error") if isinstance(resp.body, dict) else {}
    etype = str(err.get("type") or "")
    details = sub_dict(err, "details")
    message = str(err.get("message") or "").lower()
    if details.get("error_code") == "enforced_spend_limit_reached" or etype == "billing_error":
        return error("quota_exhausted", resp, retryable=False, retry_after=None)
    if "credit balance" in message:  # a 400 invalid_request_error when prepaid credit ran out
        return error("quota_exhausted", resp, retryable=False, retry_after=None)
    if etype == "authentication_error":
        return error("invalid_api_key", resp)
    if etype == "permission_error":
        return error("permission_denied", resp)
    if etype == "not_found_error" and resp.model_call:
        return error("model_not_available", resp)
    if etype == "rate_limit_error":
        return error("rate_limited", resp)
    if etype == "overloaded_error" or resp.status == 529:
        return error("provider_unavailable", resp, retryable=True)
    if etype == "timeout_error":
        return error("timeout", resp)
    if etype == "api_error":
        return error("provider_unavailable", resp)
    return by_status(resp)


class AnthropicAdapter(Adapter):
    name = "anthropic"
    default_base_url = "https://api.anthropic.com"

    def headers(self, target: Target) -> dict[str, str]:
        return {
            "x-api-key": secret(target, "api_key", "API key"),
            "anthropic-version": API_VERSION,
        }

    async def list_models(self, s: ProviderSession) -> list[str]:
        """``GET /v1/models?limit=&after_id=``, following ``has_more``/``last_id``."""
        base = self.base_url(s.target)
        headers = self.headers(s.target)

        async def page(cursor: str | None) -> tuple[list[str], str | None]:
            params: dict[str, str | int] = {"limit": PAGE_LIMIT}
            if cursor:
                params["after_id"] = cursor
            resp = await s.request_json(
                "GET", f"{base}/v1/models", headers=headers, params=params, classify=classify
            )
            data = as_dict(resp.data, "model list")
            ids = names(as_list(data.get("data"), "model list"), "id", "model list", lambda _: True)
            last = data.get("last_id")
            more = data.get("has_more") is True and isinstance(last, str) and bool(last)
            return ids, (last if more else None)

        return await paginate(s, page)

    async def lookup_model(self, s: ProviderSession, model: str) -> bool:
        """``GET /v1/models/{id}``; also resolves aliases such as ``claude-sonnet-4-0``."""
        resp = await s.request_json(
            "GET",
            f"{self.base_url(s.target)}/v1/models/{segment(model)}",
            headers=self.headers(s.target),
            classify=classify,
            model_call=True,
        )
        return isinstance(resp.data, dict)

    @staticmethod
    def _body(req: GenerationRequest) -> dict[str, Any]:
        system, rest = split_system(req.messages)
        body: dict[str, Any] = {
            "model": req.model,
            "max_tokens": req.max_tokens if req.max_tokens is not None else DEFAULT_MAX_TOKENS,
            "messages": [{"role": m.role, "content": m.content} for m in rest],
        }
        if system is not None:
            body["system"] = system
        if req.temperature is not None:
            body["temperature"] = req.temperature
        return body

    async def generate(self, s: ProviderSession, req: GenerationRequest) -> Completion:
        resp = await s.request_json(
            "POST",
            f"{self.base_url(s.target)}/v1/messages",
            headers=self.headers(s.target),
            json_body=self._body(req),
            classify=classify,
            model_call=True,
        )
        data = as_dict(resp.data, "message")
        blocks = as_list(data.get("content"), "message content")
        text = "".join(
            b["text"]
            for b in blocks
            if isinstance(b, dict) and b.get("type") == "text" and isinstance(b.get("text"), str)
        )
        usage = sub_dict(data, "usage")
        model = data.get("model")
        request_id = resp.header("request-id") or data.get("id")
        return Completion(
            text=text,
            model=model if isinstance(model, str) and model else req.model,
            finish_reason=_FINISH.get(str(data.get("stop_reason")), "other"),
            input_tokens=as_int(usage.get("input_tokens")),
            output_tokens=as_int(usage.get("output_tokens")),
            request_id=request_id if isinstance(request_id, str) else None,
        )

    async def stream(
        self, s: ProviderSession, req: GenerationRequest
    ) -> AsyncIterator[StreamPiece]:
        """Messages streaming: input tokens in ``message_start``, text in ``text_delta``s, the
        stop reason and output tokens in ``message_delta``, an ``error`` event mid-stream."""
        response = await s.open_stream(
            "POST",
            f"{self.base_url(s.target)}/v1/messages",
            headers=self.headers(s.target),
            json_body={**self._body(req), "stream": True},
            classify=classify,
        )
        request_id = response.headers.get("request-id")
        async for event, data in sse_events(s.stream_lines(response)):
            if event == "ping":
                continue
            obj = json_event(data, "message stream event")
            kind = obj.get("type") or event
            if kind == "error":
                raise classify(ErrorResponse(500, obj, response.headers, True))
            if kind == "message_start":
                message = sub_dict(obj, "message")
                usage = sub_dict(message, "usage")
                model = message.get("model")
                yield StreamPiece(
                    input_tokens=as_int(usage.get("input_tokens")),
                    model=model if isinstance(model, str) and model else None,
                    request_id=request_id or message.get("id"),
                )
            elif kind == "content_block_delta":
                delta = sub_dict(obj, "delta")
                if delta.get("type") == "text_delta" and isinstance(delta.get("text"), str):
                    yield StreamPiece(text=delta["text"])
            elif kind == "message_delta":
                stop = sub_dict(obj, "delta").get("stop_reason")
                usage = sub_dict(obj, "usage")
                yield StreamPiece(
                    finish_reason=_FINISH.get(str(stop), "other") if stop else None,
                    output_tokens=(
                        as_int(usage["output_tokens"]) if "output_tokens" in usage else None
                    ),
                )
            elif kind == "message_stop":
                return
