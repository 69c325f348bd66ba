"""A small key-value storage service that enforces fencing tokens: the resource a
lock protects.

Where it sits: a runtime node (``FencedStore(...).main``); clients reach it through
``impl.lock.client.FencedStorage``.  It is the ``storage`` of ``spec/lock.py``: for
each lock it remembers the highest fencing token it has accepted and rejects a
write that carries a lower one (Kleppmann's fencing), recording ``AcceptWrite`` or
``RejectWrite`` (tagged with ``lock``) for ``distcheck validate lock``.

Each write carries a write id (session, sequence number); the decision on it is
logged and synced before it is recorded or answered, and a retried or duplicated
copy gets the same answer without being applied again, so a write is decided once
however often the network delivers it.  ``writes`` lists the accepted writes in
the order they were applied: FencedWrites on the real contents is "their tokens,
per lock, never go down".
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import attrs

from distcheck.impl.lock.messages import STORAGE_MESSAGES, Read, Value, Write, WriteResult
from distcheck.impl.runtime import config
from distcheck.impl.runtime.actor import Actor
from distcheck.impl.runtime.api import Storage

STORAGE_VARIANTS = {
    "unfenced_storage": "storage applies every write, whatever its fencing token",
}


@attrs.define
class StoreState:
    data: dict[str, Any] = attrs.field(factory=dict)  # key -> value
    highest: dict[str, int] = attrs.field(factory=dict)  # lock -> highest token accepted
    decided: dict[str, bool] = attrs.field(factory=dict)  # write id -> accepted?
    writes: list[dict[str, Any]] = attrs.field(factory=list)  # accepted writes, in order applied
    rejected: dict[str, int] = attrs.field(factory=dict)  # lock -> writes rejected

    def apply(self, record: dict[str, Any]) -> None:
        lock = str(record["lock"])
        self.decided[str(record["wid"])] = bool(record["accepted"])
        if record["accepted"]:
            self.data[str(record["key"])] = record["value"]
            self.highest[lock] = max(self.highest.get(lock, 0), int(record["token"]))
            self.writes.append(record)
        else:
            self.rejected[lock] = self.rejected.get(lock, 0) + 1


def recover(records: Iterable[dict[str, Any]]) -> StoreState:
    state = StoreState()
    for record in records:
        state.apply(record)
    return state


class FencedStore(Actor):
    """The storage node.  ``state`` is its memory, rebuilt from its log at every start."""

    LOG = "data"
    messages = STORAGE_MESSAGES

    def __init__(self, name: str = "storage", variant: str | None = None) -> None:
        config.check_variant(variant, STORAGE_VARIANTS, "storage variant")
        super().__init__(name)
        self.variant = variant
        self.state = StoreState()

    def on_start(self) -> None:
        self.log: Storage = self.ctx.storage(self.LOG)
        self.state = recover(self.log.records())

    def on_message(self, src: str, msg: Any) -> None:
        match msg:
            case Write():
                self._on_write(src, msg)
            case Read(key):
                self.send(src, Value(key, self.state.data.get(key)))

    def accepts_token(self, lock: str, token: int) -> bool:
        if self.variant == "unfenced_storage":
            return True  # BROKEN: the token is not checked
        return token >= self.state.highest.get(lock, 0)

    def _on_write(self, src: str, msg: Write) -> None:
        accepted = self.state.decided.get(msg.wid)
        if accepted is None:
            accepted = self.accepts_token(msg.lock, msg.token)
            record = {"wid": msg.wid, "lock": msg.lock, "token": msg.token, "key": msg.key, "value": msg.value}
            record["accepted"] = accepted
            record["session"] = msg.session
            self.log.append(record)
            self.log.sync()
            self.state.apply(record)
            action = "AcceptWrite" if accepted else "RejectWrite"
            self.ctx.record({"type": action, "client": msg.session}, lock=msg.lock)
        self.send(src, WriteResult(msg.wid, accepted, msg.token))
