"""Azure OpenAI, mounted at ``/azure`` (the resource endpoint ``https://{resource}.openai...``)."""

from __future__ import annotations

import re
import uuid
from typing import Any

from fakeprovider.catalog import (
    AZURE_CATALOG,
    AZURE_DECOY,
    AZURE_DECOY_DEPLOYMENTS,
    AZURE_DEPLOYMENTS,
    AzureModel,
)
from fakeprovider.providers.base import REQUEST_LIMIT, TOKEN_LIMIT, Provider, remaining
from fakeprovider.providers.openai import bearer, chat_answer
from fakeprovider.wire import Call, HTTPError, Request, Response, json_response

_API_VERSION_RE = re.compile(r"^\d{4}-\d{2}-\d{2}(-preview)?$")
_DEPLOYMENT_CHAT_RE = re.compile(r"^/openai/deployments/([^/]+)/chat/completions$")
# The data-plane deployments list only exists up to this api-version.
_LAST_DEPLOYMENTS_LIST_VERSION = "2022-12-01"

_MSG_401 = (
    "Access denied due to invalid subscription key or wrong API endpoint. Make sure to "
    "provide a valid key for an active subscription and use a correct regional API "
    "endpoint for your resource."
)


def _err(
    status: int, code: str, message: str, headers: dict[str, str] | None = None, **extra: Any
) -> Response:
    return json_response(status, {"error": {"code": code, "message": message, **extra}}, headers)


class AzureOpenAIProvider(Provider):
    name = "azure_openai"
    prefix = "/azure"

    def credential(self, req: Request) -> str | None:
        # api-key, or an Entra ID bearer token (any token is accepted).
        return req.header("api-key") or bearer(req)

    def _catalog(self, call: Call) -> tuple[AzureModel, ...]:
        return AZURE_DECOY if call.plan.decoy_models else AZURE_CATALOG

    def _deployments(self, call: Call) -> dict[str, str]:
        return AZURE_DECOY_DEPLOYMENTS if call.plan.decoy_models else AZURE_DEPLOYMENTS

    def _api_version(self, call: Call, required: bool = True) -> str | None:
        version = call.req.query.get("api-version")
        if version is None or version == "":
            if required:
                raise HTTPError(_err(404, "404", "Resource not found"))
            return None
        if version not in ("v1", "preview") and not _API_VERSION_RE.match(version):
            raise HTTPError(_err(400, "BadRequest", "API version not supported"))
        return version

    def route(self, call: Call) -> Response:
        req = call.req
        path = req.sub_path.rstrip("/") or "/"
        if req.method == "GET" and path == "/openai/models":
            self._api_version(call)
            return json_response(
                200, {"object": "list", "data": [self._model_json(m) for m in self._catalog(call)]}
            )
        if req.method == "GET" and path.startswith("/openai/models/"):
            self._api_version(call)
            model_id = path[len("/openai/models/") :]
            for m in self._catalog(call):
                if m.id == model_id:
                    return json_response(200, self._model_json(m))
            raise HTTPError(_err(404, "ModelNotFound", f"The model '{model_id}' does not exist."))
        if req.method == "GET" and path == "/openai/deployments":
            version = self._api_version(call) or ""
            if version > _LAST_DEPLOYMENTS_LIST_VERSION:
                raise HTTPError(_err(404, "404", "Resource not found"))
            deployments = [
                {
                    "id": d,
                    "model": m,
                    "object": "deployment",
                    "status": "succeeded",
                    "scale_settings": {"scale_type": "standard"},
                }
                for d, m in self._deployments(call).items()
            ]
            return json_response(200, {"object": "list", "data": deployments})
        chat_path = _DEPLOYMENT_CHAT_RE.match(path)
        if req.method == "POST" and chat_path:
            self._api_version(call)
            return self._chat(call, chat_path.group(1), from_body=False)
        # The v1 surface: OpenAI-shaped, api-version optional, the deployment is the "model".
        if req.method == "GET" and path == "/openai/v1/models":
            self._api_version(call, required=False)
            data = [
                {"id": mod.id, "object": "model", "created": mod.created_at, "owned_by": "system"}
                for mod in self._catalog(call)
            ]
            return json_response(200, {"object": "list", "data": data})
        if req.method == "POST" and path == "/openai/v1/chat/completions":
            self._api_version(call, required=False)
            return self._chat(call, "", from_body=True)
        raise self.fail("no_route", call)

    def _chat(self, call: Call, deployment: str, from_body: bool) -> Response:
        body = call.req.json()
        if not isinstance(body, dict):
            raise self.fail("bad_request", call, "The request body is not valid JSON.")
        if from_body:
            model_field = body.get("model")
            deployment = model_field if isinstance(model_field, str) else ""
        deployments = self._deployments(call)
        if deployment not in deployments:
            raise self.fail("not_found", call, deployment)
        model_id = deployments[deployment]
        model = next((m for m in AZURE_CATALOG + AZURE_DECOY if m.id == model_id), None)
        if model is None or not model.chat:
            raise HTTPError(
                _err(
                    400,
                    "OperationNotSupported",
                    "The chatCompletion operation "
                    "does not work with the specified model, "
                    f"{model_id}. Please choose different model and try again.",
                )
            )
        try:
            return chat_answer(call, model_id, body)
        except ValueError as exc:
            raise self.fail("bad_request", call, str(exc)) from None

    @staticmethod
    def _model_json(m: AzureModel) -> dict[str, Any]:
        return {
            "id": m.id,
            "object": "model",
            "status": "succeeded",
            "created_at": m.created_at,
            "capabilities": {
                "chat_completion": m.chat,
                "completion": False,
                "embeddings": not m.chat,
                "fine_tune": False,
                "inference": True,
            },
            "lifecycle_status": m.lifecycle_status,
            "deprecation": {"inference": m.created_at + 2 * 365 * 86400},
        }

    def error(self, kind: str, call: Call, message: str | None = None) -> Response:
        if kind == "missing_key":
            return _err(
                401,
                "401",
                "Access denied due to missing subscription key. Make sure "
                "to include subscription key when making requests to an API.",
            )
        if kind in ("401", "498"):
            return _err(401, "401", _MSG_401)
        if kind == "echo":
            return _err(401, "401", f"{_MSG_401} Key received: {call.key}")
        if kind == "403":
            return _err(403, "403", "Access denied due to Virtual Network/Firewall rules.")
        if kind == "not_found":
            return _err(
                404,
                "DeploymentNotFound",
                "The API deployment for this resource does "
                "not exist. If you created the deployment within the last 5 minutes, "
                "please wait a moment and try again.",
            )
        if kind == "no_route":
            return _err(404, "404", "Resource not found")
        if kind == "bad_request":
            return _err(
                400,
                "BadRequest",
                message or "Invalid request",
                param=None,
                type="invalid_request_error",
            )
        if kind == "429":
            ra = call.plan.retry_after
            return _err(
                429,
                "429",
                "Requests to the ChatCompletions_Create Operation under "
                "Azure OpenAI API version 2024-10-21 have exceeded token rate limit of "
                f"your current OpenAI S0 pricing tier. Please retry after {ra} second.",
                {"retry-after": str(ra), "retry-after-ms": str(ra * 1000)},
            )
        if kind == "quota":
            return _err(
                429,
                "insufficient_quota",
                "You exceeded your current quota, please check your plan and billing details.",
            )
        if kind == "500":
            return _err(
                500,
                "InternalServerError",
                "The server had an error while processing your request. Sorry about that!",
            )
        return _err(
            503,
            "ServiceUnavailable",
            "The service is temporarily unable to process your request. Please try again later.",
        )

    def response_headers(self, call: Call, status: int) -> dict[str, str]:
        headers = {
            "apim-request-id": str(uuid.UUID(call.request_id)),
            "x-request-id": str(uuid.UUID(call.request_id)),
            "x-ms-region": "East US",
        }
        if status in (200, 429):
            headers.update(
                {
                    "x-ratelimit-limit-requests": str(REQUEST_LIMIT),
                    "x-ratelimit-limit-tokens": str(TOKEN_LIMIT),
                    "x-ratelimit-remaining-requests": str(remaining(call, REQUEST_LIMIT, status)),
                    "x-ratelimit-remaining-tokens": str(remaining(call, TOKEN_LIMIT, status)),
                }
            )
        return headers
