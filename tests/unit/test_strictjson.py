"""The strict body parser: every rule refuses with a MalformedJson (a ValueError), never a
RecursionError, and what it accepts is what json.loads would give."""

from __future__ import annotations

import pytest

from chalicelib import strictjson
from chalicelib.strictjson import MAX_DEPTH, MalformedJson

pytestmark = pytest.mark.unit


def test_plain_json_parses_as_the_standard_library_does():
    raw = b'{"a": [1, 2.5, "x", null, true, {"b": "\\u00e9\\ud83d\\ude00"}], "c": -0}'
    assert strictjson.loads(raw) == {"a": [1, 2.5, "x", None, True, {"b": "\u00e9\U0001F600"}],
                                     "c": 0}


@pytest.mark.parametrize("opener,closer", [("[", "]"), ('{"a":', "}")])
def test_nesting_is_bounded(opener, closer):
    # Given a body nested exactly to the bound, and one level more
    at_bound = opener * MAX_DEPTH + "1" + closer * MAX_DEPTH
    over = opener * (MAX_DEPTH + 1) + "1" + closer * (MAX_DEPTH + 1)
    # Then the first parses and the second is refused by depth
    assert strictjson.loads(at_bound) is not None
    with pytest.raises(MalformedJson, match="deeper than 32"):
        strictjson.loads(over)


def test_twenty_thousand_nested_arrays_is_a_clean_refusal_not_a_recursion_error():
    raw = ("[" * 20_000 + "]" * 20_000).encode()
    assert len(raw) == 40_000
    with pytest.raises(MalformedJson, match="deeper"):
        strictjson.loads(raw)
    # Unbalanced too (nothing closes): still the depth rule, before the parser recurses
    with pytest.raises(MalformedJson):
        strictjson.loads("[" * 20_000)


def test_brackets_inside_strings_do_not_count_as_depth():
    raw = '{"a": "' + "[" * 100 + '\\"[[[", "b": ["]]]]{{{"]}'
    assert strictjson.loads(raw)["b"] == ["]]]]{{{"]


def test_duplicate_keys_are_refused_at_any_level():
    with pytest.raises(MalformedJson, match='duplicate key "name"'):
        strictjson.loads(b'{"name":"dup","name":"dup2"}')
    with pytest.raises(MalformedJson, match='duplicate key "k"'):
        strictjson.loads(b'{"a": [{"k": 1, "k": 1}]}')
    # Keys that differ only after escapes are still the same key
    with pytest.raises(MalformedJson, match="duplicate"):
        strictjson.loads(b'{"n": 1, "\\u006e": 2}')


@pytest.mark.parametrize("raw", ["NaN", "Infinity", "-Infinity", '{"t": NaN}', "[1e999]",
                                 '{"t": -1e400}'])
def test_non_finite_numbers_are_refused(raw):
    with pytest.raises(MalformedJson):
        strictjson.loads(raw)


@pytest.mark.parametrize("raw", [b'{"a": "\xff"}', b'{"a": "\xc3"}', b'"\xed\xa0\x80"',
                                 b'\xfe\xff\x00{\x00}'])
def test_invalid_utf8_is_refused(raw):
    with pytest.raises(MalformedJson, match="UTF-8"):
        strictjson.loads(raw)


@pytest.mark.parametrize("raw", [b'{"a": "\\ud800"}', b'{"a": "x\\udfffy"}',
                                 b'{"\\udc00": 1}', b'["\\ude00\\ud83d"]'])
def test_lone_surrogates_are_refused(raw):
    with pytest.raises(MalformedJson, match="surrogate"):
        strictjson.loads(raw)


def test_byte_order_mark_and_garbage_are_refused_with_a_position():
    with pytest.raises(MalformedJson, match="byte order mark"):
        strictjson.loads("\ufeff{}".encode())
    with pytest.raises(MalformedJson, match="line 1 column 2"):
        strictjson.loads(b"{not json")
    with pytest.raises(MalformedJson):
        strictjson.loads(b"1" * 5000)  # an int over Python's digit limit
