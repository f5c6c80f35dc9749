"""Cohere (``https://api.cohere.com``; ``/v1/check-api-key``, ``/v1/models``, ``/v2/chat``)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from chalicelib.providers.adapter import (
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
    sse_events,
    sub_dict,
    sub_list,
)
from chalicelib.providers.base import ProviderError, Target
from chalicelib.providers.classify import ErrorResponse, by_status, error, provider_message
from chalicelib.providers.session import ProviderSession

PAGE_SIZE = 1000
_FINISH = {
    "COMPLETE": "stop",
    "STOP_SEQUENCE": "stop",
    "MAX_TOKENS": "length",
    "ERROR_TOXIC": "content_filter",
}


def classify(resp: ErrorResponse) -> ProviderError:
    """Cohere errors: ``{"message": ...}``; 401 and 498 (invalid token) are bad keys."""
    message = provider_message(resp).lower()
    if resp.status in (401, 498):
        return error("invalid_api_key", resp)
    if resp.status == 402:
        return error("quota_exhausted", resp, retryable=False, retry_after=None)
    if resp.model_call and (
        resp.status == 404 or (resp.status == 400 and "model" in message and "not found" in message)
    ):
        return error("model_not_available", resp)
    return by_status(resp)


def _chat_capable(entry: dict[str, Any]) -> bool:
    endpoints = entry.get("endpoints")
    return not isinstance(endpoints, list) or "chat" in endpoints


class CohereAdapter(Adapter):
    name = "cohere"
    default_base_url = "https://api.cohere.com"

    def headers(self, target: Target) -> dict[str, str]:
        return {"authorization": f"Bearer {secret(target, 'api_key', 'API key')}"}

    async def list_models(self, s: ProviderSession) -> list[str]:
        """The free key check (``POST /v1/check-api-key``), then ``GET /v1/models`` pages."""
        base = self.base_url(s.target)
        headers = self.headers(s.target)
        check = await s.request_json(
            "POST", f"{base}/v1/check-api-key", headers=headers, json_body={}, classify=classify
        )
        if as_dict(check.data, "key check").get("valid") is False:
            s.obs.auth_proven = False  # answered 200, but to say the key is not valid
            raise ProviderError("invalid_api_key", "Cohere says the API key is not valid.")

        async def page(token: str | None) -> tuple[list[str], str | None]:
            params: dict[str, str | int] = {"page_size": PAGE_SIZE, "endpoint": "chat"}
            if token:
                params["page_token"] = token
            resp = await s.request_json(
                "GET", f"{base}/v1/models", headers=headers, params=params, classify=classify
            )
            data = as_dict(resp.data, "model list")
            items = as_list(data.get("models"), "model list")
            token = data.get("next_page_token")
            return (
                names(items, "name", "model list", _chat_capable),
                token if isinstance(token, str) and token else None,
            )

        return await paginate(s, page)

    async def lookup_model(self, s: ProviderSession, model: str) -> bool:
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
        body: dict[str, Any] = {
            "model": req.model,
            "messages": [{"role": m.role, "content": m.content} for m in req.messages],
        }
        if req.max_tokens is not None:
            body["max_tokens"] = req.max_tokens
        if req.temperature is not None:
            body["temperature"] = req.temperature
        return body

    async def generate(self, s: ProviderSession, req: GenerationRequest) -> Completion:
        resp = await s.request_json(
            "POST",
            f"{self.base_url(s.target)}/v2/chat",
            headers=self.headers(s.target),
            json_body=self._body(req),
            classify=classify,
            model_call=True,
        )
        data = as_dict(resp.data, "chat answer")
        message = sub_dict(data, "message")
        content = message.get("content")
        if isinstance(content, str):
            text = content
        else:
            text = "".join(
                c["text"]
                for c in sub_list(message, "content")
                if isinstance(c, dict) and isinstance(c.get("text"), str)
            )
        usage = sub_dict(data, "usage")
        counts = sub_dict(usage, "tokens") or sub_dict(usage, "billed_units")
        request_id = data.get("id") or resp.header("x-request-id")
        return Completion(
            text=text,
            model=req.model,
            finish_reason=_FINISH.get(str(data.get("finish_reason")), "other"),
            input_tokens=as_int(counts.get("input_tokens")),
            output_tokens=as_int(counts.get("output_tokens")),
            request_id=request_id if isinstance(request_id, str) else None,
        )

    async def stream(
        self, s: ProviderSession, req: GenerationRequest
    ) -> AsyncIterator[StreamPiece]:
        """v2 chat stream: ``content-delta`` text, ``message-end`` finish reason and usage."""
        response = await s.open_stream(
            "POST",
            f"{self.base_url(s.target)}/v2/chat",
            headers=self.headers(s.target),
            json_body={**self._body(req), "stream": True},
            classify=classify,
        )
        request_id = response.headers.get("x-request-id")
        async for event, data in sse_events(s.stream_lines(response)):
            if data.strip() == "[DONE]":
                return
            obj = json_event(data, "chat stream event")
            kind = obj.get("type") or event
            if kind == "message-start":
                yield StreamPiece(request_id=obj.get("id") or request_id)
            elif kind == "content-delta":
                content = sub_dict(sub_dict(sub_dict(obj, "delta"), "message"), "content")
                if isinstance(content.get("text"), str):
                    yield StreamPiece(text=content["text"])
            elif kind == "message-end":
                delta = sub_dict(obj, "delta")
                usage = sub_dict(delta, "usage")
                counts = sub_dict(usage, "tokens") or sub_dict(usage, "billed_units")
                yield StreamPiece(
                    finish_reason=_FINISH.get(str(delta.get("finish_reason")), "other"),
                    input_tokens=as_int(counts.get("input_tokens")),
                    output_tokens=as_int(counts.get("output_tokens")),
                )
                return
