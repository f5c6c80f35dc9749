"""Anthropic Messages API, mounted at ``/anthropic``."""

from __future__ import annotations

import datetime as dt
from typing import Any

from fakeprovider.catalog import ANTHROPIC_CATALOG, ANTHROPIC_DECOY, AnthropicModel
from fakeprovider.providers.base import (
    REQUEST_LIMIT,
    TOKEN_LIMIT,
    Generation,
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


class AnthropicProvider(Provider):
    name = "anthropic"
    prefix = "/anthropic"

    def credential(self, req: Request) -> str | None:
        # x-api-key (what our adapter and older SDKs send), or Authorization: Bearer (what the
        # 2.x SDKs send for an API key as well as for an OAuth token).
        return req.header("x-api-key") or bearer(req)

    def preflight(self, call: Call) -> Response | None:
        if not call.req.header("anthropic-version"):
            return self.error("bad_request", call, "anthropic-version: header is required")
        return None

    def _models(self, call: Call) -> tuple[AnthropicModel, ...]:
        return ANTHROPIC_DECOY if call.plan.decoy_models else ANTHROPIC_CATALOG

    def _find(self, call: Call, model_id: str) -> AnthropicModel:
        for m in self._models(call):
            if m.id == model_id:
                return m
        raise self.fail("not_found", call, f"model: {model_id}")

    def route(self, call: Call) -> Response:
        req = call.req
        path = req.sub_path.rstrip("/") or "/"
        if req.method == "GET" and path == "/v1/models":
            return self._list(call)
        if req.method == "GET" and path.startswith("/v1/models/"):
            return json_response(200, self._model_json(self._find(call, path[11:])))
        if req.method == "POST" and path == "/v1/messages":
            return self._messages(call)
        raise self.fail("no_route", call)

    def _list(self, call: Call) -> Response:
        req = call.req
        try:
            limit = query_int(req, "limit", 20, 1, 1000)
        except ValueError:
            raise self.fail(
                "bad_request", call, "limit: Input should be between 1 and 1000"
            ) from None
        models = list(self._models(call))
        ids = [m.id for m in models]
        after, before = req.query.get("after_id"), req.query.get("before_id")
        for cursor in (after, before):
            if cursor and cursor not in ids:
                raise self.fail("bad_request", call, f"Invalid pagination cursor: {cursor}")
        if after:
            window = models[ids.index(after) + 1 :]
            page, has_more = window[:limit], len(window) > limit
        elif before:
            window = models[: ids.index(before)]
            page, has_more = window[-limit:], len(window) > limit
        else:
            page, has_more = models[:limit], len(models) > limit
        return json_response(
            200,
            {
                "data": [self._model_json(m) for m in page],
                "has_more": has_more,
                "first_id": page[0].id if page else None,
                "last_id": page[-1].id if page else None,
            },
        )

    @staticmethod
    def _model_json(m: AnthropicModel) -> dict[str, Any]:
        return {
            "type": "model",
            "id": m.id,
            "display_name": m.display_name,
            "created_at": m.created_at,
            "lifecycle": "active",
            "deprecated_at": None,
            "retires_at": None,
            "max_input_tokens": 200_000,
            "max_tokens": 64_000,
        }

    def _messages(self, call: Call) -> Response:
        body = call.req.json()
        if not isinstance(body, dict):
            raise self.fail("bad_request", call, "Request body is not valid JSON")
        model_id = body.get("model")
        if not isinstance(model_id, str) or not model_id:
            raise self.fail("bad_request", call, "model: Field required")
        if "max_tokens" not in body:
            raise self.fail("bad_request", call, "max_tokens: Field required")
        try:
            max_tokens = positive_int(body["max_tokens"])
        except ValueError:
            raise self.fail(
                "bad_request", call, "max_tokens: must be greater than or equal to 1"
            ) from None
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise self.fail("bad_request", call, "messages: Field required")
        model = self._find(call, model_id)
        texts = text_of(body.get("system"))
        for msg in messages:
            if not isinstance(msg, dict) or msg.get("role") not in ("user", "assistant"):
                raise self.fail(
                    "bad_request",
                    call,
                    "messages: each message needs a role of 'user' or 'assistant'",
                )
            texts.extend(text_of(msg.get("content")))
        gen = generate(texts, max_tokens)
        if body.get("stream") is True:
            return self._message_stream(call, model.id, gen)
        return json_response(
            200,
            {
                "id": f"msg_fake{call.request_id[:20]}",
                "type": "message",
                "role": "assistant",
                "model": model.id,
                "content": [{"type": "text", "text": gen.text}],
                "stop_reason": "max_tokens" if gen.truncated else "end_turn",
                "stop_sequence": None,
                "usage": {"input_tokens": gen.input_tokens, "output_tokens": gen.output_tokens},
            },
        )

    def _message_stream(self, call: Call, model_id: str, gen: Generation) -> Response:
        """The Messages streaming events: message_start, a text block's start/deltas/stop,
        message_delta (stop reason, output tokens), message_stop; a ping as the real API."""
        message = {
            "id": f"msg_fake{call.request_id[:20]}",
            "type": "message",
            "role": "assistant",
            "model": model_id,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": gen.input_tokens, "output_tokens": 1},
        }
        events: list[tuple[str | None, Any]] = [
            ("message_start", {"type": "message_start", "message": message}),
            (
                "content_block_start",
                {
                    "type": "content_block_start",
                    "index": 0,
                    "content_block": {"type": "text", "text": ""},
                },
            ),
            ("ping", {"type": "ping"}),
        ]
        events += [
            (
                "content_block_delta",
                {
                    "type": "content_block_delta",
                    "index": 0,
                    "delta": {"type": "text_delta", "text": piece},
                },
            )
            for piece in word_chunks(gen.text)
        ]
        events += [
            ("content_block_stop", {"type": "content_block_stop", "index": 0}),
            (
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {
                        "stop_reason": "max_tokens" if gen.truncated else "end_turn",
                        "stop_sequence": None,
                    },
                    "usage": {"output_tokens": gen.output_tokens},
                },
            ),
            ("message_stop", {"type": "message_stop"}),
        ]
        return sse_response(events)

    def error(self, kind: str, call: Call, message: str | None = None) -> Response:
        headers: dict[str, str] = {}
        details: dict[str, Any] | None = None
        if kind == "missing_key":
            status, etype, msg = 401, "authentication_error", "x-api-key header is required"
        elif kind in ("401", "498"):
            status, etype, msg = 401, "authentication_error", "invalid x-api-key"
        elif kind == "echo":
            status, etype = 401, "authentication_error"
            msg = f"invalid x-api-key: {call.key}"
        elif kind == "403":
            status, etype = 403, "permission_error"
            msg = "Your API key does not have permission to use the specified resource."
        elif kind in ("not_found", "no_route"):
            status, etype = 404, "not_found_error"
            msg = message or "Not found"
        elif kind == "bad_request":
            status, etype, msg = 400, "invalid_request_error", message or "Invalid request"
        elif kind == "429":
            status, etype = 429, "rate_limit_error"
            msg = (
                "This request would exceed the rate limit for your organization of 50 "
                "requests per minute. For details, refer to: "
                "https://docs.claude.com/en/api/rate-limits."
            )
            headers["retry-after"] = str(call.plan.retry_after)
        elif kind == "quota":
            status, etype = 429, "rate_limit_error"
            msg = (
                "You have reached your specified workspace API usage limits. You will "
                "regain access on 2099-01-01 at 00:00 UTC."
            )
            details = {"error_code": "enforced_spend_limit_reached"}
        elif kind == "500":
            status, etype, msg = 500, "api_error", "Internal server error"
        elif kind == "529":
            status, etype, msg = 529, "overloaded_error", "Overloaded"
        else:  # 503
            status, etype, msg = 503, "api_error", "Service unavailable"
        error: dict[str, Any] = {"type": etype, "message": msg}
        if details:
            error["details"] = details
        body = {"type": "error", "error": error, "request_id": self._request_id(call)}
        return json_response(status, body, headers)

    @staticmethod
    def _request_id(call: Call) -> str:
        return f"req_011CFake{call.request_id[:20]}"

    def response_headers(self, call: Call, status: int) -> dict[str, str]:
        headers = {
            "request-id": self._request_id(call),
            "anthropic-organization-id": "f4e3d2c1-0000-4000-8000-00000000fa6e",
        }
        if status in (200, 429):
            now = dt.datetime.now(dt.UTC).replace(microsecond=0)
            reset = now + dt.timedelta(seconds=call.plan.retry_after if status == 429 else 60)
            reset_s = reset.isoformat().replace("+00:00", "Z")
            for name, limit in (
                ("requests", REQUEST_LIMIT),
                ("tokens", TOKEN_LIMIT),
                ("input-tokens", TOKEN_LIMIT),
                ("output-tokens", TOKEN_LIMIT // 5),
            ):
                headers[f"anthropic-ratelimit-{name}-limit"] = str(limit)
                headers[f"anthropic-ratelimit-{name}-remaining"] = str(
                    remaining(call, limit, status)
                )
                headers[f"anthropic-ratelimit-{name}-reset"] = reset_s
        return headers
