"""The fake provider, as each provider's official Python SDK sees it.

Every family is called through its own SDK (pinned in requirements-dev.txt): list models with
pagination, one generation, one streamed generation, and each fault the fake injects. An
answer counts only if the SDK parses it into its own types (strict validation where the SDK
has it) and a fault only if the SDK raises its own error class for it. SDK retries are off so
that a fault is seen once.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from typing import Any

import pytest

from fakeprovider import control
from tests.support.fakes import fake_key

pytestmark = pytest.mark.contract

FAULTS = ("401", "403", "404", "429", "500", "503", "529", "quota")
REPLY = "Hello from fakeprovider. This is a deterministic test reply."
PROMPT = [{"role": "user", "content": "say hi"}]


@pytest.fixture(autouse=True)
def _sdk_warnings_are_failures() -> Iterator[None]:
    # Some SDKs (Cohere's stream parser) skip an event they cannot build with only a warning.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=ResourceWarning)
        yield


# ------------------------------------------------------------------------------ OpenAI


def _openai(fake: Any, directive: str | None = None) -> Any:
    import openai

    return openai.OpenAI(
        api_key=fake_key("openai", directive),
        base_url=fake.url("openai"),
        max_retries=0,
        _strict_response_validation=True,
    )


def test_openai_lists_models(fake_provider: Any) -> None:
    import openai.types

    page = _openai(fake_provider).models.list()
    models = list(page)
    assert all(isinstance(m, openai.types.Model) for m in models)
    assert [m.id for m in models] == list(control.OPENAI_MODELS)


def test_openai_generation(fake_provider: Any) -> None:
    from openai.types.chat import ChatCompletion

    out = _openai(fake_provider).chat.completions.create(
        model="gpt-4o", messages=PROMPT, max_completion_tokens=50
    )
    assert isinstance(out, ChatCompletion)
    assert out.choices[0].message.content == REPLY
    assert out.choices[0].finish_reason == "stop"
    assert out.usage is not None and out.usage.prompt_tokens == 2


def test_openai_streamed_generation(fake_provider: Any) -> None:
    from openai.types.chat import ChatCompletionChunk

    stream = _openai(fake_provider).chat.completions.create(
        model="gpt-4o", messages=PROMPT, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    assert chunks and all(isinstance(c, ChatCompletionChunk) for c in chunks)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == REPLY
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] == "stop"
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 9


def test_openai_stream_helper_accumulates(fake_provider: Any) -> None:
    client = _openai(fake_provider)
    with client.chat.completions.stream(model="gpt-4o", messages=PROMPT) as stream:
        final = stream.get_final_completion()
    assert final.choices[0].message.content == REPLY


def _openai_errors() -> dict[str, Any]:
    import openai

    return {
        "401": openai.AuthenticationError,
        "403": openai.PermissionDeniedError,
        "404": openai.NotFoundError,
        "429": openai.RateLimitError,
        "500": openai.InternalServerError,
        "503": openai.InternalServerError,
        "529": openai.InternalServerError,
        "quota": openai.RateLimitError,
    }


@pytest.mark.parametrize("fault", FAULTS)
def test_openai_faults(fake_provider: Any, fault: str) -> None:
    client = _openai(fake_provider, fault)
    with pytest.raises(_openai_errors()[fault]) as info:
        client.chat.completions.create(model="gpt-4o", messages=PROMPT)
    if fault == "quota":
        assert info.value.code == "insufficient_quota"
    if fault == "404":
        assert info.value.code == "model_not_found"


# ------------------------------------------------------------------------ Azure OpenAI


def _azure(fake: Any, directive: str | None = None, *, strict: bool = True) -> Any:
    import openai

    return openai.AzureOpenAI(
        api_key=fake_key("azure_openai", directive),
        azure_endpoint=fake.url("azure_openai"),
        api_version="2024-10-21",
        max_retries=0,
        _strict_response_validation=strict,
    )


def test_azure_lists_models(fake_provider: Any) -> None:
    import openai.types

    # Azure's /openai/models entries carry created_at, capabilities and lifecycle_status, not
    # OpenAI's created/owned_by, so the SDK's strict mode would refuse the real service too:
    # parsed as users get it (lenient), the entries are still the SDK's Model objects.
    models = list(_azure(fake_provider, strict=False).models.list())
    assert all(isinstance(m, openai.types.Model) for m in models)
    assert [m.id for m in models] == list(control.AZURE_MODELS)


def test_azure_generation(fake_provider: Any) -> None:
    deployment = control.DEFAULT_MODELS["azure_openai"]
    out = _azure(fake_provider).chat.completions.create(model=deployment, messages=PROMPT)
    assert out.choices[0].message.content == REPLY


def test_azure_streamed_generation(fake_provider: Any) -> None:
    deployment = control.DEFAULT_MODELS["azure_openai"]
    stream = _azure(fake_provider).chat.completions.create(
        model=deployment, messages=PROMPT, stream=True
    )
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text == REPLY


@pytest.mark.parametrize("fault", FAULTS)
def test_azure_faults(fake_provider: Any, fault: str) -> None:
    client = _azure(fake_provider, fault)
    with pytest.raises(_openai_errors()[fault]):
        client.chat.completions.create(
            model=control.DEFAULT_MODELS["azure_openai"], messages=PROMPT
        )


# --------------------------------------------------------------------------- Anthropic


def _anthropic(fake: Any, directive: str | None = None) -> Any:
    import anthropic

    return anthropic.Anthropic(
        api_key=fake_key("anthropic", directive),
        base_url=fake.url("anthropic"),
        max_retries=0,
        _strict_response_validation=True,
    )


def test_anthropic_lists_models_page_by_page(fake_provider: Any) -> None:
    from anthropic.types import ModelInfo

    requests_before = len(control.requests(fake_provider.base_url, provider="anthropic"))
    models = list(_anthropic(fake_provider).models.list(limit=3))
    assert all(isinstance(m, ModelInfo) and m.lifecycle == "active" for m in models)
    assert [m.id for m in models] == list(control.ANTHROPIC_MODELS)
    pages = len(control.requests(fake_provider.base_url, provider="anthropic")) - requests_before
    assert pages == -(-len(control.ANTHROPIC_MODELS) // 3)


def test_anthropic_sends_bearer_and_a_current_version(fake_provider: Any) -> None:
    import anthropic

    _anthropic(fake_provider).models.retrieve("claude-sonnet-4-5")
    sent = control.requests(fake_provider.base_url, provider="anthropic", limit=1)[0]["headers"]
    assert sent["authorization"].startswith("Bearer ***")  # redacted in the fake's log
    assert "x-api-key" not in sent
    assert sent["anthropic-version"] == anthropic._constants.ANTHROPIC_API_VERSION


def test_anthropic_generation(fake_provider: Any) -> None:
    from anthropic.types import Message

    out = _anthropic(fake_provider).messages.create(
        model="claude-sonnet-4-5", max_tokens=50, messages=PROMPT
    )
    assert isinstance(out, Message)
    assert out.content[0].type == "text" and out.content[0].text == REPLY
    assert out.stop_reason == "end_turn" and out.usage.output_tokens == 9


def test_anthropic_streamed_generation(fake_provider: Any) -> None:
    from anthropic.types import RawMessageStreamEvent

    client = _anthropic(fake_provider)
    events = list(
        client.messages.create(
            model="claude-sonnet-4-5", max_tokens=50, messages=PROMPT, stream=True
        )
    )
    kinds = [e.type for e in events]
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop"
    assert "content_block_delta" in kinds and "message_delta" in kinds
    assert all(isinstance(e, RawMessageStreamEvent.__args__) for e in events)  # type: ignore[attr-defined]
    with client.messages.stream(
        model="claude-sonnet-4-5", max_tokens=50, messages=PROMPT
    ) as stream:
        final = stream.get_final_message()
    assert final.content[0].text == REPLY  # type: ignore[union-attr]
    assert final.stop_reason == "end_turn" and final.usage.output_tokens == 9


@pytest.mark.parametrize("fault", FAULTS)
def test_anthropic_faults(fake_provider: Any, fault: str) -> None:
    import anthropic

    expected = {
        "401": anthropic.AuthenticationError,
        "403": anthropic.PermissionDeniedError,
        "404": anthropic.NotFoundError,
        "429": anthropic.RateLimitError,
        "500": anthropic.InternalServerError,
        "503": anthropic.ServiceUnavailableError,
        "529": anthropic.OverloadedError,
        # The SDK's own subclass of RateLimitError for details.error_code.
        "quota": anthropic.EnforcedSpendLimitReachedError,
    }[fault]
    with pytest.raises(expected) as info:
        _anthropic(fake_provider, fault).messages.create(
            model="claude-sonnet-4-5", max_tokens=5, messages=PROMPT
        )
    assert type(info.value) is expected


# ------------------------------------------------------------------------------ Cohere


def _cohere(fake: Any, directive: str | None = None) -> Any:
    import cohere

    return cohere.ClientV2(api_key=fake_key("cohere", directive), base_url=fake.url("cohere"))


NO_RETRY: Any = {"max_retries": 0}


def test_cohere_lists_models_page_by_page(fake_provider: Any) -> None:
    from cohere.types import ListModelsResponse

    client = _cohere(fake_provider)
    names: list[str] = []
    token: str | None = None
    pages = 0
    while True:
        page = client.models.list(page_size=3, page_token=token, request_options=NO_RETRY)
        assert isinstance(page, ListModelsResponse)
        names += [m.name for m in page.models or []]
        pages += 1
        token = page.next_page_token
        if not token:
            break
    assert names == list(control.COHERE_MODELS)
    assert pages > 1


def test_cohere_generation(fake_provider: Any) -> None:
    from cohere.v2.types import V2ChatResponse

    out = _cohere(fake_provider).chat(
        model=control.DEFAULT_MODELS["cohere"], messages=PROMPT, request_options=NO_RETRY
    )
    assert isinstance(out, V2ChatResponse)
    assert out.message.content[0].text == REPLY  # type: ignore[index,union-attr]
    assert out.finish_reason == "COMPLETE"
    assert out.usage.tokens.output_tokens == 9  # type: ignore[union-attr]


def test_cohere_streamed_generation(fake_provider: Any) -> None:
    from cohere.v2.types.v2chat_stream_response import (
        ContentDeltaV2ChatStreamResponse,
        MessageEndV2ChatStreamResponse,
        MessageStartV2ChatStreamResponse,
    )

    events = list(
        _cohere(fake_provider).chat_stream(
            model=control.DEFAULT_MODELS["cohere"], messages=PROMPT, request_options=NO_RETRY
        )
    )
    assert isinstance(events[0], MessageStartV2ChatStreamResponse)
    deltas = [e for e in events if isinstance(e, ContentDeltaV2ChatStreamResponse)]
    assert "".join(d.delta.message.content.text for d in deltas) == REPLY  # type: ignore[union-attr]
    end = events[-1]
    assert isinstance(end, MessageEndV2ChatStreamResponse)
    assert end.delta.finish_reason == "COMPLETE"  # type: ignore[union-attr]
    assert end.delta.usage.tokens.output_tokens == 9  # type: ignore[union-attr]


@pytest.mark.parametrize("fault", FAULTS)
def test_cohere_faults(fake_provider: Any, fault: str) -> None:
    import cohere.errors
    from cohere.core.api_error import ApiError

    expected: Any = {
        "401": cohere.errors.UnauthorizedError,
        "403": cohere.errors.ForbiddenError,
        "404": cohere.errors.NotFoundError,
        "429": cohere.errors.TooManyRequestsError,
        "500": cohere.errors.InternalServerError,
        "503": cohere.errors.ServiceUnavailableError,
        "529": cohere.errors.ServiceUnavailableError,
        "quota": ApiError,  # 402: the SDK has no class of its own for it
    }[fault]
    with pytest.raises(expected) as info:
        _cohere(fake_provider, fault).chat(
            model=control.DEFAULT_MODELS["cohere"], messages=PROMPT, request_options=NO_RETRY
        )
    if fault == "quota":
        assert info.value.status_code == 402


# ------------------------------------------------------------------------------ Google


def _google(fake: Any, directive: str | None = None) -> Any:
    from google import genai
    from google.genai import types

    return genai.Client(
        api_key=fake_key("google", directive),
        http_options=types.HttpOptions(
            base_url=fake.base_url + "/google",
            api_version="v1beta",
            retry_options=types.HttpRetryOptions(attempts=1),
        ),
    )


def test_google_lists_models_page_by_page(fake_provider: Any) -> None:
    from google.genai import types

    requests_before = len(control.requests(fake_provider.base_url, provider="google"))
    client = _google(fake_provider)  # held: the client closes its connections when collected
    models = list(client.models.list(config={"page_size": 3}))
    assert all(isinstance(m, types.Model) for m in models)
    assert [m.name for m in models] == list(control.GOOGLE_MODELS)
    pages = len(control.requests(fake_provider.base_url, provider="google")) - requests_before
    assert pages == -(-len(control.GOOGLE_MODELS) // 3)


def test_google_generation(fake_provider: Any) -> None:
    from google.genai import types

    client = _google(fake_provider)
    out = client.models.generate_content(
        model=control.DEFAULT_MODELS["google"], contents="say hi"
    )
    assert isinstance(out, types.GenerateContentResponse)
    assert out.text == REPLY
    assert out.candidates[0].finish_reason == types.FinishReason.STOP  # type: ignore[index]
    assert out.usage_metadata.candidates_token_count == 9  # type: ignore[union-attr]


def test_google_streamed_generation(fake_provider: Any) -> None:
    from google.genai import types

    client = _google(fake_provider)
    chunks = list(
        client.models.generate_content_stream(
            model=control.DEFAULT_MODELS["google"], contents="say hi"
        )
    )
    assert len(chunks) > 1 and all(isinstance(c, types.GenerateContentResponse) for c in chunks)
    assert "".join(c.text or "" for c in chunks) == REPLY
    assert chunks[-1].candidates[0].finish_reason == types.FinishReason.STOP  # type: ignore[index]
    assert chunks[-1].usage_metadata.candidates_token_count == 9  # type: ignore[union-attr]


@pytest.mark.parametrize("fault", FAULTS)
def test_google_faults(fake_provider: Any, fault: str) -> None:
    from google.genai import errors

    # The Gemini API answers a bad key with 400 INVALID_ARGUMENT, not 401.
    expected = {
        "401": (errors.ClientError, 400, "INVALID_ARGUMENT"),
        "403": (errors.ClientError, 403, "PERMISSION_DENIED"),
        "404": (errors.ClientError, 404, "NOT_FOUND"),
        "429": (errors.ClientError, 429, "RESOURCE_EXHAUSTED"),
        "500": (errors.ServerError, 500, "INTERNAL"),
        "503": (errors.ServerError, 503, "UNAVAILABLE"),
        "529": (errors.ServerError, 503, "UNAVAILABLE"),
        "quota": (errors.ClientError, 429, "RESOURCE_EXHAUSTED"),
    }[fault]
    client = _google(fake_provider, fault)
    with pytest.raises(expected[0]) as info:
        client.models.generate_content(
            model=control.DEFAULT_MODELS["google"], contents="say hi"
        )
    assert (info.value.code, info.value.status) == expected[1:]


# ----------------------------------------------------------------------------- Bedrock


def _bedrock(fake: Any, service: str, directive: str | None = None) -> Any:
    import boto3
    from botocore.config import Config

    return boto3.client(
        service,
        region_name="us-east-1",
        endpoint_url=fake.url("bedrock"),
        aws_access_key_id=fake_key("bedrock", directive),
        aws_secret_access_key=control.FAKE_BEDROCK_SECRET,
        config=Config(retries={"total_max_attempts": 1}),
    )


def test_bedrock_lists_models(fake_provider: Any) -> None:
    # ListFoundationModels has no pagination; one call returns the catalogue.
    out = _bedrock(fake_provider, "bedrock").list_foundation_models()
    assert [m["modelId"] for m in out["modelSummaries"]] == list(control.BEDROCK_MODELS)
    assert out["ResponseMetadata"]["HTTPStatusCode"] == 200


def test_bedrock_generation(fake_provider: Any) -> None:
    out = _bedrock(fake_provider, "bedrock-runtime").converse(
        modelId=control.DEFAULT_MODELS["bedrock"],
        messages=[{"role": "user", "content": [{"text": "say hi"}]}],
    )
    assert out["output"]["message"]["content"][0]["text"] == REPLY
    assert out["stopReason"] == "end_turn" and out["usage"]["outputTokens"] == 9


def test_bedrock_streamed_generation(fake_provider: Any) -> None:
    out = _bedrock(fake_provider, "bedrock-runtime").converse_stream(
        modelId=control.DEFAULT_MODELS["bedrock"],
        messages=[{"role": "user", "content": [{"text": "say hi"}]}],
    )
    events = list(out["stream"])
    kinds = [next(iter(e)) for e in events]
    assert kinds[0] == "messageStart" and kinds[-1] == "metadata"
    deltas = [e["contentBlockDelta"]["delta"]["text"] for e in events if "contentBlockDelta" in e]
    text = "".join(deltas)
    assert text == REPLY
    assert events[-2]["messageStop"]["stopReason"] == "end_turn"
    assert events[-1]["metadata"]["usage"]["outputTokens"] == 9


@pytest.mark.parametrize("fault", FAULTS)
def test_bedrock_faults(fake_provider: Any, fault: str) -> None:
    from botocore.exceptions import ClientError

    client = _bedrock(fake_provider, "bedrock-runtime", fault)
    code = {
        "401": "UnrecognizedClientException",
        "403": "AccessDeniedException",
        "404": "ResourceNotFoundException",
        "429": "ThrottlingException",
        "500": "InternalServerException",
        "503": "ServiceUnavailableException",
        "529": "ServiceUnavailableException",
        "quota": "AccessDeniedException",
    }[fault]
    # The modeled exception class where botocore has one (not for UnrecognizedClientException).
    modeled = getattr(client.exceptions, code, ClientError)
    with pytest.raises(modeled) as info:
        client.converse(
            modelId=control.DEFAULT_MODELS["bedrock"],
            messages=[{"role": "user", "content": [{"text": "say hi"}]}],
        )
    assert isinstance(info.value, ClientError)
    assert info.value.response["Error"]["Code"] == code
