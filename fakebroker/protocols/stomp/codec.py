"""STOMP 1.0/1.1/1.2 frames: an incremental, strict, sans-I/O decoder and the encoder, as RabbitMQ's plugin frames them.

The grammar is the one RabbitMQ 3.x's ``rabbit_stomp_frame`` parses, whatever the negotiated version:

- Between frames any number of NULs and end-of-lines (``LF`` or ``CR LF``): heart-beats and trailing newlines.
- A line ends with ``LF`` or ``CR LF``; a ``CR`` followed by anything but ``LF`` is an error.
- A header line is ``name:value``; the first ``:`` separates (values may hold more colons). A line without a
  colon is an error. The escapes ``\\n``, ``\\r``, ``\\c`` and ``\\\\`` are decoded in names and values (in every
  frame, CONNECT included, and in every version); any other backslash sequence is an error.
- A repeated header: the first occurrence wins, later ones are dropped.
- The body runs to the first NUL; for ``SEND`` (the only client frame with a body RabbitMQ reads a length for)
  ``content-length`` gives its size, so it may contain NULs, and the byte after it must be the NUL. A
  ``content-length`` that is not an integer, or negative, is an error.

Header names and values are bytes on the wire and may be any bytes; they are decoded as UTF-8 with
``surrogateescape``, so bytes that are not UTF-8 survive a round trip unchanged.

RabbitMQ 3.10 has no limits on frame, header or body sizes (later releases added some); the decoder takes
optional ones. Any error makes the decoder raise :class:`StompFrameError` and stay broken.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

NUL = 0
LF = 10
CR = 13
BACKSLASH = 92

_UNESCAPE = {ord("n"): "\n", ord("r"): "\r", ord("c"): ":", BACKSLASH: "\\"}
_ESCAPE_TABLE = str.maketrans({"\\": "\\\\", "\n": "\\n", "\r": "\\r", ":": "\\c"})


#: Errors RabbitMQ's parser does not report but crashes on (a ``content-length`` it cannot use).
CRASHES = frozenset(["bad_content_length", "negative_content_length", "content_length_mismatch"])


class StompFrameError(Exception):
    """Bytes that are not a STOMP frame. ``reason`` names the problem (RabbitMQ's parser terms where it has one);
    ``detail`` is what RabbitMQ's error term carries with it (the offending bytes), if anything."""

    def __init__(self, reason: str, detail: bytes | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.detail = detail

    @property
    def crash(self) -> bool:
        """True where RabbitMQ's parser crashes instead of returning an error."""
        return self.reason in CRASHES

    def erlang(self) -> str:
        """The error term as RabbitMQ prints it (``~p``), e.g. ``{header_no_value,"destination /queue/x"}``."""
        if self.detail is None:
            return self.reason
        return "{" + self.reason + "," + erlang_string(self.detail) + "}"


_ERLANG_ESCAPES = {0x0A: "\\n", 0x0D: "\\r", 0x09: "\\t", 0x0B: "\\v", 0x08: "\\b", 0x0C: "\\f", 0x1B: "\\e",
                   0x22: '\\"', 0x5C: "\\\\"}


def erlang_string(raw: bytes) -> str:
    """A list of bytes as Erlang's ``~p`` prints it: a quoted string when every byte is printable Latin-1,
    otherwise a list of integers."""
    if not all(32 <= b <= 126 or 160 <= b <= 255 or b in _ERLANG_ESCAPES for b in raw):
        return "[" + ",".join(str(b) for b in raw) + "]"
    return '"' + "".join(_ERLANG_ESCAPES.get(b, chr(b)) for b in raw) + '"'


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", "surrogateescape")


def _raw(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


class Frame:
    """One frame. ``headers`` keeps the order of arrival, without repeats (the first occurrence wins)."""

    __slots__ = ("command", "_headers", "body", "_map")

    def __init__(self, command: str, headers: list[tuple[str, str]] | None = None, body: bytes = b"") -> None:
        self.command = command
        self._headers: list[tuple[str, str]] = headers if headers is not None else []
        self.body = body
        self._map: dict[str, str] | None = None

    @property
    def headers(self) -> list[tuple[str, str]]:
        return self._headers

    @headers.setter
    def headers(self, value: list[tuple[str, str]]) -> None:
        self._headers = value
        self._map = None

    def _index(self) -> dict[str, str]:
        found = self._map
        if found is None:
            found = self._map = {}
            for key, value in self._headers:
                found.setdefault(key, value)
        return found

    def get(self, name: str, default: str | None = None) -> str | None:
        return self._index().get(name, default)

    def __contains__(self, name: object) -> bool:
        return name in self._index()

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Frame):
            return NotImplemented
        return (self.command, self._headers, self.body) == (other.command, other._headers, other.body)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        body = self.body if len(self.body) <= 60 else self.body[:57] + b"..."
        return f"<Frame {self.command} {dict(self.headers)} body={body!r}>"


def escape(text: str) -> str:
    """A header name or value as RabbitMQ writes it (``\\``, LF, CR and ``:`` escaped)."""
    # Most headers have nothing to escape; four substring tests are cheaper than a translate.
    if "\\" in text or ":" in text or "\n" in text or "\r" in text:
        return text.translate(_ESCAPE_TABLE)
    return text


def encode(
    command: str,
    headers: Iterable[tuple[str, str | int]] = (),
    body: bytes = b"",
    *,
    trailing_lf: bool = True,
    escape_headers: bool = True,
) -> bytes:
    """Serialise a frame as RabbitMQ does: every header escaped, any ``content-length`` given replaced by the
    body's length (present only when the body is not empty), then NUL and, with ``trailing_lf``, a newline."""
    out = [command, "\n"]
    for name, value in headers:
        if name == "content-length":
            continue
        text = str(value)
        if escape_headers:
            out += [escape(name), ":", escape(text), "\n"]
        else:
            out += [name, ":", text, "\n"]
    if body:
        out += ["content-length:", str(len(body)), "\n"]
    out.append("\n")
    return _raw("".join(out)) + body + (b"\x00\n" if trailing_lf else b"\x00")


def encode_frame(frame: Frame, *, trailing_lf: bool = True) -> bytes:
    return encode(frame.command, frame.headers, frame.body, trailing_lf=trailing_lf)


def _erlang_integer(text: str) -> int | None:
    """``list_to_integer(string:strip(S))``: spaces stripped, an optional sign, decimal digits, nothing else."""
    text = text.strip(" ")
    digits = text[1:] if text[:1] in ("+", "-") else text
    if not digits or not digits.isascii() or not digits.isdigit():
        return None
    return int(text)


class StompDecoder:
    """Bytes in, :class:`Frame` objects out. Feed with :meth:`feed`, then iterate.

    ``content_length_commands``: the commands whose ``content-length`` delimits the body (RabbitMQ: ``SEND``
    only); ``None`` means every command, which is what a client reading the server's frames wants.
    """

    def __init__(
        self,
        *,
        max_frame_size: int | None = None,
        max_headers: int | None = None,
        max_header_length: int | None = None,
        max_body_size: int | None = None,
        content_length_commands: Sequence[str] | None = ("SEND",),
    ) -> None:
        self.max_frame_size = max_frame_size
        self.max_headers = max_headers
        self.max_header_length = max_header_length
        self.max_body_size = max_body_size
        self._length_commands = None if content_length_commands is None else frozenset(content_length_commands)
        self._buf = bytearray()
        self._pos = 0  # where parsing stands in _buf
        self._start = 0  # where the current frame began in _buf (after the noise)
        self._command: str | None = None
        self._headers: list[tuple[str, str]] = []
        self._names: set[str] = set()
        self._header_count = 0
        self._body_start: int | None = None
        self._body_length: int | None = None
        self._error: StompFrameError | None = None
        #: Bytes of inter-frame noise (heart-beat EOLs) seen so far.
        self.noise = 0

    @property
    def pending_bytes(self) -> int:
        """Bytes received that are not part of a complete frame yet."""
        return len(self._buf) - self._start if self._command is not None else len(self._buf) - self._pos

    @property
    def in_frame(self) -> bool:
        return self._command is not None

    def feed(self, data: bytes) -> None:
        if self._error is None:
            self._buf += data

    def __iter__(self) -> Iterator[Frame]:
        return self

    def __next__(self) -> Frame:
        if self._error is not None:
            raise self._error
        try:
            frame = self._parse()
        except StompFrameError as exc:
            self._error = exc
            self._buf.clear()
            raise
        if frame is None:
            raise StopIteration
        return frame

    # -- parsing ----------------------------------------------------------------------------------------
    def _parse(self) -> Frame | None:
        buf = self._buf
        if self._command is None:
            if not self._skip_noise():
                return None
            line = self._line("unexpected_chars_in_command")
            if line is None:
                self._check_size(len(buf) - self._start)
                return None
            self._command = _text(line)
        if self._body_start is None:
            if self._headers_at_once():
                return self._body()
            while True:
                line = self._line("unexpected_chars_in_header")
                if line is None:
                    self._check_size(len(buf) - self._start)
                    return None
                if not line:
                    self._begin_body()
                    break
                self._header(line)
        return self._body()

    def _headers_at_once(self) -> bool:
        """The fast path: the whole header block has arrived and has no CR and no escape, so it can be split in
        one go (what the line-by-line path would do, with the same limits and errors)."""
        if self._headers or self._header_count:
            return False
        buf, pos = self._buf, self._pos
        if buf.startswith(b"\n", pos):
            self._pos = pos + 1
            self._begin_body()
            return True
        end = buf.find(b"\n\n", pos)
        if end < 0:
            return False
        block = bytes(buf[pos:end])
        if b"\r" in block or b"\\" in block:
            return False
        lines = block.split(b"\n")
        if self.max_headers is not None and len(lines) > self.max_headers:
            return False
        if self.max_header_length is not None and max(map(len, lines)) > self.max_header_length:
            return False
        headers, names = self._headers, self._names
        for line in lines:
            name, colon, value = line.partition(b":")
            if not colon:
                raise StompFrameError("header_no_value", line)
            key = _text(name)
            if key not in names:
                names.add(key)
                headers.append((key, _text(value)))
        self._header_count = len(lines)
        self._pos = end + 2
        self._begin_body()
        return True

    def _skip_noise(self) -> bool:
        """Skip NULs and EOLs between frames; True when a frame starts at ``_pos``."""
        buf, pos, end = self._buf, self._pos, len(self._buf)
        while pos < end:
            byte = buf[pos]
            if byte in (NUL, LF):
                pos += 1
            elif byte == CR:
                if pos + 1 == end:
                    break
                if buf[pos + 1] != LF:
                    raise StompFrameError("unexpected_chars_between_frames", bytes(buf[pos:pos + 2]))
                pos += 2
            else:
                break
        self.noise += pos - self._pos
        # Compact: what came before this frame is gone for good.
        del buf[:pos]
        self._pos = self._start = 0
        return bool(buf) and buf[0] != CR

    def _line(self, cr_error: str) -> bytes | None:
        """The next complete line without its EOL, or None if there is none yet. The line, complete or not, is
        checked first: RabbitMQ's parser fails on the first bad byte, before the line ends."""
        buf, pos = self._buf, self._pos
        nl = buf.find(b"\n", pos)
        complete = nl >= 0
        raw = bytes(buf[pos:nl] if complete else buf[pos:])
        header = self._command is not None
        if header and self.max_header_length is not None and len(raw.rstrip(b"\r")) > self.max_header_length:
            raise StompFrameError("max_header_length")
        if b"\r" in raw or (header and b"\\" in raw):
            _scan(raw, complete, header, cr_error)
        if not complete:
            return None
        self._pos = nl + 1
        return raw[:-1] if raw.endswith(b"\r") else raw

    def _header(self, line: bytes) -> None:
        self._header_count += 1
        if self.max_headers is not None and self._header_count > self.max_headers:
            raise StompFrameError("max_headers")
        if b"\\" in line:
            name, value = _unescape_line(line, True)
        else:
            colon = line.find(b":")
            if colon < 0:
                raise StompFrameError("header_no_value", line)
            name, value = _text(line[:colon]), _text(line[colon + 1:])
        if name not in self._names:
            self._names.add(name)
            self._headers.append((name, value))

    def _begin_body(self) -> None:
        self._body_start = self._pos
        command = self._command
        assert command is not None
        if self._length_commands is None or command in self._length_commands:
            for name, value in self._headers:
                if name == "content-length":
                    length = _erlang_integer(value)
                    if length is None:
                        raise StompFrameError("bad_content_length")
                    if length < 0:
                        raise StompFrameError("negative_content_length")
                    if self.max_body_size is not None and length > self.max_body_size:
                        raise StompFrameError("max_body_size")
                    self._body_length = length
                    break

    def _body(self) -> Frame | None:
        buf, start = self._buf, self._body_start
        assert start is not None
        if self._body_length is not None:
            end = start + self._body_length
            if len(buf) <= end:
                self._check_size(len(buf) - self._start)
                return None
            if buf[end] != NUL:
                raise StompFrameError("content_length_mismatch")
        else:
            end = buf.find(b"\x00", self._pos)
            if end < 0:
                self._pos = len(buf)
                if self.max_body_size is not None and len(buf) - start > self.max_body_size:
                    raise StompFrameError("max_body_size")
                self._check_size(len(buf) - self._start)
                return None
            if self.max_body_size is not None and end - start > self.max_body_size:
                raise StompFrameError("max_body_size")
        self._check_size(end + 1 - self._start)
        command = self._command
        assert command is not None
        frame = Frame(command, self._headers, bytes(buf[start:end]))
        del buf[: end + 1]
        self._pos = self._start = 0
        self._command = None
        self._headers = []
        self._names = set()
        self._header_count = 0
        self._body_start = self._body_length = None
        return frame

    def _check_size(self, size: int) -> None:
        if self.max_frame_size is not None and size > self.max_frame_size:
            raise StompFrameError("max_frame_size")


def _scan(raw: bytes, complete: bool, header: bool, cr_error: str) -> None:
    """Raise the error RabbitMQ's parser meets first in a line (``raw`` ends before the LF, if any): a CR not
    followed by LF, or in a header a backslash not followed by n, r, c or another backslash."""
    i, n = 0, len(raw)
    while i < n:
        byte = raw[i]
        if byte == CR:
            if i + 1 < n:
                raise StompFrameError(cr_error, raw[i:i + 2])
            i += 1
        elif byte == BACKSLASH and header:
            if i + 1 >= n:
                if complete:
                    raise StompFrameError("bad_escape", b"\\\n")  # the escaped character would be the LF
                return
            if raw[i + 1] not in _UNESCAPE:
                raise StompFrameError("bad_escape", raw[i:i + 2])
            i += 2
        else:
            i += 1


def _unescape_line(raw: bytes, complete: bool) -> tuple[str, str]:
    """Split a checked header line (see :func:`_scan`) at its first unescaped colon and decode the escapes."""
    parts: list[list[str]] = [[]]
    seen_colon = False
    text = _text(raw)
    # Work on the text: escapes are ASCII, and surrogate-escaped bytes never look like them.
    i, n = 0, len(text)
    chunk_start = 0
    while i < n:
        ch = text[i]
        if ch == "\\":
            if i + 1 >= n:
                if complete:
                    raise StompFrameError("bad_escape")
                break
            decoded = _UNESCAPE.get(ord(text[i + 1]))
            if decoded is None:
                raise StompFrameError("bad_escape")
            parts[-1].append(text[chunk_start:i])
            parts[-1].append(decoded)
            i += 2
            chunk_start = i
        elif ch == ":" and not seen_colon:
            parts[-1].append(text[chunk_start:i])
            parts.append([])
            seen_colon = True
            i += 1
            chunk_start = i
        else:
            i += 1
    parts[-1].append(text[chunk_start:i])
    if not seen_colon:
        if complete:
            raise StompFrameError("header_no_value", _raw("".join(parts[0])))
        return "".join(parts[0]), ""
    return "".join(parts[0]), "".join(parts[1])


__all__ = ["Frame", "StompDecoder", "StompFrameError", "encode", "encode_frame", "escape"]
