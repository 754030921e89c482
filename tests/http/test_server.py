"""The h11 server session without sockets: keep-alive, pipelining, chunked bodies, limits, malformed HTTP."""

from __future__ import annotations

import pytest
from httptestlib import INFO, Driver, Host, parse_replies, request
from hypothesis import given, settings
from hypothesis import strategies as st

from fakebroker.protocols.http.server import HttpSession, Pending, Request, Response


class Echo:
    """Answers with the method, target and body it got; ``/wait`` answers later, ``/boom`` raises."""

    def __init__(self) -> None:
        self.pending: list[Pending] = []
        self.cancelled = 0

    def handle(self, req: Request, session: HttpSession) -> Response | Pending:
        if req.path == "/wait":
            p = Pending(on_cancel=self._cancel)
            self.pending.append(p)
            return p
        if req.path == "/boom":
            raise RuntimeError("handler bug")
        return Response.text(200, f"{req.method} {req.target} {req.body.decode()}")

    def _cancel(self) -> None:
        self.cancelled += 1


FAST = [True]


@pytest.fixture(autouse=True, params=["fast path", "h11 only"])
def path_taken(request: pytest.FixtureRequest) -> None:
    """Every test runs with the fast path on (as served) and off (h11 for every request)."""
    FAST[0] = request.param == "fast path"


def session(max_body: int = 1000, max_header: int = 2048, fast: bool | None = None,
            ) -> tuple[HttpSession, Driver, Echo]:
    app = Echo()
    s = HttpSession(INFO, Host(), app, max_body=max_body, max_header=max_header)
    s.fast = FAST[0] if fast is None else fast
    return s, Driver(s), app


def test_keep_alive_serves_requests_one_after_another() -> None:
    s, d, _ = session()
    for i in range(3):
        [r] = d.replies(request("POST", f"/n/{i}", b"x" * i))
        assert (r.status, r.text) == (200, f"POST /n/{i} {'x' * i}\n")
        assert s.state == "open"
    assert s.requests == 3


def test_pipelined_requests_are_answered_in_order() -> None:
    s, d, _ = session()
    data = b"".join(request("GET", f"/{i}") for i in range(5))
    replies = d.replies(data)
    assert [r.text for r in replies] == [f"GET /{i} \n" for i in range(5)]
    assert s.state == "open"


def test_a_pending_response_holds_back_the_pipelined_requests_after_it() -> None:
    s, d, app = session()
    out = d.feed(request("GET", "/wait") + request("GET", "/after"))
    assert out == b""
    assert d.wakeups == 0
    app.pending[0].resolve(Response.text(200, "late"))
    assert d.wakeups > 0
    replies = parse_replies(s.data_to_send())
    assert [r.text for r in replies] == ["late\n", "GET /after \n"]


def test_a_client_that_leaves_during_a_long_poll_cancels_it() -> None:
    s, d, app = session()
    d.feed(request("GET", "/wait"))
    s.receive_data(b"")
    assert s.state == "closed"
    assert app.cancelled == 1
    app.pending[0].resolve(Response(200))  # too late: nothing is written
    assert s.data_to_send() == b""


def test_chunked_request_body() -> None:
    _, d, _ = session()
    raw = (b"POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
           b"5\r\nhello\r\n1;ext=1\r\n \r\n5\r\nworld\r\n0\r\n\r\n")
    [r] = d.replies(raw)
    assert r.text == "POST /c hello world\n"


def test_a_request_fed_byte_by_byte_is_answered_once_complete() -> None:
    _, d, _ = session()
    raw = request("POST", "/slow", b"abc")
    out = b""
    for i in range(len(raw)):
        out += d.feed(raw[i:i + 1])
        if i < len(raw) - 1:
            assert out == b""
    [r] = parse_replies(out)
    assert r.text == "POST /slow abc\n"


def test_content_length_past_the_limit_is_413_and_closes() -> None:
    s, d, _ = session(max_body=10)
    [r] = d.replies(b"POST /big HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\n")
    assert r.status == 413
    assert r.headers["connection"] == "close"
    assert "larger than 10 bytes" in r.text
    assert s.close_requested


def test_chunked_body_past_the_limit_is_413_and_closes() -> None:
    s, d, _ = session(max_body=10)
    raw = b"POST /big HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n8\r\n12345678\r\n8\r\n12345678\r\n"
    [r] = d.replies(raw)
    assert r.status == 413
    assert s.close_requested


def test_a_body_at_the_limit_is_accepted() -> None:
    _, d, _ = session(max_body=10)
    [r] = d.replies(request("POST", "/ok", b"0123456789"))
    assert r.status == 200


@pytest.mark.parametrize("raw", [
    b"GARBAGE\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\nbad header line\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
    b"GET / HTTP/1.1\r\n\r\n",  # HTTP/1.1 needs a Host header
    b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
])
def test_malformed_http_gets_400_and_only_that_connection_closes(raw: bytes) -> None:
    s, d, _ = session()
    [r] = d.replies(raw)
    assert r.status == 400
    assert r.headers["connection"] == "close"
    assert r.text.startswith("malformed HTTP request")
    assert s.close_requested
    # Another connection of the same app and host is unaffected.
    other = HttpSession(INFO, s.host, s.app)
    [ok] = Driver(other).replies(request("GET", "/fine"))
    assert ok.status == 200


def test_headers_past_the_limit_are_refused() -> None:
    s, d, _ = session(max_header=200)
    [r] = d.replies(b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 400 + b"\r\n\r\n")
    assert r.status == 431
    assert s.close_requested


def test_after_a_refused_request_the_rest_of_the_pipeline_is_not_read() -> None:
    s, d, _ = session()
    replies = d.replies(request("GET", "/a") + b"NONSENSE\r\n\r\n" + request("GET", "/b"))
    assert [r.status for r in replies] == [200, 400]


def test_http_1_0_closes_after_the_response() -> None:
    s, d, _ = session()
    [r] = d.replies(b"GET /old HTTP/1.0\r\n\r\n")
    assert r.status == 200
    assert s.close_requested


def test_connection_close_header_closes_after_the_response() -> None:
    s, d, _ = session()
    [r] = d.replies(request("GET", "/x", headers={"Connection": "close"}))
    assert r.status == 200
    assert s.close_requested


def test_expect_100_continue_gets_an_interim_response() -> None:
    _, d, _ = session()
    head = b"POST /e HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n"
    assert d.feed(head) == b"HTTP/1.1 100 \r\n\r\n"
    [r] = d.replies(b"abc")
    assert r.text == "POST /e abc\n"


def test_head_gets_headers_without_the_body() -> None:
    _, d, _ = session()
    out = d.feed(request("HEAD", "/h"))
    assert out.endswith(b"\r\n\r\n")
    assert b"Content-Length: 9" in out


def test_a_handler_that_raises_costs_a_500_and_this_connection_only() -> None:
    s, d, _ = session()
    [r] = d.replies(request("GET", "/boom"))
    assert r.status == 500
    assert "handler bug" in r.text
    assert s.close_requested


def test_output_after_close_is_dropped() -> None:
    s, d, _ = session()
    s.receive_data(b"")
    assert s.state == "closed"
    assert d.feed(request("GET", "/late")) == b""


@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=40), min_size=1, max_size=30))
def test_any_split_of_a_pipeline_gives_the_same_responses(cuts: list[int]) -> None:
    data = b"".join(request("POST", f"/p{i}", b"b" * i) for i in range(4))
    _, d, _ = session()
    out, i = b"", 0
    for n in cuts:
        out += d.feed(data[i:i + n])
        i += n
    out += d.feed(data[i:])
    assert [r.text for r in parse_replies(out)] == [f"POST /p{i} {'b' * i}\n" for i in range(4)]


def test_the_connection_is_established_by_its_first_request_head() -> None:
    s, d, _ = session()
    d.feed(b"GET / HTTP/1.1\r\n")
    assert not s.established  # the runtime's handshake timeout still applies
    d.feed(b"Host: x\r\n\r\n")
    assert s.established


# Requests built from parts that are sometimes fine and sometimes not, for comparing the two paths.
_LINES = st.sampled_from([b"GET /a HTTP/1.1", b"POST /p?x=1 HTTP/1.1", b"HEAD /h HTTP/1.1", b"GET /a HTTP/1.0",
                          b"PATCH /x HTTP/1.1", b"GET /wait HTTP/1.1", b"GET  /a HTTP/1.1", b"get /a HTTP/1.1"])
_HEADERS = st.lists(st.sampled_from([
    b"Host: x", b"Host: y", b"Connection: keep-alive", b"Connection: close", b"Content-Length: 3",
    b"Content-Length: 03", b"Content-Length: x", b"Transfer-Encoding: chunked", b"X-A: 1", b"X-A:  two  words ",
    b"X-Empty:", b" folded", b"Bad Header: 1", b"Expect: 100-continue", b"X-Tab:\tv", b"X-Ctl: a\x01b",
    b"Content-Length: \xb2", b"Content-Length: 1\xb2", b"X-Latin: caf\xe9", b"Content-Length: 99999999999999999",
]), max_size=5)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(_LINES, _HEADERS, st.sampled_from([b"", b"abc", b"abcdef"])), min_size=1, max_size=4),
       st.integers(min_value=1, max_value=30))
def test_the_fast_path_answers_exactly_as_h11_alone(requests_: list[tuple[bytes, list[bytes], bytes]],
                                                    chunk: int) -> None:
    data = b"".join(line + b"\r\n" + b"".join(h + b"\r\n" for h in headers) + b"\r\n" + body
                    for line, headers, body in requests_)
    outputs = []
    for fast in (True, False):
        s, d, app = session(fast=fast)
        out = b""
        for i in range(0, len(data), chunk):
            out += d.feed(data[i:i + chunk])
            for p in app.pending:
                p.resolve(Response.text(200, "late"))
            out += s.data_to_send()
        outputs.append((out, s.state))
    assert outputs[0] == outputs[1]
