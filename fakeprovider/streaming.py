"""Streamed answers: server-sent events and the AWS event-stream binary framing.

Each provider builds its own events (names and payloads in its real format) and turns them
into a body with ``sse_response`` or ``eventstream_response``. The whole stream is sent in one
body: clients parse it frame by frame either way.
"""

from __future__ import annotations

import binascii
import json
import struct
from collections.abc import Iterable
from typing import Any

from fakeprovider.wire import Response

SSE_CONTENT_TYPE = "text/event-stream; charset=utf-8"
EVENTSTREAM_CONTENT_TYPE = "application/vnd.amazon.eventstream"


def word_chunks(text: str) -> list[str]:
    """The reply cut into word-sized deltas that join back to ``text``."""
    words = text.split(" ")
    return [w + (" " if i < len(words) - 1 else "") for i, w in enumerate(words)]


def sse_bytes(events: Iterable[tuple[str | None, Any]], *, line_end: str = "\n") -> bytes:
    """``event: name`` (when named) and ``data: <json or text>`` per event, blank-line ended."""
    out: list[str] = []
    for name, data in events:
        if name is not None:
            out.append(f"event: {name}{line_end}")
        text = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
        out.append(f"data: {text}{line_end}{line_end}")
    return "".join(out).encode()


def sse_response(
    events: Iterable[tuple[str | None, Any]],
    headers: dict[str, str] | None = None,
    *,
    line_end: str = "\n",
) -> Response:
    out = {"Content-Type": SSE_CONTENT_TYPE, "Cache-Control": "no-cache"}
    out.update(headers or {})
    return Response(200, sse_bytes(events, line_end=line_end), out)


def _string_header(name: str, value: str) -> bytes:
    raw_name, raw_value = name.encode(), value.encode()
    # Header value type 7 = string, with a 2-byte length.
    return (
        struct.pack(">B", len(raw_name))
        + raw_name
        + b"\x07"
        + struct.pack(">H", len(raw_value))
        + raw_value
    )


def eventstream_message(headers: dict[str, str], payload: bytes) -> bytes:
    """One ``application/vnd.amazon.eventstream`` message: prelude, headers, payload, CRCs."""
    raw_headers = b"".join(_string_header(k, v) for k, v in headers.items())
    total = 12 + len(raw_headers) + len(payload) + 4
    prelude = struct.pack(">II", total, len(raw_headers))
    prelude_crc = struct.pack(">I", binascii.crc32(prelude) & 0xFFFFFFFF)
    message = prelude + prelude_crc + raw_headers + payload
    return message + struct.pack(">I", binascii.crc32(message) & 0xFFFFFFFF)


def eventstream_event(event_type: str, payload: Any) -> bytes:
    return eventstream_message(
        {
            ":event-type": event_type,
            ":content-type": "application/json",
            ":message-type": "event",
        },
        json.dumps(payload, separators=(",", ":")).encode(),
    )


def eventstream_response(
    events: Iterable[tuple[str, Any]], headers: dict[str, str] | None = None
) -> Response:
    out = {"Content-Type": EVENTSTREAM_CONTENT_TYPE}
    out.update(headers or {})
    return Response(200, b"".join(eventstream_event(name, p) for name, p in events), out)
