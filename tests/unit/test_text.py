"""The text rules in one place (chalicelib/services/text.py), without the API around them."""

from __future__ import annotations

import pytest

from chalicelib.services.text import fold, multi_line, single_line

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("a,b", [("Prod", "\uff30\uff52\uff4f\uff44"), ("Prod", "PROD"),
                                 ("Prod", " prod\u00a0"), ("Stra\u00dfe", "STRASSE"),
                                 ("caf\u00e9", "cafe\u0301"), ("x1", "x\u2460")])
def test_lookalikes_fold_to_one_key(a, b):
    assert fold(a) == fold(b)


@pytest.mark.parametrize("a,b", [("Prod", "Prod2"), ("Prod", "Pr od")])
def test_different_names_keep_different_keys(a, b):
    assert fold(a) != fold(b)


def test_single_line_normalises_and_strips():
    assert single_line("  \uff30rod\u3000") == "Prod"
    assert single_line("cafe\u0301") == "caf\u00e9"


@pytest.mark.parametrize("char", [chr(c) for c in [*range(0x20), *range(0x7F, 0xA0)]]
                         + ["\u2028", "\u2029", "\u202a", "\u202b", "\u202c", "\u202d",
                            "\u202e", "\u2066", "\u2067", "\u2068", "\u2069", "\u200b",
                            "\u200c", "\u200d", "\u200e", "\u200f", "\u2060", "\ufeff",
                            "\u061c", "\u180e", "\u3164"])
def test_single_line_refuses_every_control_bidi_and_invisible_character(char):
    with pytest.raises(ValueError, match=f"U\\+{ord(char):04X}|U\\+1160"):
        single_line(f"a{char}b")


def test_multi_line_keeps_line_breaks_only():
    assert multi_line("a\r\nb\rc\nd\n") == "a\nb\nc\nd"
    assert multi_line("") == ""
    for char in ("\t", "\x00", "\x85", "\u2028", "\u202e", "\u200b"):
        with pytest.raises(ValueError):
            multi_line(f"a{char}b")


def test_blank_is_refused_on_single_line():
    for value in ("", " ", "\u3000", "\u00a0"):
        with pytest.raises(ValueError, match="blank"):
            single_line(value)
