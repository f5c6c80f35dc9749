"""Google Gemini API (generativelanguage), mounted at ``/google/v1beta``."""

from __future__ import annotations

import base64
from typing import Any

from fakeprovider.catalog import (
    GOOGLE_CATALOG,
    GOOGLE_DECOY,
    GOOGLE_DEFAULT_PAGE_SIZE,
    GoogleModel,
)
from fakeprovider.providers.base import Provider, generate, positive_int, text_of
from fakeprovider.streaming import sse_response, word_chunks
from fakeprovider.wire import Call, Request, Response, json_response

_CONTENT_TYPE = "application/json; charset=UTF-8"
_ERROR_INFO = "type.googleapis.com/google.rpc.ErrorInfo"
_BAD_KEY_MSG = "API key not valid. Please pass a valid API key."


def _page_token(offset: int) -> str:
    return base64.urlsafe_b64encode(f"offset:{offset}".encode()).decode().rstrip("=")


def _offset(token: str) -> int:
    padded = token + "=" * (-len(token) % 4)
    text = base64.urlsafe_b64decode(padded.encode()).decode()
    if not text.startswith("offset:"):
        raise ValueError(token)
    return int(text[len("offset:") :])


class GoogleProvider(Provider):
    name = "google"
    prefix = "/google/v1beta"

    def credential(self, req: Request) -> str | None:
        # The header is preferred; ``?key=`` is what older clients send.
        return req.header("x-goog-api-key") or req.query.get("key") or None

    def _models(self, call: Call) -> tuple[GoogleModel, ...]:
        return GOOGLE_DECOY if call.plan.decoy_models else GOOGLE_CATALOG

    def _find(self, call: Call, name: str, method: str | None = None) -> GoogleModel:
        for m in self._models(call):
            if m.name == name and (method is None or method in m.methods):
                return m
        action = method or "get"
        raise self.fail(
            "not_found",
            call,
            f"{name} is not found for API version v1beta, or is "
            f"not supported for {action}. Call ListModels to see the list of "
            "available models and their supported methods.",
        )

    def route(self, call: Call) -> Response:
        req = call.req
        path = req.sub_path.rstrip("/") or "/"
        if req.method == "GET" and path == "/models":
            return self._list(call)
        if path.startswith("/models/"):
            rest = path[len("/models/") :]
            if req.method == "GET" and ":" not in rest:
                return self._json(200, self._model_json(self._find(call, f"models/{rest}")))
            model, _, method = rest.rpartition(":")
            if req.method == "POST" and method in ("generateContent", "streamGenerateContent"):
                return self._generate(call, f"models/{model}", method == "streamGenerateContent")
        raise self.fail("no_route", call)

    def _json(self, status: int, payload: Any) -> Response:
        return json_response(status, payload, content_type=_CONTENT_TYPE)

    def _list(self, call: Call) -> Response:
        req = call.req
        try:
            size = int(req.query.get("pageSize") or 0)
            start = _offset(req.query["pageToken"]) if req.query.get("pageToken") else 0
            if size < 0 or start < 0:
                raise ValueError(size)
        except (ValueError, UnicodeDecodeError):
            raise self.fail("bad_request", call, "Invalid page token or page size.") from None
        size = min(size or GOOGLE_DEFAULT_PAGE_SIZE, 1000)
        models = self._models(call)
        page = models[start : start + size]
        payload: dict[str, Any] = {"models": [self._model_json(m) for m in page]}
        if start + size < len(models):
            payload["nextPageToken"] = _page_token(start + size)
        return self._json(200, payload)

    @staticmethod
    def _model_json(m: GoogleModel) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": m.name,
            "version": m.version,
            "displayName": m.display_name,
            "description": f"{m.display_name} (fakeprovider)",
            "inputTokenLimit": m.input_token_limit,
            "outputTokenLimit": m.output_token_limit,
            "supportedGenerationMethods": list(m.methods),
        }
        if "generateContent" in m.methods:
            out.update({"temperature": 1, "topP": 0.95, "topK": 64, "maxTemperature": 2})
        return out

    def _generate(self, call: Call, name: str, stream: bool = False) -> Response:
        body = call.req.json()
        if not isinstance(body, dict):
            raise self.fail("bad_request", call, "Invalid JSON payload received.")
        contents = body.get("contents")
        if not isinstance(contents, list) or not contents:
            raise self.fail(
                "bad_request", call, "* GenerateContentRequest.contents: contents is not specified"
            )
        model = self._find(call, name, "generateContent")
        texts: list[str] = []
        system = body.get("systemInstruction") or body.get("system_instruction")
        if isinstance(system, dict):
            texts.extend(text_of(system.get("parts")))
        for content in contents:
            if isinstance(content, dict):
                texts.extend(text_of(content.get("parts")))
        config = body.get("generationConfig") or body.get("generation_config") or {}
        try:
            max_tokens = positive_int(
                config.get("maxOutputTokens", config.get("max_output_tokens"))
            )
        except (ValueError, AttributeError):
            raise self.fail(
                "bad_request",
                call,
                "generation_config.max_output_tokens must be a positive integer",
            ) from None
        gen = generate(texts, max_tokens)
        usage = {
            "promptTokenCount": gen.input_tokens,
            "candidatesTokenCount": gen.output_tokens,
            "totalTokenCount": gen.input_tokens + gen.output_tokens,
        }
        version = model.name.removeprefix("models/")
        response_id = f"fake{call.request_id[:18]}"

        def answer(text: str, finish: str | None, usage_now: dict[str, int]) -> dict[str, Any]:
            candidate: dict[str, Any] = {
                "content": {"role": "model", "parts": [{"text": text}]},
                "index": 0,
            }
            if finish:
                candidate["finishReason"] = finish
            return {
                "candidates": [candidate],
                "usageMetadata": usage_now,
                "modelVersion": version,
                "responseId": response_id,
            }

        finish = "MAX_TOKENS" if gen.truncated else "STOP"
        if not stream:
            return self._json(200, answer(gen.text, finish, usage))
        if call.req.query.get("alt") != "sse":
            # Without alt=sse the API streams one JSON array; the SDKs always ask for SSE.
            raise self.fail("bad_request", call, "fakeprovider streams with alt=sse only")
        # Each chunk is a whole GenerateContentResponse; the last carries the finish reason
        # and the final counts. CRLF line ends, as the real API sends.
        pieces = word_chunks(gen.text)
        prompt_only = {"promptTokenCount": gen.input_tokens, "totalTokenCount": gen.input_tokens}
        events: list[tuple[str | None, Any]] = [
            (None, answer(piece, None, prompt_only)) for piece in pieces[:-1]
        ]
        events.append((None, answer(pieces[-1], finish, usage)))
        return sse_response(events, line_end="\r\n")

    def error(self, kind: str, call: Call, message: str | None = None) -> Response:
        details: list[dict[str, Any]] = []
        if kind == "missing_key":
            code, status = 403, "PERMISSION_DENIED"
            msg = (
                "Method doesn't allow unregistered callers (callers without established "
                "identity). Please use API Key or other form of API consumer identity to call "
                "this API."
            )
            details.append(
                {"@type": _ERROR_INFO, "reason": "CONSUMER_INVALID", "domain": "googleapis.com"}
            )
        elif kind in ("401", "498", "echo"):
            code, status = 400, "INVALID_ARGUMENT"
            msg = _BAD_KEY_MSG if kind != "echo" else f"{_BAD_KEY_MSG} Received: {call.key}"
            details += [
                {
                    "@type": _ERROR_INFO,
                    "reason": "API_KEY_INVALID",
                    "domain": "googleapis.com",
                    "metadata": {"service": "generativelanguage.googleapis.com"},
                },
                {
                    "@type": "type.googleapis.com/google.rpc.LocalizedMessage",
                    "locale": "en-US",
                    "message": msg,
                },
            ]
        elif kind == "403":
            code, status = 403, "PERMISSION_DENIED"
            msg = "The caller does not have permission"
        elif kind in ("not_found", "no_route"):
            code, status = 404, "NOT_FOUND"
            msg = message or f"Method not found: {call.req.method} {call.req.sub_path}"
        elif kind == "bad_request":
            code, status, msg = 400, "INVALID_ARGUMENT", message or "Invalid request"
        elif kind == "429":
            code, status = 429, "RESOURCE_EXHAUSTED"
            msg = (
                "You exceeded your current quota, please check your plan and billing "
                "details. Quota exceeded for metric: generate_content_free_tier_requests, "
                "limit: 10. Please retry in 1s."
            )
            details += [
                {
                    "@type": "type.googleapis.com/google.rpc.QuotaFailure",
                    "violations": [
                        {
                            "quotaMetric": "generativelanguage.googleapis.com/"
                            "generate_content_free_tier_requests",
                            "quotaId": "GenerateRequestsPerMinutePerProjectPerModel-FreeTier",
                        }
                    ],
                },
                {
                    "@type": "type.googleapis.com/google.rpc.RetryInfo",
                    "retryDelay": f"{call.plan.retry_after}s",
                },
            ]
        elif kind == "quota":
            code, status = 429, "RESOURCE_EXHAUSTED"
            msg = (
                "You exceeded your current quota, please check your plan and billing "
                "details. For more information on this error, head to: "
                "https://ai.google.dev/gemini-api/docs/rate-limits."
            )
            details.append(
                {
                    "@type": "type.googleapis.com/google.rpc.QuotaFailure",
                    "violations": [{"quotaId": "GenerateRequestsPerDayPerProjectPerModel"}],
                }
            )
        elif kind == "500":
            code, status = 500, "INTERNAL"
            msg = (
                "An internal error has occurred. Please retry or report in "
                "https://developers.generativeai.google/guide/troubleshooting"
            )
        else:  # 503, 529
            code, status = 503, "UNAVAILABLE"
            msg = "The model is overloaded. Please try again later."
        error: dict[str, Any] = {"code": code, "message": msg, "status": status}
        if details:
            error["details"] = details
        headers = {"retry-after": str(call.plan.retry_after)} if kind == "429" else {}
        return json_response(code, {"error": error}, headers, content_type=_CONTENT_TYPE)
