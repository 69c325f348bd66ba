"""Replicated registers without a leader: ``impl.registers.abd`` (ABD's atomic
register on majority quorums: linearizable, available while a majority is
reachable) and ``impl.registers.dynamo`` (a Dynamo-style N/R/W store: available on
both sides of a partition, eventually consistent).  Side by side they are the CAP
trade-off (docs/consistency.md).

Where it sits: written on ``impl.runtime`` only, like every implementation; each
mirrors its spec (``spec/abd.py``, ``spec/dynamo.py``) without importing it.
"""

from distcheck.impl.registers.abd import AbdClient

__all__ = ["AbdClient"]
