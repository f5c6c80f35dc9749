"""AWS Bedrock control plane and runtime, both mounted at ``/bedrock``.

Requests are SigV4-verified for real: every access key id starting with ``AKIAFAKE`` has the
secret ``FAKE_BEDROCK_SECRET``; the signing name is ``bedrock`` and the region comes from the
credential scope. A Bedrock API key (``Authorization: Bearer``) is accepted as is.
"""

from __future__ import annotations

import re
import time
import uuid
from typing import Any
from urllib.parse import unquote

from fakeprovider.catalog import (
    BEDROCK_CATALOG,
    BEDROCK_DECOY,
    FAKE_BEDROCK_ACCESS_KEY_PREFIX,
    FAKE_BEDROCK_SECRET,
    BedrockModel,
)
from fakeprovider.providers.base import Provider, generate, positive_int, text_of
from fakeprovider.providers.openai import bearer
from fakeprovider.sigv4 import access_key_of, parse_authorization, signature_matches
from fakeprovider.streaming import eventstream_response, word_chunks
from fakeprovider.wire import Call, HTTPError, Request, Response, json_response

SIGNING_NAME = "bedrock"
DEFAULT_REGION = "us-east-1"
_CORAL = ":http://internal.amazon.com/coral/com.amazon.coral.service/"
_ARN_RE = re.compile(r"^arn:aws[a-z-]*:bedrock:[^:]*:[^:]*:foundation-model/(.+)$")
_PROFILE_PREFIXES = ("us.", "eu.", "apac.", "us-gov.", "global.")


def _err(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> Response:
    out = {"x-amzn-ErrorType": code}
    out.update(headers or {})
    return json_response(status, {"message": message}, out)


class BedrockProvider(Provider):
    name = "bedrock"
    prefix = "/bedrock"

    def credential(self, req: Request) -> str | None:
        auth = req.header("Authorization")
        return access_key_of(auth) or bearer(req)

    def preflight(self, call: Call) -> Response | None:
        value = call.req.header("Authorization") or ""
        call.extra["region"] = DEFAULT_REGION
        if not value.startswith("AWS4-HMAC-SHA256"):
            return None  # a Bedrock API key
        auth = parse_authorization(value)
        if auth is None:
            return _err(
                400,
                "IncompleteSignatureException",
                "Authorization header requires "
                "'Credential', 'Signature' and 'SignedHeaders' parameters.",
            )
        call.extra["region"] = auth.region
        if not auth.access_key.startswith(FAKE_BEDROCK_ACCESS_KEY_PREFIX):
            return self.error("401", call)
        if not signature_matches(call.req, auth, FAKE_BEDROCK_SECRET, SIGNING_NAME):
            return _err(
                403,
                "InvalidSignatureException" + _CORAL,
                "The request signature we calculated does not match the signature you "
                "provided. Check your AWS Secret Access Key and signing method. Consult "
                "the service documentation for details.",
            )
        return None

    # -- models ------------------------------------------------------------------------------

    def _models(self, call: Call) -> tuple[BedrockModel, ...]:
        return BEDROCK_DECOY if call.plan.decoy_models else BEDROCK_CATALOG

    def _find(self, call: Call, model_id: str) -> BedrockModel:
        arn = _ARN_RE.match(model_id)
        if arn:
            model_id = arn.group(1)
        candidates = [model_id] + [
            model_id[len(p) :] for p in _PROFILE_PREFIXES if model_id.startswith(p)
        ]
        for m in self._models(call):
            if m.model_id in candidates:
                return m
        raise HTTPError(
            _err(
                404,
                "ResourceNotFoundException",
                f"Could not resolve the foundation model from the provided model "
                f"identifier {model_id}.",
            )
        )

    def _summary(self, call: Call, m: BedrockModel) -> dict[str, Any]:
        region = call.extra.get("region", DEFAULT_REGION)
        return {
            "modelArn": f"arn:aws:bedrock:{region}::foundation-model/{m.model_id}",
            "modelId": m.model_id,
            "modelName": m.name,
            "providerName": m.provider,
            "inputModalities": list(m.input_modalities),
            "outputModalities": list(m.output_modalities),
            "responseStreamingSupported": m.streaming,
            "customizationsSupported": [],
            "inferenceTypesSupported": ["ON_DEMAND"],
            "modelLifecycle": {"status": m.lifecycle},
        }

    # -- routes ------------------------------------------------------------------------------

    def route(self, call: Call) -> Response:
        req = call.req
        # Route on the raw path: a model id may be an ARN with an encoded "/".
        segments = [unquote(s) for s in req.raw_path[len(self.prefix) :].strip("/").split("/")]
        if req.method == "GET" and segments == ["foundation-models"]:
            return self._list(call)
        if req.method == "GET" and len(segments) == 2 and segments[0] == "foundation-models":
            return json_response(
                200, {"modelDetails": self._summary(call, self._find(call, segments[1]))}
            )
        if (
            req.method == "GET"
            and len(segments) == 2
            and segments[0] == "foundation-model-availability"
        ):
            return self._availability(call, segments[1])
        if (
            req.method == "POST"
            and len(segments) == 3
            and segments[0] == "model"
            and segments[2] in ("converse", "converse-stream")
        ):
            return self._converse(call, segments[1], stream=segments[2] == "converse-stream")
        raise self.fail("no_route", call)

    def _list(self, call: Call) -> Response:
        q = call.req.query
        models = list(self._models(call))
        if q.get("byProvider"):
            models = [m for m in models if m.provider.lower() == q["byProvider"].lower()]
        if q.get("byOutputModality"):
            models = [m for m in models if q["byOutputModality"] in m.output_modalities]
        if q.get("byInferenceType") and q["byInferenceType"] != "ON_DEMAND":
            models = []
        if q.get("byCustomizationType"):
            models = []
        return json_response(200, {"modelSummaries": [self._summary(call, m) for m in models]})

    def _availability(self, call: Call, model_id: str) -> Response:
        m = self._find(call, model_id)
        return json_response(
            200,
            {
                "modelId": m.model_id,
                "agreementAvailability": {
                    "status": "AVAILABLE" if m.authorized else "NOT_AVAILABLE"
                },
                "authorizationStatus": "AUTHORIZED" if m.authorized else "NOT_AUTHORIZED",
                "entitlementAvailability": "AVAILABLE",
                "regionAvailability": "AVAILABLE",
            },
        )

    def _converse(self, call: Call, model_id: str, stream: bool = False) -> Response:
        body = call.req.json()
        if not isinstance(body, dict):
            raise self.fail(
                "bad_request",
                call,
                "Malformed input request, please reformat your input and try again.",
            )
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise self.fail(
                "bad_request",
                call,
                "A conversation must start with a user "
                "message. Try again with a conversation that starts with a user "
                "message.",
            )
        m = self._find(call, model_id)
        if not m.authorized:
            raise HTTPError(
                _err(
                    403,
                    "AccessDeniedException",
                    "You don't have access to the model with the specified model ID.",
                )
            )
        if "TEXT" not in m.output_modalities:
            raise self.fail(
                "bad_request",
                call,
                "This action doesn't support the model that "
                "you provided. Try again with a supported text or chat model.",
            )
        config = body.get("inferenceConfig") or {}
        try:
            max_tokens = positive_int(config.get("maxTokens"))
        except (ValueError, AttributeError):
            raise self.fail(
                "bad_request",
                call,
                "1 validation error detected: Value at "
                "'inferenceConfig.maxTokens' failed to satisfy constraint: Member "
                "must have value greater than or equal to 1",
            ) from None
        texts: list[str] = []
        for block in body.get("system") or []:
            texts.extend(text_of([block]))
        for msg in messages:
            if isinstance(msg, dict):
                texts.extend(text_of(msg.get("content")))
        gen = generate(texts, max_tokens)
        latency_ms = max(1, int((time.monotonic() - call.req.received_at) * 1000))
        stop_reason = "max_tokens" if gen.truncated else "end_turn"
        usage = {
            "inputTokens": gen.input_tokens,
            "outputTokens": gen.output_tokens,
            "totalTokens": gen.input_tokens + gen.output_tokens,
        }
        if stream:
            # ConverseStream: event-stream frames, usage and metrics in the last (metadata).
            events: list[tuple[str, Any]] = [("messageStart", {"role": "assistant"})]
            events += [
                ("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": piece}})
                for piece in word_chunks(gen.text)
            ]
            events += [
                ("contentBlockStop", {"contentBlockIndex": 0}),
                ("messageStop", {"stopReason": stop_reason}),
                ("metadata", {"usage": usage, "metrics": {"latencyMs": latency_ms}}),
            ]
            return eventstream_response(events)
        return json_response(
            200,
            {
                "output": {"message": {"role": "assistant", "content": [{"text": gen.text}]}},
                "stopReason": stop_reason,
                "usage": usage,
                "metrics": {"latencyMs": latency_ms},
            },
        )

    # -- errors ------------------------------------------------------------------------------

    @staticmethod
    def _action(call: Call) -> str:
        path = call.req.sub_path
        if path.startswith("/foundation-model-availability"):
            return "GetFoundationModelAvailability"
        if path.startswith("/foundation-models/"):
            return "GetFoundationModel"
        if path.startswith("/foundation-models"):
            return "ListFoundationModels"
        return "InvokeModel"

    def error(self, kind: str, call: Call, message: str | None = None) -> Response:
        if kind == "missing_key":
            return _err(403, "MissingAuthenticationTokenException", "Missing Authentication Token")
        if kind in ("401", "498", "echo"):
            msg = "The security token included in the request is invalid."
            if kind == "echo":
                msg += f" Access key id: {call.key}"
            return _err(403, "UnrecognizedClientException" + _CORAL, msg)
        if kind == "403":
            action = self._action(call)
            return _err(
                403,
                "AccessDeniedException",
                "User: arn:aws:iam::123456789012:user/"
                f"fakeprovider is not authorized to perform: bedrock:{action} because no "
                f"identity-based policy allows the bedrock:{action} action",
            )
        if kind == "not_found":
            return _err(404, "ResourceNotFoundException", message or "Model not found")
        if kind == "no_route":
            return _err(404, "UnknownOperationException", "Unknown operation")
        if kind == "bad_request":
            return _err(400, "ValidationException", message or "Invalid request")
        if kind == "429":
            return _err(
                429,
                "ThrottlingException",
                "Too many requests, please wait before trying again.",
                {"retry-after": str(call.plan.retry_after)},
            )
        if kind == "quota":
            return _err(
                403,
                "AccessDeniedException",
                "Model access is denied due to "
                "INVALID_PAYMENT_INSTRUMENT:A valid payment instrument must be provided. "
                "Your AWS Marketplace subscription for this model cannot be completed at "
                "this time.",
            )
        if kind == "500":
            return _err(
                500,
                "InternalServerException",
                "The server encountered an internal error while processing the request.",
            )
        return _err(
            503, "ServiceUnavailableException", "Bedrock is unable to process your request."
        )

    def response_headers(self, call: Call, status: int) -> dict[str, str]:
        return {"x-amzn-RequestId": str(uuid.UUID(call.request_id))}
