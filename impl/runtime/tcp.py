"""Length-prefixed JSON frames over TCP: the free runtime's wire format.

Where it sits: ``impl.runtime.free`` sends every message as one frame and reads
frames from every accepted connection with ``read_frame``.

A frame is a 4-byte big-endian payload length, then the payload: UTF-8 JSON of
``{"src": sender, "msg": {"type": ..., ...}}``.  A reader that meets a frame longer
than its limit, a connection that ends inside a frame, or a payload that is not
such an object raises ``FrameError`` saying which; the caller logs it and closes
that connection, and keeps serving the others.
"""

from __future__ import annotations

import json
import socket
import struct
from typing import Any

_LENGTH = struct.Struct(">I")
DEFAULT_MAX_FRAME = 1 << 20


class FrameError(Exception):
    """A frame that breaks the format; the message says how."""


def encode_frame(src: str, msg: Any) -> bytes:
    payload = json.dumps({"src": src, "msg": msg}, separators=(",", ":")).encode()
    return _LENGTH.pack(len(payload)) + payload


def _read_exactly(conn: socket.socket, n: int, what: str) -> bytes | None:
    """``n`` bytes, or None if the peer closed cleanly before the first one."""
    chunks: list[bytes] = []
    got = 0
    while got < n:
        chunk = conn.recv(n - got)
        if not chunk:
            if got == 0 and what == "length":
                return None
            raise FrameError(f"truncated frame: the connection ended after {got} of {n} bytes of its {what}")
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def read_frame(conn: socket.socket, max_frame: int = DEFAULT_MAX_FRAME) -> tuple[str, dict[str, Any]] | None:
    """The next (sender, message), or None when the peer closed between frames."""
    header = _read_exactly(conn, _LENGTH.size, "length")
    if header is None:
        return None
    (length,) = _LENGTH.unpack(header)
    if length > max_frame:
        raise FrameError(f"oversized frame: {length} bytes, the limit is {max_frame}")
    payload = _read_exactly(conn, length, "payload") if length else b""
    assert payload is not None
    try:
        data = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise FrameError(f"malformed frame: not UTF-8 JSON ({exc})") from None
    if not isinstance(data, dict) or not isinstance(data.get("src"), str):
        raise FrameError('malformed frame: expected an object with a string "src"')
    msg = data.get("msg")
    if not isinstance(msg, dict) or not isinstance(msg.get("type"), str):
        raise FrameError('malformed frame: "msg" must be an object with a string "type"')
    return data["src"], msg
