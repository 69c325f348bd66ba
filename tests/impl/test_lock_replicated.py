"""The replicated lock service (``impl.lock.replicated``): its state machine on its
own (deterministic, so tested command by command)."""

from __future__ import annotations

from typing import Any

import pytest

from distcheck.impl.lock.replicated import LockMachine, read_key
from distcheck.impl.runtime.actor import MessageError


class Log:
    """Feeds a machine commands as a Raft log would: one index each."""

    def __init__(self) -> None:
        self.machine = LockMachine()
        self.index = 0
        self.seqs: dict[str, int] = {}

    def run(self, client: str, op: dict[str, Any]) -> Any:
        self.index += 1
        seq = self.seqs[client] = self.seqs.get(client, 0) + 1
        return self.machine.apply(self.index, {"id": f"{client}:{seq}", "client": client, "seq": seq, "op": op})


def acquire(session: str, req: str = "r1", grant: bool = True, lock: str = "a") -> dict[str, Any]:
    return {"op": "acquire", "lock": lock, "session": session, "req": req, "ttl": 2.0, "grant": grant}


def test_tokens_come_from_applied_commands_and_a_free_lock_is_granted_when_the_leader_may() -> None:
    log = Log()
    assert log.run("c1", acquire("s1", grant=False)) == {
        "token": 1,
        "req": "r1",
        "granted": False,
        "ttl": 2.0,
        "new": True,
    }
    # the leader's waiting rule was not over: queued, and granted later by a grant of the leader's
    assert log.run("c2", acquire("s2"))["granted"] is False
    log.run("@n1/2", {"op": "grant", "lock": "a", "token": 2})  # not the oldest waiter: nothing
    assert log.machine.table("a").holder is None
    log.run("@n1/2", {"op": "grant", "lock": "a", "token": 1})
    assert log.machine.table("a").holder == 1
    assert log.machine.read(read_key("a", "s1"))["granted"] is True
    # a retry of s2's request (same req) is its place in the queue, not a new token
    assert log.run("c2", acquire("s2")) == {"token": 2, "req": "r1", "granted": False, "ttl": 2.0}
    assert log.run("c2", acquire("s2", req="other")) == {"busy": 2}
    assert log.run("c1", {"op": "release", "lock": "a", "session": "s1", "token": 1}) is True
    assert log.machine.table("a").holder is None  # the leader grants it next, by a command of its own
    log.run("@n1/2", {"op": "grant", "lock": "a", "token": 2})
    assert log.machine.table("a").holder == 2
    assert log.run("c3", acquire("s3"))["token"] == 3  # tokens only go up


def test_an_expiry_loses_to_a_renewal_applied_after_the_leader_decided_it() -> None:
    log = Log()
    log.run("c1", acquire("s1"))
    renew = {"op": "renew", "lock": "a", "session": "s1", "token": 1}
    assert log.run("c1", renew) == {"renewed": True, "ttl": 2.0}
    log.run("@n1/2", {"op": "expire", "lock": "a", "token": 1, "renewals": 0})  # decided before the renewal
    assert log.machine.table("a").holder == 1
    log.run("@n1/2", {"op": "expire", "lock": "a", "token": 1, "renewals": 1})
    assert log.machine.table("a").holder is None and log.machine.read(read_key("a", "s1")) is None
    assert log.run("c1", renew) == {"renewed": False}  # lost for good
    assert log.run("c1", {"op": "release", "lock": "a", "session": "s1", "token": 1}) is False


def test_a_waiter_may_give_up_its_place() -> None:
    log = Log()
    log.run("c1", acquire("s1"))
    log.run("c2", acquire("s2"))
    log.run("c3", acquire("s3"))
    assert log.run("c2", {"op": "release", "lock": "a", "session": "s2", "token": 2}) is True
    assert log.machine.table("a").queue == [3]


def test_a_snapshot_restores_the_same_machine() -> None:
    log = Log()
    log.run("c1", acquire("s1"))
    log.run("c2", acquire("s2"))
    log.run("c1", {"op": "renew", "lock": "a", "session": "s1", "token": 1})
    copy = LockMachine()
    copy.restore(log.machine.snapshot())
    assert copy == log.machine


@pytest.mark.parametrize(
    "op",
    [
        {"op": "grant", "lock": "a", "token": 1},  # the leader's alone
        {"op": "acquire", "lock": "a", "session": "s", "req": "r", "ttl": 0},
        {"op": "acquire", "lock": "a", "session": "s", "req": "r", "ttl": float("inf")},
        {"op": "acquire", "lock": "a", "session": "s", "req": "r", "ttl": 1.0, "grant": True},  # a client's stamp
        {"op": "renew", "lock": "a", "session": "s", "token": True},
        {"op": "put", "key": "k", "value": 1},
    ],
)
def test_a_client_command_the_machine_does_not_take_is_refused(op: dict[str, Any]) -> None:
    with pytest.raises(MessageError):
        LockMachine().check(op)
