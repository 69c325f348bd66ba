"""Fuzzing a live free-mode node with hostile bytes over TCP (issue #13, item 6).

Each example opens a connection to a running node, sends something hostile —
random bytes, a garbage length prefix, a valid frame truncated or mutated, JSON of
the wrong shape, nesting from just under the limit to 100,000 deep, huge
numbers, NaN, lone surrogates and invalid UTF-8 — and closes it; then a correct
client must be served.  One node serves every example of a run, so whatever an
example breaks, leaks or kills shows in the examples after it and in the checks
at the end: no runtime error, no thread died, no reader left behind.
"""

from __future__ import annotations

import json
import struct
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from distcheck.impl.runtime import FreeRuntime
from distcheck.impl.runtime.tcp import ConnectionLimits, encode_frame
from tests.impl.hostile import Probe, attack, echo_node
from tests.impl.waiting import wait_for

#: seconds: a generous bound on one correct round trip after an attack, so that a
#: loaded machine does not fail the fuzzer (the single-attack tests use one second)
FUZZ_SERVED_WITHIN = 5.0


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[FreeRuntime, Probe]]:
    died: list[str] = []
    previous = threading.excepthook
    threading.excepthook = lambda args: died.append(f"{args.thread}: {args.exc_type.__name__}: {args.exc_value}")
    try:
        # a short frame deadline: an example that leaves a frame unfinished costs little
        limits = ConnectionLimits(frame_deadline=0.5, diagnostics_kept=200)
        with echo_node(tmp_path_factory.mktemp("fuzz"), limits) as running:
            yield running
            runtime, _ = running
            wait_for(lambda: not [t for t in runtime.alive() if t.endswith(".read")], "every reader to end")
            assert len(runtime.diagnostics) <= 200
        assert runtime.errors == [] and runtime.alive() == []
    finally:
        threading.excepthook = previous
    assert died == []


def framed(payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + payload


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(st.characters(codec=None), max_size=10),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=12,
)


def as_bytes(value: Any, ascii_only: bool) -> bytes:
    # surrogatepass: a lone surrogate becomes the (invalid) UTF-8 a careless encoder writes
    return json.dumps(value, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")


edge_literals = st.sampled_from(
    [
        b'"\\ud800"',  # a lone surrogate, escaped
        b'"\\udfff\\ud800"',
        b'"\xed\xa0\x80"',  # a surrogate encoded in UTF-8: invalid
        b'"\xff\xfe"',
        b'"\xc0\x80"',  # an overlong NUL
        b'"\xf4\x90\x80\x80"',  # past U+10FFFF
        b'"\\u0000"',
        b'"\xef\xbb\xbf"',  # a BOM inside a string
        b"1" * 5000,  # past Python's int-string limit
        b"1e999",
        b"-0",
        b"NaN",
        b"Infinity",
        b"-Infinity",
        b"true",
        b"[]",
        b"{}",
        b'"ping"',
    ]
)


@st.composite
def shaped_payloads(draw: st.DrawFn) -> bytes:
    """JSON of almost the right shape: fields missing, swapped or odd."""
    src = draw(st.sampled_from([b'"client"', b'"x"']) | edge_literals)
    kind = draw(st.sampled_from([b'"ping"', b'"pong"']) | edge_literals)
    n = draw(st.sampled_from([b"1", b"-1"]) | edge_literals)
    msg = draw(
        st.sampled_from(
            [
                b'{"type":%s,"n":%s}' % (kind, n),
                b'{"type":%s}' % kind,
                b'{"n":%s}' % n,
                b"[%s,%s]" % (kind, n),
                kind,
            ]
        )
    )
    return draw(st.sampled_from([b'{"src":%s,"msg":%s}' % (src, msg), b'{"msg":%s}' % msg, b"[%s,%s]" % (src, msg)]))


@st.composite
def nested(draw: st.DrawFn) -> bytes:
    depth = draw(st.sampled_from([62, 63, 64, 65, 100, 1000, 100_000]))
    opener, closer = draw(st.sampled_from([(b"[", b"]"), (b'{"a":', b"}")]))
    closed = draw(st.booleans())
    inner = opener * depth + b"1" + (closer * depth if closed else b"")
    return b'{"src":"client","msg":{"type":"ping","v":' + inner + b"}}"


payloads = st.one_of(
    st.binary(max_size=64),
    shaped_payloads(),
    nested(),
    st.builds(as_bytes, json_values, st.booleans()),
    st.builds(lambda v, a: as_bytes({"src": "client", "msg": {"type": "ping", "v": v}}, a), json_values, st.booleans()),
)


@st.composite
def mutated_frames(draw: st.DrawFn) -> bytes:
    """A valid ping frame with a few bytes replaced, inserted or deleted."""
    frame = bytearray(encode_frame("client", {"type": "ping", "n": draw(st.integers(0, 10))}))
    for _ in range(draw(st.integers(1, 3))):
        at = draw(st.integers(0, len(frame)))
        frame[at : at + draw(st.integers(0, 3))] = draw(st.binary(max_size=3))
    return bytes(frame)


attacks = st.one_of(
    payloads.map(framed),
    # a garbage length prefix: short of the payload, past it, or past every limit
    st.tuples(st.integers(0, 0xFFFFFFFF), payloads).map(lambda lp: struct.pack(">I", lp[0]) + lp[1]),
    # truncated anywhere, the length prefix included
    st.tuples(payloads.map(framed), st.integers(0, 200)).map(lambda fc: fc[0][: fc[1]]),
    mutated_frames(),
    st.binary(max_size=300),
    # good frames, then a bad one
    st.tuples(st.lists(payloads.map(framed), max_size=3), payloads).map(lambda fs: b"".join(fs[0]) + fs[1]),
)


def fuzz(node: tuple[FreeRuntime, Probe], data: bytes) -> None:
    runtime, probe = node
    address = runtime.addresses["echo"]
    attack(address, data)
    assert probe.ping(address, within=FUZZ_SERVED_WITHIN), f"not served after sending {data[:200]!r}"


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=attacks)
def test_the_node_serves_a_correct_client_after_any_bytes(node: tuple[FreeRuntime, Probe], data: bytes) -> None:
    fuzz(node, data)


@pytest.mark.slow
@settings(max_examples=5000, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=attacks)
def test_the_node_serves_a_correct_client_after_any_bytes_thoroughly(
    node: tuple[FreeRuntime, Probe], data: bytes
) -> None:
    fuzz(node, data)
