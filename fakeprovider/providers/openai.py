"""OpenAI (and every OpenAI-compatible provider), mounted at ``/openai/v1``."""

from __future__ import annotations

import time
from typing import Any

from fakeprovider.catalog import OPENAI_CATALOG, OPENAI_DECOY, OpenAIModel
from fakeprovider.providers.base import (
    REQUEST_LIMIT,
    TOKEN_LIMIT,
    Generation,
    Provider,
    generate,
    positive_int,
    remaining,
    text_of,
)
from fakeprovider.streaming import sse_response, word_chunks
from fakeprovider.wire import Call, Request, Response, json_response


def bearer(req: Request) -> str | None:
    value = req.header("Authorization")
    if not value:
        return None
    scheme, _, token = value.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def partly_redacted(key: str) -> str:
    """How OpenAI quotes a wrong key back: the start and the last 4 characters."""
    if len(key) < 12:
        return "*" * len(key)
    return key[:3] + "*" * (len(key) - 7) + key[-4:]


def chat_answer(call: Call, model_name: str, body: dict[str, Any]) -> Response:
    """The answer to a chat completion request: one object, or chunks when ``stream`` is set.

    Raises ValueError when the request is malformed.
    """
    if body.get("stream") is True:
        return chat_completion_stream(call, model_name, body)
    return json_response(200, chat_completion(call, model_name, body))


def _chat_generation(body: dict[str, Any]) -> Generation:
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise ValueError("'messages' must be a non-empty array")
    texts: list[str] = []
    for msg in messages:
        if not isinstance(msg, dict) or "role" not in msg:
            raise ValueError("each message needs a 'role'")
        texts.extend(text_of(msg.get("content")))
    try:
        max_tokens = positive_int(body.get("max_completion_tokens", body.get("max_tokens")))
    except ValueError:
        raise ValueError("'max_tokens' must be a positive integer") from None
    return generate(texts, max_tokens)


def chat_completion(call: Call, model_name: str, body: dict[str, Any]) -> dict[str, Any]:
    """A chat.completion object answering ``body`` (already validated as a dict)."""
    gen = _chat_generation(body)
    return {
        "id": f"chatcmpl-{call.request_id[:24]}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model_name,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": gen.text, "refusal": None},
                "logprobs": None,
                "finish_reason": "length" if gen.truncated else "stop",
            }
        ],
        "usage": {
            "prompt_tokens": gen.input_tokens,
            "completion_tokens": gen.output_tokens,
            "total_tokens": gen.input_tokens + gen.output_tokens,
        },
        "system_fingerprint": "fp_fakeprovider",
    }


def chat_completion_stream(call: Call, model_name: str, body: dict[str, Any]) -> Response:
    """``chat.completion.chunk`` events, then ``data: [DONE]``; usage in a last chunk with no
    choices when ``stream_options.include_usage`` asks for it (as OpenAI does)."""
    gen = _chat_generation(body)
    options = body.get("stream_options")
    with_usage = isinstance(options, dict) and options.get("include_usage") is True
    base = {
        "id": f"chatcmpl-{call.request_id[:24]}",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model_name,
        "system_fingerprint": "fp_fakeprovider",
    }
    extra: dict[str, Any] = {"usage": None} if with_usage else {}

    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        return {**base, "choices": [choice], **extra}

    events: list[tuple[str | None, Any]] = [
        (None, chunk({"role": "assistant", "content": "", "refusal": None}))
    ]
    events += [(None, chunk({"content": piece})) for piece in word_chunks(gen.text)]
    events.append((None, chunk({}, "length" if gen.truncated else "stop")))
    if with_usage:
        usage = {
            "prompt_tokens": gen.input_tokens,
            "completion_tokens": gen.output_tokens,
            "total_tokens": gen.input_tokens + gen.output_tokens,
        }
        events.append((None, {**base, "choices": [], "usage": usage}))
    events.append((None, "[DONE]"))
    return sse_response(events)


class OpenAIProvider(Provider):
    name = "openai"
    prefix = "/openai/v1"

    def credential(self, req: Request) -> str | None:
        return bearer(req)

    def _models(self, call: Call) -> tuple[OpenAIModel, ...]:
        return OPENAI_DECOY if call.plan.decoy_models else OPENAI_CATALOG

    def _find(self, call: Call, model_id: str) -> OpenAIModel:
        for m in self._models(call):
            if m.id == model_id:
                return m
        raise self.fail("not_found", call, model_id)

    def route(self, call: Call) -> Response:
        req = call.req
        path = req.sub_path.rstrip("/") or "/"
        if req.method == "GET" and path == "/models":
            data = [self._model_json(m) for m in self._models(call)]
            return json_response(200, {"object": "list", "data": data})
        if req.method == "GET" and path.startswith("/models/"):
            return json_response(200, self._model_json(self._find(call, path[len("/models/") :])))
        if req.method == "POST" and path == "/chat/completions":
            body = req.json()
            if not isinstance(body, dict):
                raise self.fail(
                    "bad_request", call, "We could not parse the JSON body of your request."
                )
            model_id = body.get("model")
            if not isinstance(model_id, str) or not model_id:
                raise self.fail("bad_request", call, "you must provide a model parameter")
            model = self._find(call, model_id)
            if not model.chat:
                raise self.fail(
                    "bad_request",
                    call,
                    "This is not a chat model and thus not "
                    "supported in the v1/chat/completions endpoint.",
                )
            try:
                return chat_answer(call, model.id, body)
            except ValueError as exc:
                raise self.fail("bad_request", call, str(exc)) from None
        raise self.fail("no_route", call)

    @staticmethod
    def _model_json(m: OpenAIModel) -> dict[str, Any]:
        return {"id": m.id, "object": "model", "created": m.created, "owned_by": m.owned_by}

    def error(self, kind: str, call: Call, message: str | None = None) -> Response:
        key = call.key or ""
        headers: dict[str, str] = {}
        code: str | None = None
        etype = "invalid_request_error"
        if kind == "missing_key":
            status, msg = (
                401,
                (
                    "You didn't provide an API key. You need to provide your API key in an "
                    "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY)."
                ),
            )
        elif kind in ("401", "498", "echo"):
            shown = key if kind == "echo" else partly_redacted(key)
            status, code = 401, "invalid_api_key"
            msg = (
                f"Incorrect API key provided: {shown}. You can find your API key at "
                "https://platform.openai.com/account/api-keys."
            )
        elif kind == "403":
            status, code = 403, "unsupported_country_region_territory"
            msg = "Country, region, or territory not supported"
            etype = "request_forbidden"
        elif kind == "not_found":
            status, code = 404, "model_not_found"
            msg = f"The model `{message}` does not exist or you do not have access to it."
        elif kind == "no_route":
            status = 404
            msg = f"Invalid URL ({call.req.method} /v1{call.req.sub_path})"
        elif kind == "bad_request":
            status, msg = 400, message or "Invalid request"
        elif kind == "429":
            status, code, etype = 429, "rate_limit_exceeded", "requests"
            ra = call.plan.retry_after
            msg = (
                "Rate limit reached for requests in organization org-fakeprovider on "
                f"requests per min (RPM): Limit 500, Used 500, Requested 1. Please try "
                f"again in {ra}s."
            )
            headers["retry-after"] = str(ra)
        elif kind == "quota":
            status, code, etype = 429, "insufficient_quota", "insufficient_quota"
            msg = (
                "You exceeded your current quota, please check your plan and billing "
                "details. For more information on this error, read the docs: "
                "https://platform.openai.com/docs/guides/error-codes/api-errors."
            )
        elif kind == "500":
            status, etype = 500, "server_error"
            msg = "The server had an error while processing your request. Sorry about that!"
        else:  # 503, 529
            status, etype = 503, "server_error"
            msg = "The engine is currently overloaded, please try again later."
        body = {"error": {"message": msg, "type": etype, "param": None, "code": code}}
        return json_response(status, body, headers)

    def response_headers(self, call: Call, status: int) -> dict[str, str]:
        headers = {"x-request-id": f"req_{call.request_id}", "openai-version": "2020-10-01"}
        if status in (200, 429):
            ra = call.plan.retry_after
            headers.update(
                {
                    "x-ratelimit-limit-requests": str(REQUEST_LIMIT),
                    "x-ratelimit-limit-tokens": str(TOKEN_LIMIT),
                    "x-ratelimit-remaining-requests": str(remaining(call, REQUEST_LIMIT, status)),
                    "x-ratelimit-remaining-tokens": str(remaining(call, TOKEN_LIMIT, status)),
                    "x-ratelimit-reset-requests": f"{ra}s" if status == 429 else "6ms",
                    "x-ratelimit-reset-tokens": f"{ra}s" if status == 429 else "0s",
                }
            )
        return headers
