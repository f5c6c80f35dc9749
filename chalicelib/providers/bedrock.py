"""AWS Bedrock through boto3: ``bedrock`` (models, availability) and ``bedrock-runtime`` (Converse).

Clients come from a private ``boto3.session.Session`` holding the user's keys, never the
default session or the environment's credentials. They are built with:

* ``retries={"total_max_attempts": 1}``: botocore's ``max_attempts`` counts *retries*, so
  ``max_attempts: 1`` would still retry once; the runner owns retries;
* ``proxies={}``: botocore reads proxy variables only when ``proxies`` is None;
* ``ignore_configured_endpoint_urls=True``: ``AWS_ENDPOINT_URL*`` variables (a local stage may
  set them for its own AWS fakes) must never redirect a user's keys;
* connect/read timeouts from the remaining budget.

With a base URL override, the URL is checked and its host resolved and vetted right before the
clients are created. botocore resolves the name again when it connects, so unlike the httpx
path this one narrows but cannot close a DNS-rebinding window.

Model access: ``ListFoundationModels`` lists what the region offers, not what the account may
use; ``GetFoundationModelAvailability`` says that. Cross-region inference profile ids
(``us.anthropic...``) are checked through their foundation model id.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Callable
from functools import partial
from typing import Any
from urllib.parse import urlsplit

import httpx

from chalicelib.providers.adapter import (
    Adapter,
    Completion,
    GenerationRequest,
    ModelCheck,
    StreamPiece,
    as_dict,
    as_int,
    as_list,
    names,
    secret,
    split_system,
    sub_dict,
    sub_list,
)
from chalicelib.providers.base import ProviderError, Target
from chalicelib.providers.netguard import vet_host
from chalicelib.providers.session import ProviderSession

_REGION = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d{1,2}$")
_PROFILE_PREFIX = re.compile(r"^(?:us|eu|apac|us-gov|ca|jp|au|global)\.(?=[a-z0-9-]+\.)")
_CONNECT_TIMEOUT_CAP = 10.0
_FINISH = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "guardrail_intervened": "content_filter",
    "content_filtered": "content_filter",
}
_BAD_CREDENTIALS = frozenset(
    {
        "UnrecognizedClientException",
        "InvalidSignatureException",
        "ExpiredTokenException",
        "ExpiredToken",
        "InvalidClientTokenId",
        "IncompleteSignature",
        "MissingAuthenticationTokenException",
        "SignatureDoesNotMatch",
    }
)
_UNAVAILABLE = frozenset(
    {
        "InternalServerException",
        "ServiceUnavailableException",
        "ServiceUnavailable",
        "ModelNotReadyException",
        "InternalFailure",
    }
)


def _status_code(status: int | None) -> str:
    if status is not None and 300 <= status < 400:
        return "blocked_endpoint"
    if status in (401, 403):
        return "invalid_api_key" if status == 401 else "permission_denied"
    if status == 429:
        return "rate_limited"
    if status is not None and status >= 500:
        return "provider_unavailable"
    return "bad_response"


def classify(exc: Exception, *, model_call: bool) -> ProviderError | None:
    """botocore exceptions to ProviderError; the AWS error code is ``Error.Code``
    (botocore takes it from ``x-amzn-ErrorType``)."""
    from botocore.exceptions import (
        BotoCoreError,
        ClientError,
        ConnectTimeoutError,
        EndpointConnectionError,
        HTTPClientError,
        ParamValidationError,
        ReadTimeoutError,
    )

    if isinstance(exc, ClientError):
        err = exc.response.get("Error") or {}
        meta = exc.response.get("ResponseMetadata") or {}
        code = str(err.get("Code") or "").split(":", 1)[0]
        status = meta.get("HTTPStatusCode") if isinstance(meta.get("HTTPStatusCode"), int) else None
        message = " ".join(str(err.get("Message") or f"AWS error {code or status}").split())
        kwargs: dict[str, Any] = {"http_status": status}
        if code in _BAD_CREDENTIALS:
            result = "invalid_api_key"
        elif code == "AccessDeniedException" and "INVALID_PAYMENT_INSTRUMENT" in message:
            result = "quota_exhausted"
        elif code == "AccessDeniedException":
            result = "model_not_available" if model_call else "permission_denied"
        elif code == "ResourceNotFoundException":
            result = "model_not_available" if model_call else "provider_unavailable"
            kwargs["retryable"] = False
        elif code == "ValidationException" and model_call and "model" in message.lower():
            result = "model_not_available"
        elif code in ("ThrottlingException", "TooManyRequestsException"):
            result = "rate_limited"
        elif code == "ServiceQuotaExceededException":
            result = "quota_exhausted"
        elif code == "ModelTimeoutException":
            result = "timeout"
        elif code in _UNAVAILABLE:
            result = "provider_unavailable"
        else:
            result = _status_code(status)
        if result == "blocked_endpoint":
            message = "The endpoint answered with a redirect; redirects are never followed."
        elif result == "bad_response":
            message = f"The request was rejected ({code or status}): {message}"
            kwargs["retryable"] = False
        return ProviderError(result, message, **kwargs)
    if isinstance(exc, ConnectTimeoutError):
        return ProviderError("timeout", "Timed out connecting to AWS Bedrock.")
    if isinstance(exc, ReadTimeoutError):
        return ProviderError("timeout", "AWS Bedrock did not answer in time.")
    if isinstance(exc, EndpointConnectionError | HTTPClientError):
        return ProviderError("network_error", f"Could not reach AWS Bedrock: {exc}")
    if isinstance(exc, ParamValidationError):
        code = "model_not_available" if model_call else "bad_response"
        return ProviderError(code, f"AWS rejected the request: {exc}", retryable=False)
    if isinstance(exc, BotoCoreError):
        return ProviderError("bad_response", f"AWS Bedrock call failed: {exc}", retryable=False)
    return None


def create_clients(target: Target, endpoint_url: str | None, timeout: float) -> tuple[Any, Any]:
    """The ``bedrock`` and ``bedrock-runtime`` clients for the target's keys and region."""
    import boto3.session
    from botocore.config import Config

    region = target.credentials.get("region", "").strip()
    session = boto3.session.Session(
        aws_access_key_id=secret(target, "access_key_id", "AWS access key id"),
        aws_secret_access_key=secret(target, "secret_access_key", "AWS secret access key"),
        aws_session_token=(target.credentials.get("session_token") or "").strip() or None,
        region_name=region,
    )
    config = Config(
        region_name=region,
        retries={"total_max_attempts": 1, "mode": "standard"},
        connect_timeout=min(timeout, _CONNECT_TIMEOUT_CAP),
        read_timeout=timeout,
        proxies={},
        ignore_configured_endpoint_urls=True,
    )
    return (
        session.client("bedrock", endpoint_url=endpoint_url, config=config),
        session.client("bedrock-runtime", endpoint_url=endpoint_url, config=config),
    )


def foundation_model_id(model: str) -> str:
    """``us.anthropic.claude...`` -> ``anthropic.claude...``; an ARN -> its model id."""
    if model.startswith("arn:"):
        model = model.rsplit("/", 1)[-1]
    return _PROFILE_PREFIX.sub("", model)


def _text_output(entry: dict[str, Any]) -> bool:
    outputs = entry.get("outputModalities")
    return not isinstance(outputs, list) or "TEXT" in outputs


class BedrockAdapter(Adapter):
    name = "bedrock"

    def __init__(self) -> None:
        self._clients: tuple[Any, Any] | None = None

    def base_url(self, target: Target) -> str:
        return target.base_url.strip().rstrip("/")  # "" = AWS endpoints for the region

    async def _get_clients(self, s: ProviderSession) -> tuple[Any, Any]:
        if self._clients is not None:
            return self._clients
        target = s.target
        region = target.credentials.get("region", "").strip()
        if not _REGION.match(region):
            raise ProviderError(
                "invalid_api_key", "The connection needs a valid AWS region such as us-east-1."
            )
        secret(target, "access_key_id", "AWS access key id")
        secret(target, "secret_access_key", "AWS secret access key")
        endpoint = self.base_url(target) or None
        if endpoint:
            s.check_url(endpoint)
            parts = urlsplit(endpoint)
            port = parts.port or (443 if parts.scheme == "https" else 80)
            try:
                await vet_host(parts.hostname or "", port, allow_hosts=target.allow_hosts)
            except httpx.ConnectError as exc:
                raise ProviderError("network_error", str(exc)) from None
        self._clients = await asyncio.to_thread(
            create_clients, target, endpoint, s.budget.require()
        )
        return self._clients

    async def _call(
        self, s: ProviderSession, fn: Callable[[], Any], *, model_call: bool
    ) -> dict[str, Any]:
        result = await s.call_blocking(fn, classify=partial(classify, model_call=model_call))
        return as_dict(result, "AWS answer")

    async def list_models(self, s: ProviderSession) -> list[str]:
        """``ListFoundationModels`` (one page by design); models with text output."""
        control, _ = await self._get_clients(s)
        data = await self._call(s, control.list_foundation_models, model_call=False)
        items = as_list(data.get("modelSummaries"), "model summaries")
        return names(items, "modelId", "model summaries", _text_output)

    async def check_model(self, s: ProviderSession, model: str, listed: list[str]) -> ModelCheck:
        """``GetFoundationModelAvailability``: authorized, entitled and offered in the region.

        Without permission for that call, fall back to the listing and say access is unverified.
        """
        control, _ = await self._get_clients(s)
        model_id = foundation_model_id(model)
        try:
            data = await self._call(
                s,
                partial(control.get_foundation_model_availability, modelId=model_id),
                model_call=False,
            )
        except ProviderError as err:
            if err.code in ("model_not_available", "provider_unavailable") and not err.retryable:
                return ModelCheck(False, f"'{model}' is not offered in this region.")
            if err.code == "bad_response" and err.http_status == 400:
                return ModelCheck(False, f"'{model}' is not a known Bedrock model: {err.message}")
            if err.code != "permission_denied":
                raise
            listed_here = model_id in listed or model in listed
            return ModelCheck(
                listed_here,
                ("Listed in the region" if listed_here else "Not listed in the region")
                + "; account access not verified (the credentials may not call "
                "bedrock:GetFoundationModelAvailability).",
            )
        problems = []
        if data.get("authorizationStatus") != "AUTHORIZED":
            problems.append("the credentials are not authorized to use it")
        if data.get("entitlementAvailability") != "AVAILABLE":
            problems.append("model access is not enabled for the account")
        if data.get("regionAvailability") != "AVAILABLE":
            problems.append("it is not available in this region")
        if problems:
            return ModelCheck(False, f"'{model}': " + "; ".join(problems) + ".")
        return ModelCheck(True, "Authorized and available in the region.")

    @staticmethod
    def _converse_args(req: GenerationRequest) -> dict[str, Any]:
        system, rest = split_system(req.messages)
        kwargs: dict[str, Any] = {
            "modelId": req.model,
            "messages": [{"role": m.role, "content": [{"text": m.content}]} for m in rest],
        }
        if system is not None:
            kwargs["system"] = [{"text": system}]
        inference: dict[str, Any] = {}
        if req.max_tokens is not None:
            inference["maxTokens"] = req.max_tokens
        if req.temperature is not None:
            inference["temperature"] = req.temperature
        if inference:
            kwargs["inferenceConfig"] = inference
        return kwargs

    async def generate(self, s: ProviderSession, req: GenerationRequest) -> Completion:
        """Converse: system messages into ``system``, limits into ``inferenceConfig``."""
        _, runtime = await self._get_clients(s)
        kwargs = self._converse_args(req)
        data = await self._call(s, partial(runtime.converse, **kwargs), model_call=True)
        output = as_dict(data.get("output"), "converse output")
        content = sub_list(sub_dict(output, "message"), "content")
        text = "".join(
            c["text"] for c in content if isinstance(c, dict) and isinstance(c.get("text"), str)
        )
        usage = sub_dict(data, "usage")
        request_id = sub_dict(data, "ResponseMetadata").get("RequestId")
        return Completion(
            text=text,
            model=req.model,
            finish_reason=_FINISH.get(str(data.get("stopReason")), "other"),
            input_tokens=as_int(usage.get("inputTokens")),
            output_tokens=as_int(usage.get("outputTokens")),
            request_id=request_id if isinstance(request_id, str) else None,
        )

    async def stream(
        self, s: ProviderSession, req: GenerationRequest
    ) -> AsyncIterator[StreamPiece]:
        """ConverseStream: opening the stream is retried like any call; its events (text in
        ``contentBlockDelta``, ``messageStop``, usage in ``metadata``) are read after that,
        in a thread, and never retried."""
        _, runtime = await self._get_clients(s)
        opened = await self._call(
            s, partial(runtime.converse_stream, **self._converse_args(req)), model_call=True
        )
        request_id = sub_dict(opened, "ResponseMetadata").get("RequestId")
        yield StreamPiece(request_id=request_id if isinstance(request_id, str) else None)
        try:
            async with asyncio.timeout(s.budget.require()):
                events = await asyncio.to_thread(list, opened["stream"])
        except TimeoutError:
            raise s.budget.exhausted_error() from None
        except Exception as exc:
            err = classify(exc, model_call=True)
            if err is None:
                raise
            raise err from None
        for event in events:
            if not isinstance(event, dict):
                continue
            if "contentBlockDelta" in event:
                delta = sub_dict(sub_dict(event, "contentBlockDelta"), "delta")
                if isinstance(delta.get("text"), str):
                    yield StreamPiece(text=delta["text"])
            elif "messageStop" in event:
                stop = sub_dict(event, "messageStop").get("stopReason")
                yield StreamPiece(finish_reason=_FINISH.get(str(stop), "other"))
            elif "metadata" in event:
                usage = sub_dict(sub_dict(event, "metadata"), "usage")
                yield StreamPiece(
                    input_tokens=as_int(usage.get("inputTokens")),
                    output_tokens=as_int(usage.get("outputTokens")),
                )
