"""Property tests of path and form decoding."""

from __future__ import annotations

from urllib.parse import quote, urlencode

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fakebroker.protocols.http.router import DecodeError, Router, decode_segment, parse_form, split_path

# Text that can be UTF-8 encoded (no lone surrogates).
TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs",)))


@given(TEXT)
def test_a_quoted_segment_decodes_to_itself(text: str) -> None:
    assert decode_segment(quote(text, safe="")) == text


@given(TEXT)
def test_plus_stays_a_plus_in_a_path(text: str) -> None:
    assert decode_segment(quote(text, safe="+")) == text


@given(st.lists(st.tuples(TEXT, TEXT)))
def test_an_encoded_form_parses_back_in_order(pairs: list[tuple[str, str]]) -> None:
    assert parse_form(urlencode(pairs)) == pairs


@given(st.binary())
def test_form_parsing_either_succeeds_or_says_utf8(data: bytes) -> None:
    try:
        parse_form(data)
    except DecodeError as exc:
        assert "UTF-8" in str(exc)


@given(st.lists(st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="/")),
                min_size=1, max_size=5))
def test_split_then_decode_gives_back_the_segments(segments: list[str]) -> None:
    path = "/" + "/".join(quote(s, safe="") for s in segments)
    assert [decode_segment(s) for s in split_path(path)] == segments


def test_router_distinguishes_not_found_from_method_not_allowed() -> None:
    r: Router[str] = Router()
    r.add("GET", "/api/queues/{vhost}", "list")
    r.add("PUT", "/api/queues/{vhost}/{name}", "put")
    assert r.resolve("GET", "/api/queues/%2F") == ("list", {"vhost": "/"})
    assert r.resolve("HEAD", "/api/queues/%2F") == ("list", {"vhost": "/"})
    assert r.resolve("POST", "/api/queues/%2F/q") == ["PUT"]
    assert r.resolve("GET", "/api/nothing") is None
    with pytest.raises(DecodeError):
        r.resolve("GET", "/api/queues/%FF")
