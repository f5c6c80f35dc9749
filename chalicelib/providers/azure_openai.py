"""Azure OpenAI (``https://{resource}.openai.azure.com``, key in the ``api-key`` header).

A connection's "model" on Azure is a deployment name, chosen by the user, and deployments can
only be listed through Azure Resource Manager (an ARM token, which a connection does not have).
``GET /openai/models`` proves the key and lists the models the resource may deploy, not the
deployments. So:

* without a probe, ``model_access`` is reported as not verified (``ok`` None) with a detail
  saying so: claiming the deployment exists, or is missing, would both be guesses;
* with a probe (the connection opted in to a paid check), a 1-token chat on
  ``/openai/deployments/{deployment}/chat/completions`` proves it, and a ``DeploymentNotFound``
  answer is reported as the model being unavailable.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from chalicelib.providers.adapter import (
    Adapter,
    Completion,
    GenerationRequest,
    ModelCheck,
    StreamPiece,
    as_dict,
    as_list,
    names,
    paginate,
    secret,
    segment,
)
from chalicelib.providers.base import ProviderError, Target
from chalicelib.providers.classify import ErrorResponse, error
from chalicelib.providers.openai import (
    chat_body,
    error_fields,
    parse_chat,
    post_chat,
    stream_chat,
)
from chalicelib.providers.openai import classify as openai_classify
from chalicelib.providers.session import ProviderSession

DEFAULT_API_VERSION = "2024-10-21"


def classify(resp: ErrorResponse) -> ProviderError:
    """Azure errors: ``{"error": {"code", "message"}}``; 401 carries ``code: "401"``."""
    code, _ = error_fields(resp.body)
    if code in ("DeploymentNotFound", "OperationNotSupported") or (
        resp.status == 404 and resp.model_call
    ):
        return error("model_not_available", resp)
    if code == "401":
        return error("invalid_api_key", resp)
    return openai_classify(resp)


def _chat_capable(entry: dict[str, object]) -> bool:
    capabilities = entry.get("capabilities")
    if isinstance(capabilities, dict) and "chat_completion" in capabilities:
        return capabilities.get("chat_completion") is True
    return True


class AzureOpenAIAdapter(Adapter):
    name = "azure_openai"

    def base_url(self, target: Target) -> str:
        base = super().base_url(target)
        # Users paste the endpoint with or without the /openai (or /openai/v1) suffix.
        for suffix in ("/openai/v1", "/openai"):
            if base.lower().endswith(suffix):
                return base[: -len(suffix)]
        return base

    def headers(self, target: Target) -> dict[str, str]:
        return {"api-key": secret(target, "api_key", "API key")}

    def api_version(self, target: Target) -> str:
        return (target.credentials.get("api_version") or "").strip() or DEFAULT_API_VERSION

    async def list_models(self, s: ProviderSession) -> list[str]:
        """``GET /openai/models``: one page; models with chat capability (when stated)."""
        base = self.base_url(s.target)
        params = {"api-version": self.api_version(s.target)}

        async def page(_: str | None) -> tuple[list[str], str | None]:
            resp = await s.request_json(
                "GET",
                f"{base}/openai/models",
                headers=self.headers(s.target),
                params=params,
                classify=classify,
            )
            data = as_dict(resp.data, "model list")
            items = as_list(data.get("data"), "model list")
            return names(items, "id", "model list", _chat_capable), None

        return await paginate(s, page)

    async def check_model(self, s: ProviderSession, model: str, listed: list[str]) -> ModelCheck:
        return ModelCheck(
            None,
            f"'{model}' is an Azure deployment name; deployments cannot be listed with an API "
            "key, so it is verified only by a test generation (probe).",
        )

    async def generate(self, s: ProviderSession, req: GenerationRequest) -> Completion:
        resp = await post_chat(
            s,
            f"{self.base_url(s.target)}/openai/deployments/{segment(req.model)}/chat/completions",
            headers=self.headers(s.target),
            params={"api-version": self.api_version(s.target)},
            body=chat_body(req, with_model=False),
            max_tokens=req.max_tokens,
            token_field="max_tokens",
            classify=classify,
        )
        return parse_chat(resp, req.model)

    async def stream(
        self, s: ProviderSession, req: GenerationRequest
    ) -> AsyncIterator[StreamPiece]:
        body = chat_body(req, with_model=False)
        if req.max_tokens is not None:
            body["max_tokens"] = req.max_tokens
        async for piece in stream_chat(
            s,
            f"{self.base_url(s.target)}/openai/deployments/{segment(req.model)}/chat/completions",
            headers=self.headers(s.target),
            params={"api-version": self.api_version(s.target)},
            body=body,
            classify=classify,
        ):
            yield piece
