"""Google Gemini API (``https://generativelanguage.googleapis.com/v1beta``).

The key goes in the ``x-goog-api-key`` header, never in ``?key=`` (URLs end up in logs).
A bad key is a **400** ``INVALID_ARGUMENT`` whose details carry ``reason: API_KEY_INVALID``,
so errors are classified by body first.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from chalicelib.providers.adapter import (
    Adapter,
    Completion,
    GenerationRequest,
    ModelCheck,
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
    sub_list,
)
from chalicelib.providers.base import ProviderError, Target
from chalicelib.providers.classify import ErrorResponse, by_status, duration_seconds, error
from chalicelib.providers.session import ProviderSession

PAGE_SIZE = 1000
_FINISH = {
    "STOP": "stop",
    "MAX_TOKENS": "length",
    "SAFETY": "content_filter",
    "RECITATION": "content_filter",
    "BLOCKLIST": "content_filter",
    "PROHIBITED_CONTENT": "content_filter",
    "SPII": "content_filter",
    "IMAGE_SAFETY": "content_filter",
}
_BAD_KEY_REASONS = frozenset({"API_KEY_INVALID", "API_KEY_EXPIRED"})
_RETRY_INFO = "type.googleapis.com/google.rpc.RetryInfo"


def _details(err: dict[str, Any]) -> list[dict[str, Any]]:
    return [d for d in sub_list(err, "details") if isinstance(d, dict)]


def classify(resp: ErrorResponse) -> ProviderError:
    """Google errors: ``{"error": {"code", "message", "status", "details": [...]}}``.

    ``RESOURCE_EXHAUSTED`` with a ``RetryInfo`` delay is a rate limit; without one it is a
    quota that will not come back within a retry (daily or billing quota).
    """
    err = sub_dict(resp.body, "error") if isinstance(resp.body, dict) else {}
    status = str(err.get("status") or "")
    details = _details(err)
    reasons = {str(d.get("reason")) for d in details if d.get("reason")}
    message = str(err.get("message") or "").lower()
    if reasons & _BAD_KEY_REASONS or "api key not valid" in message or status == "UNAUTHENTICATED":
        return error("invalid_api_key", resp)
    if status == "PERMISSION_DENIED" or status == "FAILED_PRECONDITION":
        return error("permission_denied", resp)
    if status == "NOT_FOUND" and resp.model_call:
        return error("model_not_available", resp)
    if status == "RESOURCE_EXHAUSTED" or resp.status == 429:
        delays = [
            duration_seconds(d.get("retryDelay")) for d in details if d.get("@type") == _RETRY_INFO
        ]
        delay = next((d for d in delays if d is not None), None)
        if delay is None and not resp.headers.get("retry-after"):
            return error("quota_exhausted", resp, retryable=False, retry_after=None)
        if delay is None:
            return error("rate_limited", resp)
        return error("rate_limited", resp, retry_after=delay)
    if status in ("INTERNAL", "UNAVAILABLE"):
        return error("provider_unavailable", resp)
    if status == "DEADLINE_EXCEEDED":
        return error("timeout", resp)
    return by_status(resp)


def _model_id(name: str) -> str:
    return name.removeprefix("models/")


def _generates(entry: dict[str, Any]) -> bool:
    methods = entry.get("supportedGenerationMethods")
    return not isinstance(methods, list) or "generateContent" in methods


class GoogleAdapter(Adapter):
    name = "google"
    default_base_url = "https://generativelanguage.googleapis.com/v1beta"

    def headers(self, target: Target) -> dict[str, str]:
        return {"x-goog-api-key": secret(target, "api_key", "API key")}

    async def list_models(self, s: ProviderSession) -> list[str]:
        """``GET /models?pageSize=&pageToken=``; models that support ``generateContent``."""
        base = self.base_url(s.target)
        headers = self.headers(s.target)

        async def page(token: str | None) -> tuple[list[str], str | None]:
            params: dict[str, str | int] = {"pageSize": PAGE_SIZE}
            if token:
                params["pageToken"] = token
            resp = await s.request_json(
                "GET", f"{base}/models", headers=headers, params=params, classify=classify
            )
            data = as_dict(resp.data, "model list")
            items = as_list(data.get("models", []), "model list")
            ids = [_model_id(n) for n in names(items, "name", "model list", _generates)]
            token = data.get("nextPageToken")
            return ids, (token if isinstance(token, str) and token else None)

        return await paginate(s, page)

    async def check_model(self, s: ProviderSession, model: str, listed: list[str]) -> ModelCheck:
        return await super().check_model(s, _model_id(model), listed)

    async def lookup_model(self, s: ProviderSession, model: str) -> bool:
        resp = await s.request_json(
            "GET",
            f"{self.base_url(s.target)}/models/{segment(_model_id(model))}",
            headers=self.headers(s.target),
            classify=classify,
            model_call=True,
        )
        return isinstance(resp.data, dict)

    @staticmethod
    def _body(req: GenerationRequest) -> dict[str, Any]:
        system, rest = split_system(req.messages)
        body: dict[str, Any] = {
            "contents": [
                {
                    "role": "model" if m.role == "assistant" else "user",
                    "parts": [{"text": m.content}],
                }
                for m in rest
            ]
        }
        if system is not None:
            body["systemInstruction"] = {"parts": [{"text": system}]}
        config: dict[str, Any] = {}
        if req.max_tokens is not None:
            config["maxOutputTokens"] = req.max_tokens
        if req.temperature is not None:
            config["temperature"] = req.temperature
        if config:
            body["generationConfig"] = config
        return body

    async def generate(self, s: ProviderSession, req: GenerationRequest) -> Completion:
        model = _model_id(req.model)
        resp = await s.request_json(
            "POST",
            f"{self.base_url(s.target)}/models/{segment(model)}:generateContent",
            headers=self.headers(s.target),
            json_body=self._body(req),
            classify=classify,
            model_call=True,
        )
        data = as_dict(resp.data, "generateContent answer")
        candidates = as_list(data.get("candidates", []), "candidates")
        text, finish = "", "other"
        if candidates:
            candidate = as_dict(candidates[0], "candidate")
            text = "".join(
                p["text"]
                for p in sub_list(sub_dict(candidate, "content"), "parts")
                if isinstance(p, dict) and isinstance(p.get("text"), str) and not p.get("thought")
            )
            finish = _FINISH.get(str(candidate.get("finishReason")), "other")
        elif sub_dict(data, "promptFeedback").get("blockReason"):
            finish = "content_filter"
        usage = sub_dict(data, "usageMetadata")
        version = data.get("modelVersion")
        request_id = data.get("responseId") or resp.header("x-request-id")
        return Completion(
            text=text,
            model=version if isinstance(version, str) and version else model,
            finish_reason=finish,
            input_tokens=as_int(usage.get("promptTokenCount")),
            output_tokens=as_int(usage.get("candidatesTokenCount"))
            + as_int(usage.get("thoughtsTokenCount")),
            request_id=request_id if isinstance(request_id, str) else None,
        )

    async def stream(
        self, s: ProviderSession, req: GenerationRequest
    ) -> AsyncIterator[StreamPiece]:
        """``:streamGenerateContent?alt=sse``: each event a whole GenerateContentResponse; the
        last carries the finish reason and the final token counts."""
        model = _model_id(req.model)
        response = await s.open_stream(
            "POST",
            f"{self.base_url(s.target)}/models/{segment(model)}:streamGenerateContent",
            headers=self.headers(s.target),
            params={"alt": "sse"},
            json_body=self._body(req),
            classify=classify,
        )
        async for _, data in sse_events(s.stream_lines(response)):
            chunk = json_event(data, "streamGenerateContent chunk")
            if isinstance(chunk.get("error"), dict):
                raise classify(ErrorResponse(500, chunk, response.headers, True))
            candidates = as_list(chunk.get("candidates", []), "candidates")
            text, finish = "", None
            if candidates:
                candidate = as_dict(candidates[0], "candidate")
                text = "".join(
                    p["text"]
                    for p in sub_list(sub_dict(candidate, "content"), "parts")
                    if isinstance(p, dict)
                    and isinstance(p.get("text"), str)
                    and not p.get("thought")
                )
                if candidate.get("finishReason"):
                    finish = _FINISH.get(str(candidate.get("finishReason")), "other")
            elif sub_dict(chunk, "promptFeedback").get("blockReason"):
                finish = "content_filter"
            usage = sub_dict(chunk, "usageMetadata")
            version = chunk.get("modelVersion")
            request_id = chunk.get("responseId")
            yield StreamPiece(
                text=text,
                finish_reason=finish,
                input_tokens=(
                    as_int(usage["promptTokenCount"]) if "promptTokenCount" in usage else None
                ),
                output_tokens=(
                    as_int(usage.get("candidatesTokenCount"))
                    + as_int(usage.get("thoughtsTokenCount"))
                    if "candidatesTokenCount" in usage
                    else None
                ),
                model=version if isinstance(version, str) and version else None,
                request_id=request_id if isinstance(request_id, str) else None,
            )
