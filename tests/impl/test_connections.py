"""A free-mode node against hostile connections over TCP on loopback: each bad
behaviour of issue #13 (a frame truncated and held open, a slow sender, a frame
nested 100,000 deep, an oversize frame, more connections than allowed, accept()
failing, patched and for real in a subprocess out of descriptors, a thousand short
connections), and after each a correct client served within a second, no thread
killed, nothing printed, nothing left to grow; and a flood of frames held back
at the mailbox's limit without losing any."""

from __future__ import annotations

import errno
import json
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from distcheck.impl.runtime import Context, Envelope, FreeRuntime
from distcheck.impl.runtime.free import ClientPort
from distcheck.impl.runtime.tcp import ConnectionLimits, FrameError, decode_frame, encode_frame, json_depth
from tests.impl.hostile import SERVED_WITHIN, Probe, attack, closed_by_node, echo_node
from tests.impl.waiting import WAIT, wait_for


@pytest.fixture(autouse=True)
def no_thread_dies(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Fail a test in which any thread ends with an uncaught exception (which would
    print a traceback on stderr)."""
    died: list[str] = []

    def hook(args: threading.ExceptHookArgs) -> None:
        died.append(f"{args.thread.name if args.thread else '?'}: {args.exc_type.__name__}: {args.exc_value}")

    monkeypatch.setattr(threading, "excepthook", hook)
    yield died
    assert died == []


def notes(runtime: FreeRuntime, text: str) -> list[str]:
    return [d for d in runtime.diagnostics if text in d]


def served(runtime: FreeRuntime, probe: Any) -> None:
    assert probe.ping(runtime.addresses["echo"]), f"a correct client not served within {SERVED_WITHIN} s"


def test_a_correct_client_is_served(tmp_path: Path) -> None:
    with echo_node(tmp_path) as (runtime, probe):
        served(runtime, probe)
        served(runtime, probe)
    assert runtime.errors == [] and runtime.alive() == []


def test_a_frame_truncated_and_held_open_is_cut_off_at_its_deadline(tmp_path: Path) -> None:
    with echo_node(tmp_path, ConnectionLimits(frame_deadline=0.3)) as (runtime, probe):
        with socket.create_connection(runtime.addresses["echo"], timeout=WAIT) as held:
            held.sendall(struct.pack(">I", 50) + b'{"src": "x"')  # 11 of 50 bytes, then nothing
            assert closed_by_node(held)  # the reader let go of it: the frame was late
        assert notes(runtime, "late frame: 11 of 50 bytes of its payload arrived within the 0.3 s deadline")
        served(runtime, probe)
        assert runtime.connection_stats["echo"].rejected == 1
    assert runtime.errors == [] and runtime.alive() == []


def test_a_slow_sender_is_cut_off_at_the_frame_deadline(tmp_path: Path) -> None:
    frame = encode_frame("client", {"type": "ping", "n": 1, "padding": "x" * 40})
    sent: list[int] = []
    with echo_node(tmp_path, ConnectionLimits(frame_deadline=0.5)) as (runtime, probe):
        with socket.create_connection(runtime.addresses["echo"], timeout=WAIT) as slow:
            try:
                for byte in frame:  # one byte every 0.05 s: the frame would take 3 s
                    slow.sendall(bytes([byte]))
                    sent.append(byte)
                    time.sleep(0.05)
            except OSError:
                pass  # the node closed the connection under us
            assert closed_by_node(slow)
        assert len(sent) < len(frame)  # cut off before the end, not served slowly
        assert notes(runtime, "late frame") and notes(runtime, "within the 0.5 s deadline")
        served(runtime, probe)
    assert runtime.errors == [] and runtime.alive() == []


def test_an_idle_connection_is_closed_and_counted(tmp_path: Path) -> None:
    with echo_node(tmp_path, ConnectionLimits(idle_timeout=0.3)) as (runtime, probe):
        with socket.create_connection(runtime.addresses["echo"], timeout=WAIT) as idle:
            assert closed_by_node(idle)
        assert notes(runtime, "closed an idle connection") and notes(runtime, "no frame for 0.3 s")
        assert runtime.connection_stats["echo"].idle >= 1
        served(runtime, probe)
    assert runtime.errors == [] and runtime.alive() == []


def deep(depth: int) -> bytes:
    return b'{"src":"client","msg":{"type":"ping","n":' + b"[" * depth + b"]" * depth + b"}}"


@pytest.mark.parametrize(
    "payload",
    [b"[" * 100_000, deep(100_000), b"{" * 100_000],
    ids=["unclosed-arrays", "valid-json", "unclosed-objects"],
)
def test_a_frame_nested_100000_deep_is_refused_and_noted(tmp_path: Path, payload: bytes) -> None:
    with echo_node(tmp_path) as (runtime, probe):
        with socket.create_connection(runtime.addresses["echo"], timeout=WAIT) as conn:
            conn.sendall(struct.pack(">I", len(payload)) + payload)
            assert closed_by_node(conn)
        wait_for(lambda: bool(notes(runtime, "deep, the limit is 64")), "the refusal to be noted")
        assert notes(runtime, "JSON nested 1000")  # 100,000 and the two objects around it, if any
        served(runtime, probe)
        assert runtime.connection_stats["echo"].rejected == 1
    assert runtime.errors == [] and runtime.alive() == []


def test_nesting_within_the_limit_is_served() -> None:
    assert json_depth(deep(63)) == 65  # the frame's object and its msg, then 63 arrays
    assert decode_frame(deep(62), max_depth=64)[0] == "client"
    with pytest.raises(FrameError, match="nested 65 deep"):
        decode_frame(deep(63), max_depth=64)
    # brackets inside strings are text, not structure
    text = b'{"src":"client","msg":{"type":"ping","s":"' + b"[" * 1000 + b'\\"[[["}}'
    assert decode_frame(text)[1]["s"].startswith("[[[")


@pytest.mark.parametrize("announced", [2 << 20, 0xFFFFFFFF])
def test_an_oversize_frame_is_refused_unread(tmp_path: Path, announced: int) -> None:
    with echo_node(tmp_path) as (runtime, probe):
        with socket.create_connection(runtime.addresses["echo"], timeout=WAIT) as conn:
            conn.sendall(struct.pack(">I", announced) + b"x" * 1000)
            assert closed_by_node(conn)
        assert notes(runtime, f"oversized frame: {announced} bytes, the limit is {1 << 20}")
        served(runtime, probe)
    assert runtime.errors == [] and runtime.alive() == []


def test_connections_over_the_limit_are_refused_and_counted(tmp_path: Path) -> None:
    with echo_node(tmp_path, ConnectionLimits(max_connections=4)) as (runtime, probe):
        address = runtime.addresses["echo"]
        stats = runtime.connection_stats["echo"]
        held = [socket.create_connection(address, timeout=WAIT) for _ in range(4)]
        wait_for(lambda: stats.open == 4, "four connections open")
        excess = [socket.create_connection(address, timeout=WAIT) for _ in range(3)]
        assert all(closed_by_node(conn) for conn in excess)
        assert stats.refused == 3 and stats.open == 4 and stats.accepted == 4
        assert len(notes(runtime, "refused a connection from 127.0.0.1:")) == 3  # noted before closed
        assert notes(runtime, "4 connections are open")
        assert not probe.ping(address, within=0.2)  # the node is full: refused too
        for conn in held + excess:
            conn.close()
        wait_for(lambda: stats.open == 0, "the held connections to be closed")
        served(runtime, probe)
    assert runtime.errors == [] and runtime.alive() == []


def test_connections_held_open_free_their_places_at_the_idle_timeout(tmp_path: Path) -> None:
    limits = ConnectionLimits(max_connections=3, idle_timeout=0.5)
    with echo_node(tmp_path, limits) as (runtime, probe):
        held = [socket.create_connection(runtime.addresses["echo"], timeout=WAIT) for _ in range(3)]
        wait_for(lambda: runtime.connection_stats["echo"].idle == 3, "the idle timeout to close them")
        served(runtime, probe)  # while the attacker still holds its (dead) sockets
        for conn in held:
            conn.close()
    assert runtime.errors == [] and runtime.alive() == []


def test_accept_failing_is_retried_with_backoff_and_noted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Descriptors exhausted: the listener's accept() raises EMFILE for a while.  The
    accept loop notes it, backs off and keeps trying, and serves once it works."""
    exhausted = threading.Event()
    real_accept = socket.socket.accept
    limits = ConnectionLimits(accept_backoff=0.01, accept_backoff_max=0.1)
    with echo_node(tmp_path, limits) as (runtime, probe):
        listener = runtime.nodes["echo"].listener

        def accept(self: socket.socket) -> tuple[socket.socket, Any]:
            if self is listener and exhausted.is_set():
                raise OSError(errno.EMFILE, "Too many open files")
            return real_accept(self)

        monkeypatch.setattr(socket.socket, "accept", accept)
        exhausted.set()
        stats = runtime.connection_stats["echo"]
        # a client arrives while the node cannot accept: it waits in the backlog
        pending = socket.create_connection(runtime.addresses["echo"], timeout=WAIT)
        wait_for(lambda: stats.accept_errors >= 5, "accept() to fail a few times")
        exhausted.clear()
        pending.close()
        served(runtime, probe)
        assert notes(runtime, "echo: accept failed: [Errno 24] Too many open files; retrying in 0.01 s")
        assert notes(runtime, "retrying in 0.1 s")  # the backoff grew to its maximum
        assert runtime.alive() == ["echo.main"]  # the node's own thread accepts: no other
    assert runtime.errors == [] and runtime.alive() == []


def test_a_thousand_short_connections_leave_threads_and_diagnostics_bounded(tmp_path: Path) -> None:
    limits = ConnectionLimits(diagnostics_kept=100)
    with echo_node(tmp_path, limits) as (runtime, probe):
        address = runtime.addresses["echo"]
        for i in range(1000):
            # every other one sends garbage (one diagnostic line each), the rest nothing
            attack(address, b"\x00\x00\x00\x02[]" if i % 2 else b"")
        stats = runtime.connection_stats["echo"]
        wait_for(lambda: stats.accepted == 1000 and stats.open == 0, "every connection to be served and closed")
        served(runtime, probe)
        assert runtime.alive() == ["echo.main"]  # no thread per connection, none left over
        wait_for(lambda: runtime.nodes["echo"].inbound == {}, "the probe's connection to be closed too")
        assert len(runtime.diagnostics) == 100 and runtime.diagnostics.dropped == 400
        assert stats.rejected == 500
    assert runtime.errors == [] and runtime.alive() == []


def test_limits_are_checked_when_built() -> None:
    with pytest.raises(ValueError, match="frame_deadline must be a positive finite number"):
        ConnectionLimits(frame_deadline=0)
    with pytest.raises(ValueError, match="max_connections"):
        ConnectionLimits(max_connections=-1)
    assert FreeRuntime({}, Path("unused"), max_frame=100).limits.max_frame == 100


EXHAUSTED_NODE = r"""
import json, os, resource, sys, time
from pathlib import Path
from distcheck.impl.runtime import Context, Envelope, FreeRuntime
from distcheck.impl.runtime.free import ClientPort
from distcheck.impl.runtime.tcp import ConnectionLimits
from tests.impl.hostile import echo

probe = ("127.0.0.1", int(sys.argv[1]))
limits = ConnectionLimits(accept_backoff_max=0.1)
runtime = FreeRuntime({"echo": echo}, Path(sys.argv[2]), peers={"client": probe}, limits=limits)
runtime.start()
stats = runtime.connection_stats["echo"]
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (min(len(os.listdir("/proc/self/fd")) + 16, soft), hard))
hoard = []
try:
    while True:
        hoard.append(open(os.devnull))
except OSError:
    pass
print(json.dumps({"port": runtime.addresses["echo"][1]}), flush=True)
deadline = time.monotonic() + 30
while stats.accept_errors < 3 and time.monotonic() < deadline:
    time.sleep(0.01)
for f in hoard:
    f.close()
sys.stdin.read()
runtime.stop()
print(json.dumps({"stats": stats.accept_errors, "diagnostics": list(runtime.diagnostics), "errors": runtime.errors}))
"""


def test_a_node_out_of_file_descriptors_keeps_accepting_once_some_are_free(tmp_path: Path) -> None:
    """Real EMFILE: a node in a subprocess with a low RLIMIT_NOFILE and every
    descriptor taken; a client waits in the backlog, accept() fails until
    descriptors are freed, and then the client is served."""
    probe = Probe()
    root = Path(__file__).resolve().parents[2]
    child = subprocess.Popen(
        [sys.executable, "-c", EXHAUSTED_NODE, str(probe.address[1]), str(tmp_path)],
        cwd=root,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None and child.stdin is not None
        port = json.loads(child.stdout.readline())["port"]
        # sent while the node cannot accept: served once descriptors are free again
        assert probe.ping(("127.0.0.1", port), within=WAIT)
        out, err = child.communicate("", timeout=WAIT)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        probe.close()
    report = json.loads(out.strip().splitlines()[-1])
    assert child.returncode == 0 and err == ""  # no traceback, nothing printed
    assert report["stats"] >= 3 and report["errors"] == []
    assert any("echo: accept failed: [Errno 24] Too many open files" in d for d in report["diagnostics"])


def test_a_flood_of_frames_waits_for_room_in_the_mailbox_and_none_is_lost(tmp_path: Path) -> None:
    """A sender faster than the node: the mailbox never holds more than its limit
    (the rest of what was read waits, and the connection is not read meanwhile, so
    TCP pushes back), and every frame arrives, in order."""
    got: list[int] = []
    held: list[int] = []
    ready = threading.Event()

    def slow(ctx: Context) -> None:
        ready.wait()
        while True:
            item = ctx.receive()
            held.append(len(runtime.nodes["slow"].mailbox) + 1)  # what it held before this one
            if isinstance(item, Envelope):
                got.append(int(item.msg["n"]))
                ctx.sleep(0.0005)  # slower than the sender

    runtime = FreeRuntime({"slow": slow}, tmp_path, limits=ConnectionLimits(max_mailbox=100))
    with runtime:
        flood = b"".join(encode_frame("client", {"type": "ping", "n": i}) for i in range(1000))
        with socket.create_connection(runtime.addresses["slow"], timeout=WAIT) as conn:
            conn.sendall(flood)  # about 40 kB: it fits in the socket buffers
            ready.set()
            wait_for(lambda: len(got) == 1000, "every frame to arrive")
    assert got == list(range(1000))
    assert max(held) == 100  # read up to the limit at once, never past it
    assert runtime.errors == [] and runtime.alive() == []


# ------------------------------------------------------------------ client ports


def answering(ctx: Context) -> None:
    """Answers every ping, from a node or a client, to its sender."""
    while True:
        item = ctx.receive()
        if isinstance(item, Envelope) and item.msg.get("type") == "ping":
            ctx.send(item.src, {"type": "pong", "n": item.msg.get("n"), "known": ctx.knows(item.src)})


def read_one(conn: socket.socket) -> dict[str, Any]:
    (length,) = struct.unpack(">I", conn.recv(4, socket.MSG_WAITALL))
    return decode_frame(conn.recv(length, socket.MSG_WAITALL))[1]


def test_a_client_port_answers_each_client_on_its_own_connection(tmp_path: Path) -> None:
    ports = {"srv": ClientPort(0, ConnectionLimits(max_connections=8))}
    with FreeRuntime({"srv": answering}, tmp_path, client_ports=ports) as runtime:
        address = runtime.client_addresses["srv"]
        with (
            socket.create_connection(address, timeout=WAIT) as a,
            socket.create_connection(address, timeout=WAIT) as b,
        ):
            for n in range(3):
                a.sendall(encode_frame("client-a", {"type": "ping", "n": n}))
                b.sendall(encode_frame("client-b", {"type": "ping", "n": 10 + n}))
                assert read_one(a) == {"type": "pong", "n": n, "known": True}
                assert read_one(b) == {"type": "pong", "n": 10 + n, "known": True}
        node = runtime.nodes["srv"]
        wait_for(lambda: node.routes == {}, "the clients' routes to go with their connections")
        assert runtime.connection_stats["srv"].accepted == 2
    assert runtime.errors == [] and runtime.alive() == []


def test_a_client_port_closes_a_connection_whose_frame_it_does_not_admit(tmp_path: Path) -> None:
    def admit(src: str, msg: Any) -> bool:
        return msg.get("type") == "ping" and src != "srv"

    got: list[str] = []

    def node(ctx: Context) -> None:
        while True:
            item = ctx.receive()
            if isinstance(item, Envelope):
                got.append(item.msg["type"])

    ports = {"srv": ClientPort(0, None, admit)}
    with FreeRuntime({"srv": node}, tmp_path, client_ports=ports) as runtime:
        address = runtime.client_addresses["srv"]
        with socket.create_connection(address, timeout=WAIT) as conn:
            conn.sendall(encode_frame("mallory", {"type": "ping"}) + encode_frame("mallory", {"type": "Vote"}))
            assert closed_by_node(conn)
        with socket.create_connection(address, timeout=WAIT) as conn:
            conn.sendall(encode_frame("srv", {"type": "ping"}))  # a client named like a node
            assert closed_by_node(conn)
        assert notes(runtime, "refused frame: a client may not send 'Vote' as 'mallory'")
        assert notes(runtime, "refused frame: a client may not send 'ping' as 'srv'")
        assert got == ["ping"] and runtime.connection_stats["srv"].rejected == 2
    assert runtime.errors == [] and runtime.alive() == []


def test_client_ports_only_for_nodes_hosted_here(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="client ports for nodes not hosted here: elsewhere"):
        FreeRuntime({"srv": answering}, tmp_path, client_ports={"elsewhere": ClientPort()})


def test_a_node_hosted_by_the_same_runtime_gets_messages_without_a_connection(tmp_path: Path) -> None:
    answers: list[int] = []

    def asker(ctx: Context) -> None:
        for n in range(5):
            ctx.send("srv", {"type": "ping", "n": n})
            item = ctx.receive()
            if isinstance(item, Envelope):
                answers.append(int(item.msg["n"]))

    with FreeRuntime({"srv": answering, "asker": asker}, tmp_path) as runtime:
        wait_for(lambda: len(answers) == 5, "five answers")
        assert all(stats.accepted == 0 for stats in runtime.connection_stats.values())
    assert answers == list(range(5))
