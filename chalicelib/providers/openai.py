"""OpenAI and every OpenAI-compatible service (Groq, Mistral, DeepSeek, vLLM, Ollama, custom).

Base URL includes the version (``https://api.openai.com/v1``); paths ``/models``,
``/models/{id}``, ``/chat/completions``. The chat helpers here are shared with Azure OpenAI.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any
from urllib.parse import urlsplit

from chalicelib.providers.adapter import (
    Adapter,
    Completion,
    GenerationRequest,
    StreamPiece,
    as_dict,
    as_int,
    as_list,
    bad_shape,
    json_event,
    names,
    paginate,
    secret,
    segment,
    sse_events,
    sub_dict,
)
from chalicelib.providers.base import ProviderError, Target
from chalicelib.providers.classify import ErrorResponse, by_status, error
from chalicelib.providers.session import Classifier, JsonResponse, ProviderSession

_FINISH = {"stop": "stop", "length": "length", "content_filter": "content_filter"}
_OTHER_TOKEN_FIELD = {"max_tokens": "max_completion_tokens", "max_completion_tokens": "max_tokens"}
_REJECTION_WORDS = (
    "unsupported",
    "not supported",
    "unrecognized",
    "unknown",
    "extra",
    "not permitted",
)


def error_fields(body: Any) -> tuple[str, str]:
    """``(error.code, error.type)`` of an OpenAI-shaped error body, as strings."""
    err = body.get("error") if isinstance(body, dict) else None
    if not isinstance(err, dict):
        return "", ""
    return str(err.get("code") or ""), str(err.get("type") or "")


def classify(resp: ErrorResponse) -> ProviderError:
    """OpenAI errors: ``{"error": {"message", "type", "param", "code"}}``.

    429 ``insufficient_quota`` is an empty balance (not transient), unlike
    ``rate_limit_exceeded``.
    """
    code, etype = error_fields(resp.body)
    if "insufficient_quota" in (code, etype):
        return error("quota_exhausted", resp, retryable=False, retry_after=None)
    if code in ("mismatched_organization", "mismatched_project", "invalid_organization"):
        return error("permission_denied", resp)
    if code == "invalid_api_key" or resp.status == 401:
        return error("invalid_api_key", resp)
    if code in ("model_not_found", "invalid_model") or (resp.status == 404 and resp.model_call):
        return error("model_not_available", resp)
    return by_status(resp)


def _message_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # some compatible servers answer with content parts
        return "".join(
            part.get("text", "")
            for part in content
            if isinstance(part, dict) and isinstance(part.get("text"), str)
        )
    return ""


def parse_chat(resp: JsonResponse, requested_model: str) -> Completion:
    """A chat.completion object (OpenAI and Azure) as a Completion."""
    data = as_dict(resp.data, "chat completion")
    choices = as_list(data.get("choices"), "chat completion choices")
    if not choices:
        raise bad_shape("chat completion without choices")
    choice = as_dict(choices[0], "chat completion choice")
    text = _message_text(sub_dict(choice, "message").get("content"))
    usage = sub_dict(data, "usage")
    model = data.get("model")
    request_id = resp.header("x-request-id", "apim-request-id") or data.get("id")
    return Completion(
        text=text,
        model=model if isinstance(model, str) and model else requested_model,
        finish_reason=_FINISH.get(str(choice.get("finish_reason")), "other"),
        input_tokens=as_int(usage.get("prompt_tokens")),
        output_tokens=as_int(usage.get("completion_tokens")),
        request_id=request_id if isinstance(request_id, str) else None,
    )


def chat_body(req: GenerationRequest, *, with_model: bool) -> dict[str, Any]:
    body: dict[str, Any] = {
        "messages": [{"role": m.role, "content": m.content} for m in req.messages]
    }
    if with_model:
        body["model"] = req.model
    if req.temperature is not None:
        body["temperature"] = req.temperature
    return body


async def post_chat(
    s: ProviderSession,
    url: str,
    *,
    headers: Mapping[str, str],
    body: dict[str, Any],
    max_tokens: int | None,
    token_field: str,
    classify: Classifier,
    params: Mapping[str, str] | None = None,
) -> JsonResponse:
    """POST a chat completion; if the service rejects the token-limit field, use the other.

    OpenAI wants ``max_completion_tokens`` (reasoning models refuse ``max_tokens``); many
    compatible services and older Azure API versions only know ``max_tokens``.
    """
    async def send(payload: dict[str, Any]) -> Any:
        return await s.request_json(
            "POST",
            url,
            headers=headers,
            params=params,
            json_body=payload,
            classify=classify,
            model_call=True,
        )

    payload = dict(body)
    if max_tokens is not None:
        payload[token_field] = max_tokens
    try:
        return await send(payload)
    except ProviderError as err:
        text = err.message.lower()
        if (
            max_tokens is None
            or err.code != "bad_response"
            or token_field not in text
            or not any(word in text for word in _REJECTION_WORDS)
        ):
            raise
    payload.pop(token_field)
    payload[_OTHER_TOKEN_FIELD[token_field]] = max_tokens
    return await send(payload)


async def stream_chat(
    s: ProviderSession,
    url: str,
    *,
    headers: Mapping[str, str],
    body: dict[str, Any],
    classify: Classifier,
    params: Mapping[str, str] | None = None,
) -> AsyncIterator[StreamPiece]:
    """A streamed chat completion (OpenAI and Azure): ``chat.completion.chunk`` events until
    ``data: [DONE]``; usage arrives in a last chunk without choices (``include_usage``)."""
    payload = {**body, "stream": True, "stream_options": {"include_usage": True}}
    response = await s.open_stream(
        "POST", url, headers=headers, params=params, json_body=payload, classify=classify
    )
    request_id = response.headers.get("x-request-id") or response.headers.get("apim-request-id")
    if request_id:
        yield StreamPiece(request_id=request_id)
    async for _, data in sse_events(s.stream_lines(response)):
        if data.strip() == "[DONE]":
            return
        chunk = json_event(data, "chat completion chunk")
        if isinstance(chunk.get("error"), dict):
            raise error("provider_unavailable", ErrorResponse(500, chunk, response.headers, True))
        usage = sub_dict(chunk, "usage")
        model = chunk.get("model")
        piece = StreamPiece(
            model=model if isinstance(model, str) and model else None,
            input_tokens=as_int(usage["prompt_tokens"]) if "prompt_tokens" in usage else None,
            output_tokens=(
                as_int(usage["completion_tokens"]) if "completion_tokens" in usage else None
            ),
        )
        choices = chunk.get("choices")
        if isinstance(choices, list) and choices:
            choice = as_dict(choices[0], "chat completion chunk choice")
            finish = choice.get("finish_reason")
            piece = StreamPiece(
                text=_message_text(sub_dict(choice, "delta").get("content")),
                finish_reason=_FINISH.get(str(finish), "other") if finish else None,
                input_tokens=piece.input_tokens,
                output_tokens=piece.output_tokens,
                model=piece.model,
            )
        yield piece


class OpenAIAdapter(Adapter):
    name = "openai"
    default_base_url = "https://api.openai.com/v1"

    def headers(self, target: Target) -> dict[str, str]:
        headers = {"authorization": f"Bearer {secret(target, 'api_key', 'API key')}"}
        org = (target.credentials.get("organization_id") or "").strip()
        project = (target.credentials.get("project_id") or "").strip()
        if org:
            headers["openai-organization"] = org
        if project:
            headers["openai-project"] = project
        return headers

    def token_field(self, target: Target) -> str:
        """``max_completion_tokens`` for OpenAI itself, ``max_tokens`` for compatible services."""
        host = (urlsplit(self.base_url(target)).hostname or "").lower()
        return "max_completion_tokens" if host == "api.openai.com" else "max_tokens"

    async def list_models(self, s: ProviderSession) -> list[str]:
        """``GET /models``. OpenAI sends one page; follows ``has_more``/``after`` cursors
        where a compatible service pages, and accepts a bare JSON array."""
        base = self.base_url(s.target)
        headers = self.headers(s.target)

        async def page(cursor: str | None) -> tuple[list[str], str | None]:
            resp = await s.request_json(
                "GET",
                f"{base}/models",
                headers=headers,
                params={"after": cursor} if cursor else None,
                classify=classify,
            )
            data = resp.data
            items = data if isinstance(data, list) else as_dict(data, "model list").get("data")
            ids = names(as_list(items, "model list"), "id", "model list", lambda _: True)
            cursor = None
            if isinstance(data, dict) and data.get("has_more") is True:
                last = data.get("last_id")
                cursor = last if isinstance(last, str) and last else (ids[-1] if ids else None)
            return ids, cursor

        return await paginate(s, page)

    async def lookup_model(self, s: ProviderSession, model: str) -> bool:
        resp = await s.request_json(
            "GET",
            f"{self.base_url(s.target)}/models/{segment(model)}",
            headers=self.headers(s.target),
            classify=classify,
            model_call=True,
        )
        return isinstance(resp.data, dict)

    async def generate(self, s: ProviderSession, req: GenerationRequest) -> Completion:
        resp = await post_chat(
            s,
            f"{self.base_url(s.target)}/chat/completions",
            headers=self.headers(s.target),
            body=chat_body(req, with_model=True),
            max_tokens=req.max_tokens,
            token_field=self.token_field(s.target),
            classify=classify,
        )
        return parse_chat(resp, req.model)

    async def stream(
        self, s: ProviderSession, req: GenerationRequest
    ) -> AsyncIterator[StreamPiece]:
        body = chat_body(req, with_model=True)
        if req.max_tokens is not None:
            body[self.token_field(s.target)] = req.max_tokens
        async for piece in stream_chat(
            s,
            f"{self.base_url(s.target)}/chat/completions",
            headers=self.headers(s.target),
            body=body,
            classify=classify,
        ):
            yield piece
