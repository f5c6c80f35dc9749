"""Scrubbing, retry hints and headroom parsing, error dicts."""

from __future__ import annotations

import email.utils
import time

import httpx
import pytest

from chalicelib.providers.base import ERROR_CODES, REMEDIATION, ProviderError
from chalicelib.providers.classify import headroom, retry_after_seconds
from chalicelib.providers.scrub import REDACTED, Scrubber

pytestmark = pytest.mark.unit

SECRET = "sk-proj-Abc123Def456Ghi789Jkl012"


def test_scrubber_removes_whole_partial_and_encoded_secrets() -> None:
    scrub = Scrubber.for_credentials({"api_key": SECRET, "region": "us-east-1"})
    assert scrub(f"key={SECRET}!") == f"key={REDACTED}!"
    assert SECRET[4:20] not in scrub(f"saw {SECRET[4:20]} here")
    assert scrub("region us-east-1") == "region us-east-1"  # configuration is not secret
    assert scrub("nothing to see") == "nothing to see"
    assert REDACTED in scrub(f"json: {SECRET!r}")


def test_scrubber_collapses_overlapping_runs() -> None:
    scrub = Scrubber([SECRET])
    assert scrub(SECRET + SECRET) == REDACTED


def test_retry_after_forms() -> None:
    assert retry_after_seconds(httpx.Headers({"retry-after": "3"})) == 3.0
    assert retry_after_seconds(httpx.Headers({"retry-after-ms": "1500"})) == 1.5
    date = email.utils.formatdate(time.time() + 20, usegmt=True)
    assert 18 <= (retry_after_seconds(httpx.Headers({"retry-after": date})) or 0) <= 20
    assert retry_after_seconds(httpx.Headers({"retry-after": "soon"})) is None
    assert retry_after_seconds(httpx.Headers({})) is None


def test_headroom_pairs_remaining_with_limit() -> None:
    found = headroom(
        httpx.Headers(
            {
                "anthropic-ratelimit-requests-remaining": "45",
                "anthropic-ratelimit-requests-limit": "50",
                "anthropic-ratelimit-tokens-remaining": "900",
                "anthropic-ratelimit-tokens-limit": "10000",
                "x-ratelimit-remaining-requests": "7",  # no limit header: ignored
            }
        )
    )
    assert found is not None
    assert found.header == "anthropic-ratelimit-tokens-remaining"
    assert found.ratio == pytest.approx(0.09)


def test_every_code_has_remediation() -> None:
    assert set(REMEDIATION) == set(ERROR_CODES)
    for code in ERROR_CODES:
        assert REMEDIATION[code]
        assert ProviderError(code, "m").to_dict()["remediation"] == REMEDIATION[code]
    with pytest.raises(ValueError):
        ProviderError("bogus", "m")
