"""Cohere (v1 models and key check, v2 chat), mounted at ``/cohere``."""

from __future__ import annotations

import base64
import uuid
from typing import Any

from fakeprovider.catalog import (
    COHERE_CATALOG,
    COHERE_DECOY,
    COHERE_DEFAULT_PAGE_SIZE,
    CohereModel,
)
from fakeprovider.providers.base import (
    Provider,
    generate,
    positive_int,
    query_int,
    remaining,
    text_of,
)
from fakeprovider.providers.openai import bearer
from fakeprovider.streaming import sse_response, word_chunks
from fakeprovider.wire import Call, Request, Response, json_response

_TRIAL_CALL_LIMIT = 1000


class CohereProvider(Provider):
    name = "cohere"
    prefix = "/cohere"

    def credential(self, req: Request) -> str | None:
        return bearer(req)

    def _models(self, call: Call) -> tuple[CohereModel, ...]:
        return COHERE_DECOY if call.plan.decoy_models else COHERE_CATALOG

    def _find(self, call: Call, name: str) -> CohereModel:
        for m in self._models(call):
            if m.name == name:
                return m
        raise self.fail(
            "not_found",
            call,
            f"model '{name}' not found, make sure the correct "
            "model ID was used and that you have access to the model.",
        )

    def route(self, call: Call) -> Response:
        req = call.req
        path = req.sub_path.rstrip("/") or "/"
        if req.method == "GET" and path == "/v1/models":
            return self._list(call)
        if req.method == "GET" and path.startswith("/v1/models/"):
            return json_response(200, self._model_json(self._find(call, path[11:])))
        if req.method == "POST" and path == "/v1/check-api-key":
            return json_response(
                200,
                {"valid": True, "organization_id": "fake-org-0001", "owner_id": "fake-owner-0001"},
            )
        if req.method == "POST" and path == "/v2/chat":
            return self._chat(call)
        raise self.fail("no_route", call)

    def _list(self, call: Call) -> Response:
        req = call.req
        try:
            size = query_int(req, "page_size", COHERE_DEFAULT_PAGE_SIZE, 1, 1000)
            token = req.query.get("page_token")
            start = int(base64.urlsafe_b64decode(token.encode()).decode()) if token else 0
        except (ValueError, UnicodeDecodeError):
            raise self.fail(
                "bad_request", call, "invalid request: invalid page_size or page_token"
            ) from None
        models = list(self._models(call))
        endpoint = req.query.get("endpoint")
        if endpoint:
            models = [m for m in models if endpoint in m.endpoints]
        page = models[start : start + size]
        payload: dict[str, Any] = {"models": [self._model_json(m) for m in page]}
        if start + size < len(models):
            payload["next_page_token"] = base64.urlsafe_b64encode(
                str(start + size).encode()
            ).decode()
        return json_response(200, payload)

    @staticmethod
    def _model_json(m: CohereModel) -> dict[str, Any]:
        return {
            "name": m.name,
            "endpoints": list(m.endpoints),
            "finetuned": False,
            "context_length": m.context_length,
            "tokenizer_url": f"https://storage.googleapis.com/cohere-public/tokenizers/{m.name}"
            ".json",
            "default_endpoints": list(m.default_endpoints),
            "is_deprecated": m.is_deprecated,
        }

    def _chat(self, call: Call) -> Response:
        body = call.req.json()
        if not isinstance(body, dict):
            raise self.fail("bad_request", call, "invalid request: body is not valid JSON")
        name = body.get("model")
        if not isinstance(name, str) or not name:
            raise self.fail("bad_request", call, "invalid request: model is required")
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise self.fail("bad_request", call, "invalid request: messages must not be empty")
        model = self._find(call, name)
        if "chat" not in model.endpoints:
            raise self.fail(
                "bad_request",
                call,
                f"invalid request: model '{name}' is not supported by the chat API",
            )
        try:
            max_tokens = positive_int(body.get("max_tokens"))
        except ValueError:
            raise self.fail(
                "bad_request", call, "invalid request: max_tokens must be a positive integer"
            ) from None
        texts: list[str] = []
        for msg in messages:
            if isinstance(msg, dict):
                texts.extend(text_of(msg.get("content")))
        gen = generate(texts, max_tokens)
        usage = {"input_tokens": gen.input_tokens, "output_tokens": gen.output_tokens}
        finish = "MAX_TOKENS" if gen.truncated else "COMPLETE"
        if body.get("stream") is True:
            return self._chat_stream(call, gen.text, finish, usage)
        return json_response(
            200,
            {
                "id": str(uuid.UUID(call.request_id)),
                "finish_reason": finish,
                "message": {"role": "assistant", "content": [{"type": "text", "text": gen.text}]},
                "usage": {"billed_units": dict(usage), "tokens": dict(usage)},
            },
        )

    @staticmethod
    def _chat_stream(call: Call, text: str, finish: str, usage: dict[str, int]) -> Response:
        """v2 chat stream events (``event:`` name and a ``data`` object with the same
        ``type``): message-start, content-start/-delta/-end, message-end with usage."""
        start = {
            "type": "message-start",
            "id": str(uuid.UUID(call.request_id)),
            "delta": {
                "message": {
                    "role": "assistant",
                    "content": [],
                    "tool_plan": "",
                    "tool_calls": [],
                    "citations": [],
                }
            },
        }
        events: list[tuple[str | None, Any]] = [
            ("message-start", start),
            (
                "content-start",
                {
                    "type": "content-start",
                    "index": 0,
                    "delta": {"message": {"content": {"type": "text", "text": ""}}},
                },
            ),
        ]
        events += [
            (
                "content-delta",
                {
                    "type": "content-delta",
                    "index": 0,
                    "delta": {"message": {"content": {"text": piece}}},
                },
            )
            for piece in word_chunks(text)
        ]
        events += [
            ("content-end", {"type": "content-end", "index": 0}),
            (
                "message-end",
                {
                    "type": "message-end",
                    "delta": {
                        "finish_reason": finish,
                        "usage": {"billed_units": dict(usage), "tokens": dict(usage)},
                    },
                },
            ),
        ]
        return sse_response(events)

    def fault(self, kind: str, call: Call) -> Response:
        # The free key check answers a bad key with 200 {"valid": false}, not an error.
        if kind in ("401", "498") and call.req.sub_path.rstrip("/") == "/v1/check-api-key":
            return json_response(200, {"valid": False, "organization_id": None, "owner_id": None})
        return self.error(kind, call)

    def error(self, kind: str, call: Call, message: str | None = None) -> Response:
        headers: dict[str, str] = {}
        if kind == "missing_key":
            status, msg = 401, "no api key supplied"
        elif kind == "401":
            status, msg = 401, "invalid api token"
        elif kind == "498":
            status, msg = 498, "invalid api token"
        elif kind == "echo":
            status, msg = 401, f"invalid api token: {call.key}"
        elif kind == "403":
            status, msg = 403, "You do not have permission to access this resource"
        elif kind == "not_found":
            status, msg = 404, message or "not found"
        elif kind == "no_route":
            status, msg = 404, f"404 page not found: {call.req.sub_path}"
        elif kind == "bad_request":
            status, msg = 400, message or "invalid request"
        elif kind == "429":
            status = 429
            msg = "You are past the per minute request limit, please wait and try again later."
            headers["retry-after"] = str(call.plan.retry_after)
        elif kind == "quota":
            status = 402
            msg = (
                "Please add or update your payment method at "
                "https://dashboard.cohere.com/billing?tab=payment to continue"
            )
        elif kind == "500":
            status, msg = 500, "internal server error, this has been reported to our developers"
        else:  # 503, 529
            status, msg = 503, "service unavailable, please try again later"
        return json_response(
            status, {"id": str(uuid.UUID(call.request_id)), "message": msg}, headers
        )

    def response_headers(self, call: Call, status: int) -> dict[str, str]:
        headers = {"x-request-id": str(uuid.UUID(call.request_id))}
        if status in (200, 429):
            headers["x-trial-endpoint-call-limit"] = str(_TRIAL_CALL_LIMIT)
            headers["x-trial-endpoint-call-remaining"] = str(
                remaining(call, _TRIAL_CALL_LIMIT, status)
            )
        return headers
