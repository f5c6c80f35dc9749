"""A fake LLM provider server speaking six wire formats, with fault injection.

Test tooling only: it never ships, and nothing under ``chalicelib/`` may import it.
See ``fakeprovider/README.md`` for the key/directive scheme and the control API.
"""

from __future__ import annotations

from fakeprovider.catalog import (
    DEFAULT_MODELS,
    FAKE_BEDROCK_SECRET,
    MODELS,
    PREFIXES,
    base_url_for,
    make_key,
)

__all__ = [
    "DEFAULT_MODELS",
    "FAKE_BEDROCK_SECRET",
    "MODELS",
    "PREFIXES",
    "base_url_for",
    "make_key",
]
