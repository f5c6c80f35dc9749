"""Input validation without AWS: schemas, the field each error names, credential and URL
checks as a non-local stage runs them, masking and If-Match parsing."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from chalicelib.api.http import parse_if_match
from chalicelib.errors import InvalidInput
from chalicelib.providers.netguard import check_url
from chalicelib.services.catalogue import SEED_PROVIDERS
from chalicelib.services.connections import (
    MASK,
    ConnectionCreate,
    ConnectionPatch,
    ConnectionService,
    ImportDocument,
    looks_masked,
    mask,
    name_key,
)
from chalicelib.services.providers import ProviderCreate
from chalicelib.services.validation import parse

pytestmark = pytest.mark.unit

SECRET = "sk-unit-secret-0123456789abcdef"


def _field_of(model: Any, data: Any) -> str:
    with pytest.raises(InvalidInput) as err:
        parse(model, data)
    assert SECRET not in err.value.message
    return str(err.value.field)


def _body(**over: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"name": "n", "provider": "openai", "credentials": {"api_key": SECRET}}
    body.update(over)
    return body


@pytest.mark.parametrize(("over", "field"), [
    ({"name": 1}, "name"),
    ({"name": ""}, "name"),
    ({"name": "x" * 101}, "name"),
    ({"provider": None}, "provider"),
    ({"credentials": [SECRET]}, "credentials"),
    ({"default_model": "two words"}, "default_model"),
    ({"base_url": ""}, "base_url"),
    ({"settings": {"timeout_seconds": "30"}}, "settings.timeout_seconds"),
    ({"settings": {"timeout_seconds": True}}, "settings.timeout_seconds"),
    ({"settings": {"max_tokens": 1.0}}, "settings.max_tokens"),
    ({"settings": {"temperature": "hot"}}, "settings.temperature"),
    ({"settings": {"probe_model_daily": 1}}, "settings.probe_model_daily"),
    ({"settings": {"nope": SECRET}}, "settings.nope"),
    ({"extra": SECRET}, "extra"),
])
def test_create_schema_names_the_bad_field_and_never_echoes_input(over, field):
    assert _field_of(ConnectionCreate, _body(**over)) == field


def test_missing_fields_are_named():
    assert _field_of(ConnectionCreate, {"provider": "openai", "credentials": {}}) == "name"
    assert _field_of(ConnectionCreate, {"name": "n", "credentials": {}}) == "provider"


def test_patch_schema_accepts_partial_bodies_and_refuses_unknown_fields():
    assert parse(ConnectionPatch, {"description": None}).description is None
    assert _field_of(ConnectionPatch, {"owner": "x"}) == "owner"
    assert _field_of(ConnectionPatch, {"settings": {"max_retries": 11}}) == "settings.max_retries"


def test_import_errors_are_indexed():
    doc = {"format": "f", "version": 1, "connections": [
        {"name": "a", "provider": "openai"}, {"name": "b", "provider": "openai", "x": 1}]}
    assert _field_of(ImportDocument, doc) == "connections[1].x"
    doc["connections"] = [{"name": "", "provider": "openai"}]
    assert _field_of(ImportDocument, doc) == "connections[0].name"


@pytest.mark.parametrize(("raw", "version"), [
    ('"v3"', 3), ('W/"v12"', 12), (' "v1" ', 1), ("*", None), (None, None),
])
def test_if_match_parses_our_etags(raw, version):
    assert parse_if_match(raw) == version


@pytest.mark.parametrize("raw", ["v3", '"3"', '"v-1"', '"v3", "v4"', '"va"', ""])
def test_if_match_refuses_anything_else(raw):
    # Malformed matches no version: the service's precondition fails (a 412), after it has
    # checked who may act (issue 16), and the API then names the malformed header.
    from chalicelib.api.http import MALFORMED_IF_MATCH

    assert parse_if_match(raw) == MALFORMED_IF_MATCH


def test_mask_keeps_the_last_four_only_from_twelve_characters():
    assert mask("a" * 11) == MASK
    assert mask("abcdefgh1234") == MASK + "1234"
    assert MASK == "\u2022" * 8
    assert looks_masked(mask(SECRET)) and looks_masked("****1234")
    assert not looks_masked(SECRET)


def test_names_compare_trimmed_and_case_folded():
    assert name_key("  My OpenAI ") == name_key("my openai") == "my openai"
    assert name_key("STRASSE") == name_key("straße")


# -- service checks, with the URL rule of a non-local stage -----------------------------------


def _provider(pid: str) -> Any:
    raw = next(p for p in SEED_PROVIDERS if p["id"] == pid)
    return SimpleNamespace(**raw)


def _service(*, allow_http: bool = False, allow_hosts: frozenset[str] = frozenset()) -> Any:
    def url_check(url: str) -> None:
        check_url(url, allow_hosts=allow_hosts, allow_http=allow_http)

    settings = SimpleNamespace(daily_shards=8, rotation_days=90)
    return ConnectionService(None, None, None, lambda: None, settings, url_check)  # type: ignore[arg-type]


@pytest.mark.parametrize("url", [
    "http://api.example.com/v1",
    "http://127.0.0.1:8080/v1",
    "ftp://api.example.com",
    "https://localhost/v1",
    "https://127.0.0.1/v1",
    "https://169.254.169.254/latest",
    "https://[::ffff:10.0.0.1]/",
    "https://0x7f000001/",
    "https://user:pass@api.example.com/",
])
def test_base_url_outside_the_local_stage_must_be_public_https(url):
    with pytest.raises(InvalidInput) as err:
        _service()._check_base_url(url, _provider("openai"))
    assert err.value.field == "base_url"


def test_base_url_is_normalised_and_required_where_the_provider_says_so():
    svc = _service()
    assert svc._check_base_url("https://api.example.com/v1/", _provider("openai")) == \
        "https://api.example.com/v1"
    assert svc._check_base_url(None, _provider("openai")) is None
    with pytest.raises(InvalidInput) as err:
        svc._check_base_url(None, _provider("custom"))
    assert err.value.field == "base_url"


def test_the_local_allowlist_is_literal():
    local = _service(allow_http=True, allow_hosts=frozenset({"127.0.0.1"}))
    assert local._check_base_url("http://127.0.0.1:9/v1", _provider("custom"))
    for url in ("http://localhost:9/v1", "http://127.0.0.2:9/v1", "http://2130706433:9/"):
        with pytest.raises(InvalidInput):
            local._check_base_url(url, _provider("custom"))


@pytest.mark.parametrize(("creds", "field"), [
    ({}, "credentials.api_key"),
    ({"api_key": 5}, "credentials.api_key"),
    ({"api_key": None}, "credentials.api_key"),
    ({"api_key": "short"}, "credentials.api_key"),
    ({"api_key": SECRET + " "}, "credentials.api_key"),
    ({"api_key": MASK + "cdef"}, "credentials.api_key"),
    ({"api_key": SECRET, "organization_id": "acme"}, "credentials.organization_id"),
    ({"api_key": SECRET, "other": "x"}, "credentials.other"),
])
def test_credentials_are_checked_against_the_provider_fields(creds, field):
    with pytest.raises(InvalidInput) as err:
        _service()._check_credentials(_provider("openai"), creds, require_all=True)
    assert err.value.field == field
    assert SECRET not in err.value.message


def test_credentials_split_into_public_and_secret():
    public, secret = _service()._check_credentials(
        _provider("bedrock"), {"access_key_id": "AKIAEXAMPLEKEY123456",
                               "secret_access_key": "x" * 40, "region": "eu-west-1"},
        require_all=True)
    assert public == {"region": "eu-west-1"}
    assert set(secret) == {"access_key_id", "secret_access_key"}


@pytest.mark.parametrize("region", ["mars-1", "US-EAST-1", "us-east", "us-east-1 ", ""])
def test_bedrock_region_must_look_like_an_aws_region(region):
    with pytest.raises(InvalidInput) as err:
        _service()._check_credentials(_provider("bedrock"), {"region": region},
                                      require_all=False)
    assert err.value.field == "credentials.region"


@pytest.mark.parametrize("region", ["us-east-1", "eu-central-2", "us-gov-west-1",
                                    "ap-southeast-4"])
def test_real_regions_pass(region):
    public, _ = _service()._check_credentials(_provider("bedrock"), {"region": region},
                                              require_all=False)
    assert public == {"region": region}


def test_settings_merge_and_respect_the_provider_temperature_range():
    svc = _service()
    merged = svc._check_settings(_provider("openai"),
                                 parse(ConnectionCreate, _body(settings={"max_tokens": 5}))
                                 .settings, None)
    assert merged == {"timeout_seconds": 30, "max_retries": 3, "max_tokens": 5}
    hot = parse(ConnectionPatch, {"settings": {"temperature": 1.5}}).settings
    assert svc._check_settings(_provider("openai"), hot, merged)["temperature"] == 1.5
    with pytest.raises(InvalidInput) as err:
        svc._check_settings(_provider("anthropic"), hot, merged)
    assert err.value.field == "settings.temperature"
    cleared = parse(ConnectionPatch, {"settings": {"max_tokens": None}}).settings
    assert "max_tokens" not in svc._check_settings(_provider("openai"), cleared, merged)


# -- provider bodies ------------------------------------------------------------------------


def test_every_seed_provider_is_valid():
    for raw in SEED_PROVIDERS:
        parse(ProviderCreate, raw)


@pytest.mark.parametrize(("over", "field"), [
    ({"credential_fields": [{"name": "k", "label": "K", "secret": False}]}, "credential_fields"),
    ({"credential_fields": [{"name": "k", "label": "K", "secret": True}] * 2},
     "credential_fields"),
    ({"base_url": None}, "base_url"),
    ({"base_url": "api.example.com"}, "base_url"),
    ({"adapter": "grpc"}, "adapter"),
])
def test_provider_errors_name_their_field(over, field):
    body = {"id": "acme", "name": "Acme", "adapter": "openai",
            "base_url": "https://api.acme.example",
            "credential_fields": [{"name": "api_key", "label": "Key", "secret": True}], **over}
    assert _field_of(ProviderCreate, body) == field


def test_a_provider_without_base_url_is_fine_when_connections_bring_theirs():
    body = {"id": "acme", "name": "Acme", "adapter": "openai", "base_url_required": True,
            "credential_fields": [{"name": "api_key", "label": "Key", "secret": True}]}
    assert parse(ProviderCreate, body).base_url is None
    bedrock = {**body, "adapter": "bedrock", "base_url_required": False}
    assert parse(ProviderCreate, bedrock).base_url is None
