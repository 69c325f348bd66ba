"""Clients of the Raft key-value service.

Where it sits: ``RaftClient`` is the library a user calls, from any process: it
talks to the servers' client ports over TCP (``impl.raft.server``).  ``NodeClient``
is the same client for code running as a runtime node (simulations: the
controlled scheduler's client nodes, ``impl.raft.simulation``).  Both share one
retry loop (``_Session``).

Every call blocks until the leader has answered: ``put``, ``cas`` and ``delete``
once their command is committed and applied, ``get`` once a ReadIndex round has
confirmed the leader (linearizable).  A client finds the leader by asking any
server (a follower answers with its guess, which the client follows at once);
without a guess it tries the next server after a backoff that doubles from
``backoff`` to ``max_backoff``.  Each command has the client's id and a sequence
number, so a command re-sent after a lost answer or to a new leader is applied
once (``impl.raft.kv``); one client runs one call at a time (``RaftClient`` is
thread-safe: concurrent calls on one client take turns; for parallel calls use
one client per thread, which costs a socket per server it talks to).
"""

from __future__ import annotations

import itertools
import os
import socket
import struct
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import attrs

from distcheck.impl.raft.messages import CLIENT_MESSAGES, Command, Query, Replies, Reply, Status, StatusReply
from distcheck.impl.resilience import UNBOUNDED, RetryError, Retrying
from distcheck.impl.runtime.actor import MessageError, encode
from distcheck.impl.runtime.api import Context, Envelope
from distcheck.impl.runtime.tcp import FrameError, decode_frame, encode_frame
from distcheck.impl.telemetry import current, observe, span

Address = tuple[str, int]
_LENGTH = struct.Struct(">I")
_MAX_REPLY = 16 << 20


class RaftError(Exception):
    """The service could not answer."""


class Unavailable(RaftError):
    """No leader answered within the call's timeout.  A command may still be applied
    later (it was sent); re-sending it from the same client applies it at most once."""


@attrs.frozen
class ClientTiming:
    """Seconds."""

    #: how long to wait for one server's answer before trying again
    attempt: float = 1.0
    #: first and longest wait before trying the next server when none knows a leader
    backoff: float = 0.02
    max_backoff: float = 0.5
    #: a call gives up (``Unavailable``) after this long
    timeout: float = 30.0


def parse_cluster(text: str) -> dict[str, Address]:
    """``n1=127.0.0.1:7001,n2=...`` as {name: (host, port)}; ValueError saying what is wrong."""
    out: dict[str, Address] = {}
    for part in text.split(","):
        name, eq, where = part.strip().partition("=")
        host, colon, port = where.rpartition(":")
        if not eq or not name or not colon or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"bad cluster member {part.strip()!r}: expected NAME=HOST:PORT")
        if name in out:
            raise ValueError(f"server {name!r} is named twice in the cluster")
        out[name] = (host, int(port))
    return out


class _NoLeader(Exception):
    """An attempt of a call got no answer from a leader (retried)."""


class _Busy(Exception):
    """A membership change was refused while another is in progress (retried)."""


class _Session:
    """The retry loop both clients share; ``_ask(server, message, timeout)`` is the
    transport (the answer to this call, or None)."""

    def __init__(self, servers: Sequence[str], client_id: str, timing: ClientTiming) -> None:
        if not servers:
            raise ValueError("a client needs at least one server")
        self.servers = tuple(servers)
        self.client_id = client_id
        self.timing = timing
        self.seq = 0
        self.target = 0
        #: the server that answered the last call (the leader, then)
        self.leader: str | None = None

    # ------------------------------------------------------------ the API

    def put(self, key: str, value: Any) -> None:
        self.execute({"op": "put", "key": key, "value": value})

    def get(self, key: str) -> Any:
        """The key's value (None if it has none), linearizably."""
        return self.execute({"op": "get", "key": key})

    def cas(self, key: str, expected: Any, new: Any) -> bool:
        """Set ``key`` to ``new`` if its value is ``expected`` (None: absent); whether it did."""
        return bool(self.execute({"op": "cas", "key": key, "expected": expected, "value": new}))

    def delete(self, key: str) -> bool:
        """Remove ``key``; whether it was there."""
        return bool(self.execute({"op": "delete", "key": key}))

    def add_server(self, name: str) -> bool:
        """Make server ``name`` (one of the cluster's ``--cluster`` list) a voting member;
        whether that changed anything.  Changes go one at a time: the call waits for a
        change in progress.  ValueError for a server the cluster does not know."""
        return bool(self.execute({"op": "add_server", "key": name}))

    def remove_server(self, name: str) -> bool:
        """Take server ``name`` out of the voting members (it can then be stopped);
        whether that changed anything.  ValueError for the last member."""
        return bool(self.execute({"op": "remove_server", "key": name}))

    def command(self, op: Mapping[str, Any]) -> Any:
        """Apply ``op``, an operation of the cluster's state machine (``impl.raft.machine``),
        once; its result.  The servers refuse an operation their machine does not take
        (no answer: ``Unavailable``).  For services on Raft other than the key-value one."""
        return self._call(op)

    def read(self, key: str) -> Any:
        """A linearizable read (ReadIndex) of ``key``, as the state machine answers it."""
        return self._call({"op": "get", "key": key})

    def execute(self, op: Mapping[str, Any]) -> Any:
        if op.get("op") not in ("add_server", "remove_server"):
            return self._execute(op)
        # A "busy" answer applied nothing, so asking again (a new command) is safe.
        waits = self._policy(retry_on=_Busy, idempotent=True)
        try:
            for attempt in waits:
                result = self._execute(op)  # its own errors are the caller's, as they are
                with attempt:
                    if result == "busy":
                        raise _Busy  # another change is in progress: back off
                if attempt.exception is None:
                    break
        except RetryError:
            raise Unavailable(f"another membership change did not end within {self.timing.timeout:g} s") from None
        if isinstance(result, str) and result.startswith("error: "):
            raise ValueError(result.removeprefix("error: "))
        return result == "changed"

    def _execute(self, op: Mapping[str, Any]) -> Any:
        if not isinstance(op.get("key"), str):
            raise TypeError(f"a key must be a string, got {op.get('key')!r}")
        # One span per call (a new trace unless the caller is in one): every server
        # the command reaches adds its spans to it (impl.telemetry).
        name = str(op["op"])
        started = self._now()
        with span(f"raft.{name}", attributes={"distcheck.node": self.client_id, "distcheck.key": str(op["key"])}):
            result = self._call(op)
        observe("distcheck.client.latency", self._now() - started, operation=f"raft.{name}")
        return result

    def _call(self, op: Mapping[str, Any]) -> Any:
        self.seq += 1
        seq = self.seq
        if op["op"] == "get":
            request: Any = Query("", self.client_id, seq, str(op["key"]))
        else:
            request = Command("", self.client_id, seq, dict(op))
        # The client id and sequence number are the idempotency key: the service
        # applies a command once however often it is sent (impl.raft.kv).
        try:
            for attempt in self._policy(retry_on=_NoLeader, key=f"{self.client_id}:{seq}"):
                with attempt:
                    server = self.servers[self.target]
                    answer = self._ask(server, request, attempt.bounded(self.timing.attempt))
                    if answer is not None and answer.ok:
                        self.leader = server
                        result = answer.result
                    else:
                        hint = answer.leader if answer is not None else None
                        if hint is not None and hint in self.servers and hint != server:
                            self.target = self.servers.index(hint)
                            attempt.retry_at_once()  # follow it at once
                        else:
                            self.target = (self.target + 1) % len(self.servers)
                        raise _NoLeader
                if attempt.exception is None:
                    return result
        except RetryError:
            pass
        raise Unavailable(f"no leader answered within {self.timing.timeout:g} s (servers: {', '.join(self.servers)})")

    def _policy(self, retry_on: type[Exception], idempotent: bool = False, key: str | None = None) -> Retrying:
        """Retries with a backoff doubling from ``backoff`` to ``max_backoff``, within
        the call's ``timeout``, on this client's clock."""
        pause = self.timing.backoff > 0  # a backoff of 0: try again at once, as it always did
        return Retrying(
            base=self.timing.backoff if pause else 1.0,
            cap=max(self.timing.backoff, self.timing.max_backoff) if pause else 1.0,
            backoff=pause,
            jitter="none",
            max_attempts=UNBOUNDED,
            deadline=self.timing.timeout,
            retry_on=retry_on,
            idempotent=idempotent,
            idempotency_key=key,
            clock=self._now,
            sleep=self._sleep,
            name="raft",
        )

    # ------------------------------------------------------------ transport

    def _ask(self, server: str, request: Any, timeout: float) -> Reply | None:
        raise NotImplementedError

    def _now(self) -> float:
        raise NotImplementedError

    def _sleep(self, seconds: float) -> None:
        raise NotImplementedError


class NodeClient(_Session):
    """The client for code running as a runtime node (``ctx`` is the node's context;
    its name is the client's id unless ``client_id`` says otherwise)."""

    def __init__(
        self,
        ctx: Context,
        servers: Sequence[str],
        timing: ClientTiming = ClientTiming(),
        client_id: str | None = None,
    ) -> None:
        super().__init__(servers, client_id or ctx.name, timing)
        self.ctx = ctx

    def _ask(self, server: str, request: Any, timeout: float) -> Reply | None:
        self.ctx.send(server, encode(request))
        deadline = self.ctx.now() + timeout
        # (a wait shorter than the clock's resolution would not move time, and spin)
        while (left := deadline - self.ctx.now()) > 1e-6:
            item = self.ctx.receive(timeout=left)
            if not isinstance(item, Envelope):
                continue
            try:
                answer = CLIENT_MESSAGES.decode(item.msg)
                answers = [CLIENT_MESSAGES.decode(a) for a in answer.items] if isinstance(answer, Replies) else [answer]
            except MessageError as exc:
                self.ctx.log(f"ignored a message from {item.src}: {exc}")
                continue
            for answer in answers:
                if isinstance(answer, Reply) and answer.client == self.client_id and answer.seq == request.seq:
                    return answer
        return None

    def _now(self) -> float:
        return self.ctx.now()

    def _sleep(self, seconds: float) -> None:
        self.ctx.sleep(seconds)


_ids = itertools.count(1)


class RaftClient(_Session):
    """The client library: ``RaftClient("n1=127.0.0.1:8001,n2=...")`` or a mapping of
    server name to its **client** address (``impl.raft.server``: by default the
    server's peer port + 1000).  Cheap to create (no thread; a connection per server
    it talks to, opened when first needed); thread-safe (calls take turns)."""

    def __init__(
        self,
        servers: str | Mapping[str, Address],
        timing: ClientTiming = ClientTiming(),
        client_id: str | None = None,
    ) -> None:
        addresses = parse_cluster(servers) if isinstance(servers, str) else dict(servers)
        if client_id is None:
            client_id = f"{socket.gethostname()}:{os.getpid()}:{next(_ids)}:{os.urandom(4).hex()}"
        super().__init__(list(addresses), client_id, timing)
        self.addresses = addresses
        self._conns: dict[str, socket.socket] = {}
        self._lock = threading.RLock()

    def execute(self, op: Mapping[str, Any]) -> Any:
        with self._lock:
            return super().execute(op)

    def command(self, op: Mapping[str, Any]) -> Any:
        with self._lock:
            return super().command(op)

    def read(self, key: str) -> Any:
        with self._lock:
            return super().read(key)

    def status(self, server: str, timeout: float = 1.0) -> StatusReply | None:
        """What ``server`` says of itself (role, term, leader...), or None if it does not answer."""
        with self._lock:
            answer = self._exchange(server, Status(""), timeout, lambda a: isinstance(a, StatusReply))
            return answer if isinstance(answer, StatusReply) else None

    def close(self) -> None:
        with self._lock:
            for conn in self._conns.values():
                conn.close()
            self._conns.clear()

    def __enter__(self) -> RaftClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------ transport

    def _ask(self, server: str, request: Any, timeout: float) -> Reply | None:
        def matches(answer: Any) -> bool:
            return isinstance(answer, Reply) and answer.client == self.client_id and answer.seq == request.seq

        answer = self._exchange(server, request, timeout, matches)
        return answer if isinstance(answer, Reply) else None

    def _exchange(self, server: str, request: Any, timeout: float, matches: Callable[[Any], bool]) -> Any:
        deadline = time.monotonic() + timeout
        try:
            conn = self._conns.get(server)
            if conn is None:
                conn = socket.create_connection(self.addresses[server], timeout=timeout)
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                self._conns[server] = conn
            conn.settimeout(max(deadline - time.monotonic(), 0.001))
            conn.sendall(encode_frame(self.client_id, encode(request), current()))
            while True:
                answer = CLIENT_MESSAGES.decode(self._read(conn, deadline))
                if matches(answer):
                    return answer  # else: a late answer to an earlier attempt
        except (OSError, FrameError, MessageError):
            # Timed out, refused, reset or garbled: this connection is done; the
            # caller tries again (on a new one).
            dropped = self._conns.pop(server, None)
            if dropped is not None:
                dropped.close()
            return None

    @staticmethod
    def _read(conn: socket.socket, deadline: float) -> dict[str, Any]:
        def exactly(n: int) -> bytes:
            chunks, got = [], 0
            while got < n:
                conn.settimeout(max(deadline - time.monotonic(), 0.001))
                chunk = conn.recv(n - got)
                if not chunk:
                    raise ConnectionError("the server closed the connection")
                chunks.append(chunk)
                got += len(chunk)
            return b"".join(chunks)

        (length,) = _LENGTH.unpack(exactly(_LENGTH.size))
        if length > _MAX_REPLY:
            raise FrameError(f"oversized reply: {length} bytes")
        return decode_frame(exactly(length))[1]

    def _now(self) -> float:
        return time.monotonic()

    def _sleep(self, seconds: float) -> None:
        time.sleep(seconds)
