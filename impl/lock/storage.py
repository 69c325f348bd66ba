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

from distcheck.impl.runtime.api import Context, Envelope, Message, Storage

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


class FencedStore:
    """The storage node.  ``state`` is its memory, rebuilt from its log at every start."""

    LOG = "data"

    def __init__(self, name: str = "storage", variant: str | None = None) -> None:
        if variant is not None and variant not in STORAGE_VARIANTS:
            raise ValueError(f"unknown storage variant {variant!r}; allowed: {', '.join(STORAGE_VARIANTS)}")
        self.name = name
        self.variant = variant
        self.state = StoreState()

    def main(self, ctx: Context) -> None:
        log: Storage = ctx.storage(self.LOG)
        self.state = recover(log.records())
        while True:
            item = ctx.receive()
            if not isinstance(item, Envelope):
                continue
            msg = item.msg
            if msg.get("type") == "Write":
                self._on_write(ctx, log, item.src, msg)
            elif msg.get("type") == "Read":
                ctx.send(
                    item.src,
                    {"type": "Value", "key": msg.get("key"), "value": self.state.data.get(str(msg.get("key")))},
                )
            else:
                ctx.log(f"ignored {msg.get('type')} from {item.src}")

    def accepts(self, lock: str, token: int) -> bool:
        if self.variant == "unfenced_storage":
            return True  # BROKEN: the token is not checked
        return token >= self.state.highest.get(lock, 0)

    def _on_write(self, ctx: Context, log: Storage, src: str, msg: Message) -> None:
        wid, lock, token = str(msg["wid"]), str(msg["lock"]), int(msg["token"])
        accepted = self.state.decided.get(wid)
        if accepted is None:
            accepted = self.accepts(lock, token)
            record = {"wid": wid, "lock": lock, "token": token, "key": msg["key"], "value": msg.get("value")}
            record["accepted"] = accepted
            record["session"] = msg["session"]
            log.append(record)
            log.sync()
            self.state.apply(record)
            action = "AcceptWrite" if accepted else "RejectWrite"
            ctx.record({"type": action, "client": str(msg["session"])}, lock=lock)
        ctx.send(src, {"type": "WriteResult", "wid": wid, "accepted": accepted, "token": token})
