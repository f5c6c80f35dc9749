"""Fault directives: parsing, and what a directive means for one request.

A directive is one or more parts joined by ``.``, e.g. ``429``, ``503x2``, ``lat100.429x1``.
Parts:

=============  ===============================================================================
``ok``         healthy
``401``        bad key, in the provider's format (Google: 400 API_KEY_INVALID; Bedrock: 403
               UnrecognizedClientException)
``403``        permission denied (Bedrock AccessDeniedException)
``404``        the key only sees legacy models: listings work but lack every catalog model,
               model-specific calls answer not found
``429``        rate limited with ``retry-after: 1``; ``429ra<N>`` sets retry-after to N seconds
``quota``      out of credit (OpenAI insufficient_quota, Anthropic enforced_spend_limit_reached,
               Cohere 402, Google RESOURCE_EXHAUSTED without RetryInfo, Azure 429
               insufficient_quota, Bedrock AccessDeniedException INVALID_PAYMENT_INSTRUMENT)
``500``        internal error
``503``        unavailable
``529``        Anthropic overloaded_error (529); other providers 503
``498``        Cohere invalid token (498); other providers as ``401``
``slow<ms>``   answer correctly after ``ms`` milliseconds
``lat<ms>``    constant added latency (benchmarks); same mechanics as ``slow``
``hang``       read the request and never answer until the client gives up
``reset``      close the TCP connection with RST, no response
``badjson``    200 with a truncated JSON body
``redirect``   302 to the same path on ``127.0.0.2`` (a second listener records followers)
``headroom``   healthy, but rate-limit headers show under 10% remaining
``echo``       the provider's bad-key error, with the full received key in the message
=============  ===============================================================================

Counted form: ``<part>x<N>`` applies the part to requests 1..N only; the count is per
(key, directive string) across all endpoints of the provider, so ``503x2`` fails the first two
requests made with that key, whatever they are, and the third succeeds. Counts are absolute:
in ``429x1.503x3`` request 1 gets 429, requests 2-3 get 503, later ones succeed. When several
parts are active the first failing one wins; ``slow``/``lat`` delays add up.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# Where a directive is found in a credential.
KEY_DIRECTIVE_RE = re.compile(r"fk_([a-z0-9.]+)")

_PART_RE = re.compile(
    r"^(?P<kind>ok|401|403|404|498|500|503|529|quota|hang|reset|badjson|redirect|headroom|echo"
    r"|429(?:ra(?P<ra>\d+))?|slow(?P<slow>\d+)|lat(?P<lat>\d+))(?:x(?P<n>\d+))?$"
)

# Parts that change the answer (as opposed to delays and header tweaks).
FAILING_KINDS = frozenset(
    {
        "401",
        "403",
        "404",
        "429",
        "498",
        "500",
        "503",
        "529",
        "quota",
        "hang",
        "reset",
        "badjson",
        "redirect",
        "echo",
    }
)


class DirectiveError(ValueError):
    """The directive string is not understood."""


@dataclass(frozen=True)
class Part:
    kind: str  # "429", "slow", "lat", "hang", ...
    arg: int | None = None  # retry-after seconds for 429, milliseconds for slow/lat
    count: int | None = None  # the xN suffix


@dataclass(frozen=True)
class Directive:
    text: str
    parts: tuple[Part, ...]

    @property
    def counted(self) -> bool:
        return any(p.count is not None for p in self.parts)


def parse_directive(text: str) -> Directive:
    """Parse ``text`` (e.g. ``lat100.503x2``); raise DirectiveError if any part is unknown."""
    text = text.strip().lower()
    if not text:
        return Directive("ok", (Part("ok"),))
    parts: list[Part] = []
    for raw in text.split("."):
        m = _PART_RE.match(raw)
        if not m:
            raise DirectiveError(f"unknown fault directive part {raw!r} in {text!r}")
        kind = m["kind"]
        arg: int | None = None
        if kind.startswith("429"):
            kind, arg = "429", int(m["ra"] or 1)
        elif kind.startswith("slow"):
            kind, arg = "slow", int(m["slow"])
        elif kind.startswith("lat"):
            kind, arg = "lat", int(m["lat"])
        count = int(m["n"]) if m["n"] is not None else None
        parts.append(Part(kind, arg, count))
    return Directive(text, tuple(parts))


def directive_from_key(key: str | None) -> str | None:
    """The directive embedded in a credential (``...fk_429x1...``), if any."""
    if not key:
        return None
    m = KEY_DIRECTIVE_RE.search(key)
    return m.group(1) if m else None


@dataclass(frozen=True)
class Plan:
    """What to do with one request, after counting."""

    fault: Part | None = None  # the failing part in effect, None = answer normally
    delay_ms: int = 0
    headroom: bool = False

    @property
    def kind(self) -> str:
        return self.fault.kind if self.fault else "ok"

    @property
    def decoy_models(self) -> bool:
        return self.kind == "404"

    @property
    def retry_after(self) -> int:
        if self.fault and self.fault.kind == "429" and self.fault.arg is not None:
            return self.fault.arg
        return 1


def plan_for(directive: Directive, nth: int) -> Plan:
    """The plan for the ``nth`` (1-based) request made under ``directive``."""
    fault: Part | None = None
    delay = 0
    headroom = False
    for part in directive.parts:
        if part.count is not None and nth > part.count:
            continue
        if part.kind in ("slow", "lat"):
            delay += part.arg or 0
        elif part.kind == "headroom":
            headroom = True
        elif part.kind in FAILING_KINDS and fault is None:
            fault = part
    return Plan(fault=fault, delay_ms=delay, headroom=headroom)
