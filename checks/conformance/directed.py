"""Directed validation: follow a trace whose events say exactly which step they are,
and put back the network's duplicates that the trace cannot show.

Where it sits: beside ``checks.conformance.validate`` (the generic search), for
protocols whose implementations log every step but the network's (Raft, the broker,
the reliable link).  There the generic search would close every state under every
possible loss, copy and reordering of every message in flight before each event,
which is correct and hopeless for a long run.  Instead the protocol's wiring says,
for one event, which spec step (or few) it stands for (``step``), and this module
follows the trace from the spec's initial states with those steps alone.

What no event shows is a message the network copied: a receipt the spec cannot take
because every copy sent was received already.  Such a receipt is explained by a
copy the network made while a copy was still in flight: at the latest just before
the previous receipt of the same message.  So when an event fails and an earlier
event received the same message (``receipt`` gives equal keys), the network's copy
(``copy``, made from the states just before that earlier receipt) is put in the
trace there and the trace followed again from that point.  An event that fails for
any other reason is the first one no behaviour explains; the generic validator,
started from the states just before it, says why.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any, TypeVar

from distcheck.checks.conformance.validate import (
    DEFAULT_MAX_STATES,
    Mismatch,
    TooLarge,
    Validation,
    Validator,
    action_text,
)
from distcheck.spec.contract import Spec

S = TypeVar("S")

#: the spec states after an event, from the states before it (none: it cannot happen)
Step = Callable[[Sequence[S], Mapping[str, Any]], list[S]]
#: which message an event receives (equal keys: the same message), or None
Receipt = Callable[[Mapping[str, Any]], Hashable | None]
#: the network's step copying the message ``event`` receives, as an event, in the
#: states just before an earlier receipt of it; None if the network cannot copy it
Copy = Callable[[Sequence[S], Mapping[str, Any]], dict[str, Any] | None]


def validate_directed(
    spec: Spec[S, Any],
    events: Sequence[Mapping[str, Any]],
    step: Step[S],
    receipt: Receipt,
    copy: Copy[S],
    max_states: int = DEFAULT_MAX_STATES,
    initial: Sequence[S] | None = None,
) -> tuple[Validation, list[dict[str, Any]]]:
    """Is ``events`` a behaviour of ``spec`` once the network's copies are put back?
    The verdict, and the events with those copies (numbered again from 1).
    ``initial``: the states the trace starts from (default: the spec's initial states)."""
    trace = [dict(e) for e in events]
    #: checkpoints[i]: the spec states possible just before trace[i]
    checkpoints: list[list[S]] = [list(spec.init_states() if initial is None else initial)]
    explored = 0
    copies = 0
    i = 0
    while i < len(trace):
        after = step(checkpoints[i], trace[i])
        if after:
            checkpoints.append(after)
            explored += len(after)
            i += 1
            continue
        key = receipt(trace[i])
        earlier = [j for j in range(i) if key is not None and receipt(trace[j]) == key]
        inserted = copy(checkpoints[earlier[-1]], trace[i]) if earlier else None
        if inserted is None:
            return _unexplained(spec, trace, i, checkpoints[i], key, explored, max_states), trace
        j = earlier[-1]
        trace.insert(j, inserted)
        del checkpoints[j + 1 :]
        copies += 1
        i = j
    trace = [{**e, "step": n} for n, e in enumerate(trace, 1)]
    message = f"all {len(trace)} events explained ({copies} copy(ies) made by the network put back)"
    return Validation("ok", len(trace), explored, message=message), trace


def _unexplained(
    spec: Spec[S, Any],
    trace: Sequence[Mapping[str, Any]],
    i: int,
    before: Sequence[S],
    explained_key: Hashable | None,
    explored: int,
    max_states: int,
) -> Validation:
    """The verdict on event ``i``, which no directed step explains: the generic
    validator's, from the states just before it (so that it says why)."""
    event = trace[i]
    validator = Validator(spec, initial=before, max_states=max_states)
    try:
        mismatch = validator.feed(event)
    except TooLarge as exc:
        return Validation("unknown", len(trace), explored, message=str(exc))
    if mismatch is not None:
        return Validation("violated", i + 1, explored, mismatch, validator.result().message)
    if explained_key is None:
        # The search found a way the directed step did not, by steps the wiring does
        # not direct: say so rather than pass or fail the trace on a guess.
        message = f"step {event.get('step')}: the directed step and the spec's search disagree (a wiring bug)"
        return Validation("unknown", len(trace), explored, message=message)
    # The search takes the step with some message; the event says which message, and
    # no copy of that one is in flight (the spec's observation leaves the message out).
    reason = (
        f"no behaviour of {spec.name} explains step {event.get('step')}: {event.get('actor')} "
        f"{action_text(event.get('action'))} — the message it received ({_shown(explained_key)}) is in flight "
        f"in none of the {len(before)} spec state(s) possible before it"
    )
    found = Mismatch(
        step=int(event.get("step") or i + 1),
        event=event,
        possible=tuple(before),
        expected=tuple(validator.search.expected(before)),
        reason=reason,
        kind="guard",
    )
    return Validation("violated", i + 1, explored, found, reason)


def _shown(key: Hashable) -> str:
    parts = key if isinstance(key, tuple) else (key,)
    return ", ".join(str(p) for p in parts)
