"""Tests for the sans-I/O STOMP codec: byte vectors as RabbitMQ 3.10 parses them, malformed input, limits,
round trips and arbitrary splits (hypothesis)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fakebroker.protocols.stomp.codec import Frame, StompDecoder, StompFrameError, encode, escape


def decode(data: bytes, **options: object) -> list[Frame]:
    decoder = StompDecoder(**options)  # type: ignore[arg-type]
    decoder.feed(data)
    frames = list(decoder)
    return frames


def one(data: bytes, **options: object) -> Frame:
    frames = decode(data, **options)
    assert len(frames) == 1, frames
    return frames[0]


def error(data: bytes, **options: object) -> str:
    decoder = StompDecoder(**options)  # type: ignore[arg-type]
    decoder.feed(data)
    with pytest.raises(StompFrameError) as info:
        list(decoder)
    return info.value.reason


# -- well-formed frames ---------------------------------------------------------------------------------
def test_simple_frame() -> None:
    f = one(b"SEND\ndestination:/queue/a\nreceipt:r1\n\nhello\x00")
    assert f.command == "SEND"
    assert f.headers == [("destination", "/queue/a"), ("receipt", "r1")]
    assert f.body == b"hello"
    assert f.get("receipt") == "r1" and f.get("nope") is None and "destination" in f


def test_crlf_line_endings() -> None:
    f = one(b"SEND\r\ndestination:/topic/x\r\nreceipt:crlf\r\n\r\nbody\x00")
    assert f.headers == [("destination", "/topic/x"), ("receipt", "crlf")]
    assert f.body == b"body"


def test_heartbeats_and_trailing_newlines_between_frames() -> None:
    decoder = StompDecoder()
    decoder.feed(b"\n\r\n\n\x00SEND\ndestination:a\n\nx\x00\n\n\r\nSEND\ndestination:b\n\ny\x00\n")
    frames = list(decoder)
    assert [f.get("destination") for f in frames] == ["a", "b"]
    assert decoder.noise == 5 + 4 + 1
    assert decoder.pending_bytes == 0


def test_repeated_header_first_wins() -> None:
    f = one(b"SEND\ndestination:/topic/x\nx-rep:first\nx-rep:second\n\nrep\x00")
    assert f.headers == [("destination", "/topic/x"), ("x-rep", "first")]


def test_escapes_decoded_in_names_and_values() -> None:
    f = one(b"SEND\na\\cb:a\\cb\\nc\\\\d\\re\n\n\x00")
    assert f.headers == [("a:b", "a:b\nc\\d\re")]


def test_value_may_hold_unescaped_colons_and_be_empty() -> None:
    f = one(b"SEND\nurl:http://x:1/\nempty:\n:nameless\n\n\x00")
    assert f.headers == [("url", "http://x:1/"), ("empty", ""), ("", "nameless")]


def test_content_length_body_with_nuls() -> None:
    f = one(b"SEND\ndestination:/topic/nul\ncontent-length:5\n\na\x00b\x00c\x00")
    assert f.body == b"a\x00b\x00c"


def test_content_length_is_trimmed_and_signed() -> None:
    assert one(b"SEND\ncontent-length: +3 \n\nabc\x00").body == b"abc"


def test_content_length_only_read_for_send() -> None:
    # RabbitMQ reads a length for SEND only; another frame's body ends at the first NUL.
    frames = decode(b"ACK\ncontent-length:3\n\na\x00b\x00")
    assert frames[0].body == b"a"


def test_client_mode_reads_content_length_everywhere() -> None:
    f = one(b"MESSAGE\ncontent-length:3\n\na\x00b\x00\n", content_length_commands=None)
    assert f.body == b"a\x00b"


def test_non_utf8_header_bytes_survive() -> None:
    f = one(b"SEND\nreceipt:r\xff\n\n\x00")
    assert encode("RECEIPT", [("receipt-id", f.get("receipt") or "")]) == b"RECEIPT\nreceipt-id:r\xff\n\n\x00\n"


def test_nul_in_command_or_header_is_just_a_byte() -> None:
    f = one(b"SEND\ndestination:/topic/x\nfo\x00o:1\n\nabc\x00")
    assert ("fo\x00o", "1") in f.headers


def test_lowercase_and_unknown_commands_are_frames() -> None:
    # Command names are the session's business ("Bad command"), not the codec's.
    assert one(b"send\n\n\x00").command == "send"


# -- malformed ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"SEND\ndestination /queue/x\n\nbody\x00", "header_no_value"),
        (b"SEND\ndestination:/topic/x\nfoo:a\\tb\n\nbody\x00", "bad_escape"),
        (b"SEND\nfoo\\x:1\n\n\x00", "bad_escape"),
        (b"SEND\nfoo:trailing\\\n\n\x00", "bad_escape"),
        (b"SEND\ndestination:/topic/x\ncontent-length:3\n\nabcdef\x00", "content_length_mismatch"),
        (b"SEND\ndestination:/topic/x\ncontent-length:abc\n\nabc\x00", "bad_content_length"),
        (b"SEND\ncontent-length:\n\n\x00", "bad_content_length"),
        (b"SEND\ndestination:/topic/x\ncontent-length:-1\n\nabc\x00", "negative_content_length"),
        (b"SEND\rdestination:/topic/x\n\nabc\x00", "unexpected_chars_in_command"),
        (b"SEND\ndest\rination:x\n\n\x00", "unexpected_chars_in_header"),
        (b"\rX", "unexpected_chars_between_frames"),
    ],
)
def test_malformed(data: bytes, reason: str) -> None:
    assert error(data) == reason


def test_errors_are_found_before_the_line_ends() -> None:
    # RabbitMQ's parser closes as soon as it sees the bad bytes; so does this decoder.
    assert error(b"SEND\nfoo:a\\t") == "bad_escape"
    assert error(b"SEND\nfo\ro") == "unexpected_chars_in_header"


def test_broken_decoder_stays_broken() -> None:
    decoder = StompDecoder()
    decoder.feed(b"SEND\nbad\n\n\x00")
    with pytest.raises(StompFrameError):
        list(decoder)
    decoder.feed(b"SEND\n\n\x00")
    with pytest.raises(StompFrameError):
        list(decoder)


@pytest.mark.parametrize(
    ("data", "options", "reason"),
    [
        (b"SEND\n" + b"h%d:v\n" * 3 + b"\n\x00", {"max_headers": 2}, "max_headers"),
        (b"SEND\nh:" + b"v" * 20 + b"\n\n\x00", {"max_header_length": 10}, "max_header_length"),
        (b"SEND\nh:" + b"v" * 20, {"max_header_length": 10}, "max_header_length"),
        (b"SEND\n\n" + b"x" * 20 + b"\x00", {"max_body_size": 10}, "max_body_size"),
        (b"SEND\n\n" + b"x" * 20, {"max_body_size": 10}, "max_body_size"),
        (b"SEND\ncontent-length:20\n\n", {"max_body_size": 10}, "max_body_size"),
        (b"SEND\n\n" + b"x" * 20 + b"\x00", {"max_frame_size": 16}, "max_frame_size"),
        (b"SEND\nh:" + b"v" * 20, {"max_frame_size": 16}, "max_frame_size"),
    ],
)
def test_limits(data: bytes, options: dict[str, int], reason: str) -> None:
    if b"%d" in data:
        data = data.replace(b"h%d", b"h")  # distinct names are not needed: repeats count too
    assert error(data, **options) == reason


def test_limits_allow_frames_at_the_limit() -> None:
    assert one(b"SEND\n\n" + b"x" * 10 + b"\x00", max_body_size=10, max_frame_size=17).body == b"x" * 10


# -- encoder --------------------------------------------------------------------------------------------
def test_encode_as_rabbitmq() -> None:
    assert encode("CONNECTED", [("server", "RabbitMQ/3.10.8"), ("version", "1.2")]) == (
        b"CONNECTED\nserver:RabbitMQ/3.10.8\nversion:1.2\n\n\x00\n"
    )
    assert encode("MESSAGE", [("a:b", "c\nd\\e\rf"), ("content-length", "99")], b"xy", trailing_lf=False) == (
        b"MESSAGE\na\\cb:c\\nd\\\\e\\rf\ncontent-length:2\n\nxy\x00"
    )
    assert escape("a:b") == "a\\cb"


# -- properties -----------------------------------------------------------------------------------------
header_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=12)
commands = st.sampled_from(["SEND", "SUBSCRIBE", "ACK", "MESSAGE", "X"])


@st.composite
def frames(draw: st.DrawFn) -> Frame:
    command = draw(commands)
    names = draw(st.lists(header_text.filter(lambda n: n != "content-length"), unique=True, max_size=6))
    headers = [(n, draw(header_text)) for n in names]
    body = draw(st.binary(max_size=40))
    if command != "SEND":
        body = body.replace(b"\x00", b"")  # only SEND bodies are delimited by content-length on the server
    return Frame(command, headers, body)


def split_points(data: bytes) -> st.SearchStrategy[list[int]]:
    return st.lists(st.integers(0, len(data)), max_size=8).map(sorted)


def feed_split(data: bytes, cuts: list[int]) -> tuple[list[Frame], str | None]:
    decoder = StompDecoder()
    out: list[Frame] = []
    previous = 0
    try:
        for cut in [*cuts, len(data)]:
            decoder.feed(data[previous:cut])
            previous = cut
            out.extend(decoder)
    except StompFrameError as exc:
        return out, exc.reason
    return out, None


def summary(frames_: list[Frame]) -> list[tuple[str, list[tuple[str, str]], bytes]]:
    return [(f.command, f.headers, f.body) for f in frames_]


@settings(max_examples=300, deadline=None)
@given(st.lists(frames(), min_size=1, max_size=4), st.data())
def test_round_trip_any_split(originals: list[Frame], data: st.DataObject) -> None:
    wire = b"".join(encode(f.command, f.headers, f.body, trailing_lf=data.draw(st.booleans())) for f in originals)
    cuts = data.draw(split_points(wire))
    decoded, problem = feed_split(wire, cuts)
    assert problem is None
    # The encoder adds content-length for a non-empty body; everything else comes back as it was.
    for frame in decoded:
        assert frame.get("content-length") == (str(len(frame.body)) if frame.body else None)
        frame.headers = [(n, v) for n, v in frame.headers if n != "content-length"]
    assert summary(decoded) == summary(originals)


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=120), st.data())
def test_random_bytes_split_does_not_matter(data_: bytes, data: st.DataObject) -> None:
    # Whatever the bytes, the decoder yields frames or a StompFrameError, never anything else, and how the
    # bytes are cut into reads changes nothing.
    whole = feed_split(data_, [])
    cut = feed_split(data_, data.draw(split_points(data_)))
    assert summary(cut[0]) == summary(whole[0])
    assert cut[1] == whole[1]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from([b"SEND", b"\n", b"\r\n", b"\r", b":", b"\\", b"\\n", b"\\c", b"a", b"\x00",
                                 b"content-length:", b"2", b"-", b"destination"]), max_size=30), st.data())
def test_grammar_soup_split_does_not_matter(tokens: list[bytes], data: st.DataObject) -> None:
    soup = b"".join(tokens)
    whole = feed_split(soup, [])
    cut = feed_split(soup, data.draw(split_points(soup)))
    assert summary(cut[0]) == summary(whole[0])
    assert cut[1] == whole[1]


@pytest.mark.parametrize(("data", "term"), [
    # As RabbitMQ 3.10's Web STOMP prints them in its close frame (observed).
    (b"SEND\ndestination /queue/x\n\nbody\x00", '{header_no_value,"destination /queue/x"}'),
    (b"SEND\nfoo:a\\tb\n\nbody\x00", '{bad_escape,"\\\\t"}'),
    (b"SEND\rdestination:/topic/x\n\nabc\x00", '{unexpected_chars_in_command,"\\rd"}'),
    (b"SEND\nh:\x80\x81\n\nx\x00", None),
    (b"SEND\n\x80\x81\n\n\x00", "{header_no_value,[128,129]}"),
])
def test_error_terms(data: bytes, term: str | None) -> None:
    decoder = StompDecoder()
    decoder.feed(data)
    if term is None:
        assert list(decoder)
        return
    with pytest.raises(StompFrameError) as info:
        list(decoder)
    assert info.value.erlang() == term and not info.value.crash


def test_content_length_problems_are_crashes() -> None:
    decoder = StompDecoder()
    decoder.feed(b"SEND\ncontent-length:3\n\nabcdef\x00")
    with pytest.raises(StompFrameError) as info:
        list(decoder)
    assert info.value.crash
