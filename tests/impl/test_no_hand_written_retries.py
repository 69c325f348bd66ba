"""Every retry loop in impl/ is built on impl/resilience: a static check.

A hand-written retry loop is a ``while`` or ``for`` loop whose body both sends (a
message, a frame, a connection) and waits (a sleep, a ``wait``, a call with a
``timeout=``), directly or through the module's own functions (``f(...)`` and ``self.f(...)``,
followed by name).
A loop built on the library is a ``for attempt in <policy>:`` whose body enters
``with attempt:``; what happens inside such a loop is the library's, so it counts
neither for the loop around it nor for a function that calls it.  What remains is
either a retry to switch to ``Retrying`` or a protocol timer, named in ``ALLOWED``
with its reason.  The checker is tested on planted loops below, so that it is seen
to fail.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import attrs
import pytest

from distcheck.impl.resilience import UNBOUNDED, RetryError, Retrying

IMPL = Path(__file__).resolve().parents[2] / "impl"

#: calls that put something on the wire (a message, a frame, a new connection)
SENDS = frozenset({"send", "sendall", "publish", "create_connection"})
#: calls that wait, besides any call given a ``timeout=``
WAITS = frozenset({"sleep", "wait"})

#: (file under impl/, the function holding the loop) -> why the loop is not a client retry
ALLOWED: dict[tuple[str, str], str] = {
    ("lock/client.py", "LockClient._renew_loop"): (
        "the lease keep-alive: renews every third of the trusted time whether or not the last renewal was answered"
    ),
    ("paxos.py", "KVClient._attempt"): (
        "the wait of one attempt: its one send follows a leader's hint (at most once per attempt), not a retry"
    ),
    ("messaging/simulation.py", "Consumer.main"): (
        "a consumer's event loop: one receive serves deliveries, heartbeats and the Apply re-send timer together"
    ),
}


@attrs.frozen
class Loop:
    """A loop that sends and waits outside impl/resilience."""

    path: str
    function: str
    line: int

    def __str__(self) -> str:
        return f"impl/{self.path}:{self.line} in {self.function}"


def _call_name(call: ast.Call) -> str | None:
    if isinstance(call.func, ast.Attribute):
        return call.func.attr
    if isinstance(call.func, ast.Name):
        return call.func.id
    return None


def _is_own_call(call: ast.Call) -> bool:
    """``f(...)`` or ``self.f(...)``: a call the module itself may define (calls on
    other objects are not followed: the name alone would say too little)."""
    func = call.func
    if isinstance(func, ast.Name):
        return True
    return isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) and func.value.id in ("self", "cls")


def _is_resilient(loop: ast.For | ast.AsyncFor | ast.While) -> bool:
    """``for attempt in policy: ... with attempt: ...``: the library's attempt loop."""
    if not isinstance(loop, ast.For) or not isinstance(loop.target, ast.Name):
        return False
    name = loop.target.id
    return any(
        isinstance(node, ast.With)
        and any(isinstance(item.context_expr, ast.Name) and item.context_expr.id == name for item in node.items)
        for node in ast.walk(loop)
    )


def _own_nodes(body: list[ast.stmt]) -> Iterator[ast.AST]:
    """Every node of ``body``, leaving out the inside of library attempt loops and of
    nested function definitions (each function is analysed on its own)."""
    stack: list[ast.AST] = list(body)
    while stack:
        node = stack.pop()
        if isinstance(node, ast.For) and _is_resilient(node):
            stack.append(node.iter)
            continue
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)):
            continue
        yield node
        stack.extend(ast.iter_child_nodes(node))


def _loops(body: list[ast.stmt]) -> Iterator[ast.For | ast.AsyncFor | ast.While]:
    """Every loop of a function's body, at any depth (library loops and the loops
    inside them included), but not those of nested function definitions."""
    stack: list[ast.AST] = list(body)
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)):
            continue
        if isinstance(node, (ast.While, ast.For, ast.AsyncFor)):
            yield node
        stack.extend(ast.iter_child_nodes(node))


def _direct_effects(body: list[ast.stmt]) -> tuple[set[str], set[str]]:
    """(effects: "send" and/or "wait", names of the functions called)."""
    effects: set[str] = set()
    called: set[str] = set()
    for node in _own_nodes(body):
        if not isinstance(node, ast.Call):
            continue
        name = _call_name(node)
        if name in SENDS:
            effects.add("send")
        if name in WAITS or any(k.arg == "timeout" for k in node.keywords):
            effects.add("wait")
        if _is_own_call(node) and name is not None:
            called.add(name)
    return effects, called


def _functions(tree: ast.Module) -> Iterator[tuple[str, ast.FunctionDef | ast.AsyncFunctionDef]]:
    """Every function of a module with its qualified name (Class.method, outer.inner)."""

    def walk(node: ast.AST, prefix: str) -> Iterator[tuple[str, ast.FunctionDef | ast.AsyncFunctionDef]]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                qualname = f"{prefix}{child.name}"
                yield qualname, child
                yield from walk(child, qualname + ".")
            elif isinstance(child, ast.ClassDef):
                yield from walk(child, f"{prefix}{child.name}.")

    yield from walk(tree, "")


def retry_loops(source: str, path: str) -> list[Loop]:
    """The loops of one module that send and wait outside impl/resilience."""
    tree = ast.parse(source, filename=path)
    functions = list(_functions(tree))
    direct = {qualname: _direct_effects(fn.body) for qualname, fn in functions}
    # What calling a function by its (short) name may do: a fixed point over the
    # module's own functions, every function of that name counted.
    by_name: dict[str, set[str]] = {}
    changed = True
    while changed:
        changed = False
        for qualname, (effects, called) in direct.items():
            short = qualname.rsplit(".", 1)[-1]
            reach = set(effects).union(*(by_name.get(c, set()) for c in called))
            if not reach <= by_name.get(short, set()):
                by_name[short] = by_name.get(short, set()) | reach
                changed = True
    found: list[Loop] = []
    for qualname, fn in functions:
        for node in _loops(fn.body):
            if isinstance(node, ast.For) and _is_resilient(node):
                continue  # the library's loop: only loops inside it are checked
            effects, called = _direct_effects([node])
            reach = set(effects).union(*(by_name.get(c, set()) for c in called))
            if {"send", "wait"} <= reach:
                found.append(Loop(path, qualname, node.lineno))
    return found


def impl_retry_loops() -> list[Loop]:
    found: list[Loop] = []
    for file in sorted(IMPL.rglob("*.py")):
        relative = file.relative_to(IMPL).as_posix()
        if relative.startswith(("resilience/", "runtime/")):
            continue
        found += retry_loops(file.read_text(encoding="utf-8"), relative)
    return found


# --------------------------------------------------------------- the check


def test_no_client_in_impl_has_a_hand_written_retry_loop() -> None:
    found = impl_retry_loops()
    unexplained = [str(loop) for loop in found if (loop.path, loop.function) not in ALLOWED]
    assert unexplained == [], "retry loops not built on impl/resilience (use Retrying, or explain in ALLOWED):\n" + (
        "\n".join(unexplained)
    )


def test_every_allowed_loop_is_still_there() -> None:
    """An entry of ALLOWED whose loop is gone (or was switched) is stale: remove it."""
    flagged = {(loop.path, loop.function) for loop in impl_retry_loops()}
    stale = sorted(f"impl/{path} {function}" for path, function in ALLOWED if (path, function) not in flagged)
    assert stale == []


def test_the_clients_retry_through_the_library() -> None:
    """The clients named in issue #20 each hold a library attempt loop (so the first
    test is not passing because their loops were simply not seen)."""
    clients = [
        "lock/client.py",
        "paxos.py",
        "raft/client.py",
        "raft/simulation.py",
        "messaging/client.py",
        "messaging/simulation.py",
        "pbft/client.py",
        "registers/abd.py",
        "registers/dynamo.py",
        "saga/orchestrator.py",
        "twophase.py",
    ]
    for client in clients:
        tree = ast.parse((IMPL / client).read_text(encoding="utf-8"))
        loops = [n for n in ast.walk(tree) if isinstance(n, ast.For) and _is_resilient(n)]
        imports = [
            n for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module == "distcheck.impl.resilience"
        ]
        assert loops and imports, client


# ------------------------------------------------ the checker fails when it should

PLANTED = """
class Client:
    def call(self, request):
        while True:                      # the hand-written retry: re-send every second
            self.ctx.send("server", request)
            reply = self._await(1.0)
            if reply is not None:
                return reply

    def _await(self, timeout):
        return self.ctx.receive(timeout=timeout)

    def backoff(self, request):
        delay = 0.1
        for _ in range(5):               # a backoff loop, with the sleep in the body
            try:
                return socket.create_connection(request)
            except OSError:
                time.sleep(delay)
                delay *= 2

    def drain(self):
        while self.ctx.receive(timeout=0.1) is not None:   # waits, sends nothing: no retry
            pass

    def broadcast(self, request):
        for peer in self.peers:          # sends, waits for nothing: no retry
            self.ctx.send(peer, request)
"""

SWITCHED = """
class Client:
    def call(self, request):
        for attempt in Retrying(backoff=False, max_attempts=UNBOUNDED, retry_on=TimeoutError):
            with attempt:
                self.ctx.send("server", request)
                reply = self._await(attempt.bounded(1.0))
            if attempt.exception is None:
                return reply

    def _await(self, timeout):
        while (item := self.ctx.receive(timeout=timeout)) is not None:
            if item.ok:
                return item
        raise TimeoutError

    def calls(self, requests):
        for request in requests:         # calls a function whose retries are the library's
            self.call(request)
"""


def test_the_checker_finds_planted_retry_loops_and_only_those() -> None:
    found = retry_loops(PLANTED, "planted.py")
    assert [(loop.function, loop.line) for loop in found] == [("Client.call", 4), ("Client.backoff", 15)]


def test_a_loop_switched_to_the_library_passes() -> None:
    assert retry_loops(SWITCHED, "switched.py") == []


def test_a_retry_hidden_in_a_library_loop_body_is_still_found() -> None:
    """Only the attempt loop itself is the library's: a hand-written re-send loop
    nested inside an attempt, or a loop that only looks like one, is still found."""
    resend_inside = (
        "                while not self.ctx.receive(timeout=1.0):\n"
        "                    self.ctx.send('server', request)\n"
        "                reply = None"
    )
    nested = SWITCHED.replace("                reply = self._await(attempt.bounded(1.0))", resend_inside)
    assert [loop.function for loop in retry_loops(nested, "nested.py")] == ["Client.call"]
    lookalike = SWITCHED.replace("            with attempt:", "            if attempt:")
    assert [loop.function for loop in retry_loops(lookalike, "lookalike.py")] == ["Client.call", "Client.calls"]


# ------------------------------------------- what the clients needed of the library


class _FakeTime:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def test_without_a_backoff_each_attempt_is_the_wait_and_the_deadline_holds() -> None:
    """A client re-sending every 1 s under a 3.5 s deadline: attempts at 0, 1, 2, 3,
    the last one cut to 0.5 s, no sleep between them, then RetryError(deadline)."""
    time = _FakeTime()
    started: list[tuple[float, float]] = []
    policy = Retrying(
        backoff=False,
        max_attempts=UNBOUNDED,
        deadline=3.5,
        retry_on=TimeoutError,
        idempotency_key="c1:7",
        clock=time.clock,
        sleep=time.sleep,
    )
    with pytest.raises(RetryError) as gave_up:
        for attempt in policy:
            with attempt:
                assert attempt.idempotency_key == "c1:7"
                wait = attempt.bounded(1.0)
                started.append((time.now, wait))
                time.now += wait  # no answer within the wait
                raise TimeoutError
    assert started == [(0.0, 1.0), (1.0, 1.0), (2.0, 1.0), (3.0, 0.5)]
    assert time.sleeps == [] and gave_up.value.reason == "deadline" and gave_up.value.attempts == 4


def test_a_retry_at_once_takes_no_sleep_and_leaves_the_backoff_where_it_was() -> None:
    time = _FakeTime()
    redirects = {2, 3}  # attempts 2 and 3 were redirected to another server
    policy = Retrying(
        base=0.5, cap=4.0, jitter="none", max_attempts=6, idempotent=True, clock=time.clock, sleep=time.sleep
    )
    with pytest.raises(RetryError):
        for attempt in policy:
            with attempt:
                if attempt.number in redirects:
                    attempt.retry_at_once()
                raise ConnectionError
    # after 1: 0.5; after 2 and 3: none; after 4: 1.0; after 5: 2.0 (the budget ends at 6)
    assert time.sleeps == [0.5, 1.0, 2.0]


def test_backoff_must_be_a_bool() -> None:
    with pytest.raises(ValueError, match="backoff must be True or False"):
        Retrying(backoff="no")  # type: ignore[arg-type]
