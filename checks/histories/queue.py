"""The total-queue check: did a message queue lose, invent or silently repeat anything?

Where it sits: among the client-history checks, beside ``linearizability``.  It asks
the question a user of a broker (ours, RabbitMQ, anyone's) asks of a run, from what
the clients saw alone: producers' publishes and confirms, consumers' deliveries
and acknowledgements.  It imports nothing from ``spec/`` or ``impl/``.

A run passes when

- **nothing confirmed is lost**: every message the broker confirmed was delivered,
  and acknowledged, at least once;
- **nothing is invented**: every delivery is of a message some producer published
  (confirmed or not: a publish whose confirm was lost may still be stored);
- **repeats are marked**: a message delivered more than once carries the
  redelivered mark on every delivery after its first.  (The mark may also be on a
  first delivery, after a broker restart: the broker cannot tell, and a consumer
  must treat it as "maybe seen".)
"""

from __future__ import annotations

from collections.abc import Iterable

import attrs


@attrs.frozen
class Delivery:
    """One delivery a consumer saw: the message id and its redelivered mark."""

    id: str
    redelivered: bool


@attrs.frozen
class QueueVerdict:
    ok: bool
    message: str
    lost: tuple[str, ...] = ()
    invented: tuple[str, ...] = ()
    unmarked: tuple[str, ...] = ()


def check_total_queue(
    published: Iterable[str],
    confirmed: Iterable[str],
    deliveries: Iterable[Delivery],
    acknowledged: Iterable[str],
) -> QueueVerdict:
    """The verdict on one run; ``deliveries`` in the order consumers saw them (per
    message, the first is its first delivery)."""
    published_ids = set(published)
    acked = set(acknowledged)
    seen: dict[str, int] = {}
    unmarked: list[str] = []
    invented: list[str] = []
    for d in deliveries:
        if d.id not in published_ids:
            invented.append(d.id)
        if seen.get(d.id, 0) > 0 and not d.redelivered:
            unmarked.append(d.id)
        seen[d.id] = seen.get(d.id, 0) + 1
    confirmed_ids = set(confirmed)
    lost = sorted(m for m in confirmed_ids if m not in seen or m not in acked)
    problems = []
    if lost:
        problems.append(f"{len(lost)} confirmed message(s) never delivered and acknowledged, e.g. {lost[0]}")
    if invented:
        problems.append(f"{len(invented)} delivery(ies) of a message nobody published, e.g. {invented[0]}")
    if unmarked:
        problems.append(f"{len(unmarked)} repeated delivery(ies) without the redelivered mark, e.g. {unmarked[0]}")
    if problems:
        return QueueVerdict(False, "; ".join(problems), tuple(lost), tuple(invented), tuple(unmarked))
    repeats = sum(n - 1 for n in seen.values())
    return QueueVerdict(
        True,
        f"{len(confirmed_ids)} confirmed message(s) all delivered and acknowledged; "
        f"{repeats} repeated delivery(ies), each marked redelivered",
    )
