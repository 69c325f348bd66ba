"""Resilience as a library: retries with backoff under a deadline, deadlines that
propagate, a circuit breaker shared by threads and processes, a bulkhead, and
failure detectors.

Where it sits: ``impl/`` beside the protocols, with no runtime dependency; the
blocking clients of ``impl/`` and anyone else use it.  Retry and the breaker follow
``spec/retry.py`` and ``spec/circuit_breaker.py`` rule for rule (without importing
them): ``tests/impl/test_resilience_conformance.py`` records their steps in the
specs' vocabulary and validates the traces against the specs.  Nothing here reads
the time or sleeps except through injectable functions (``clock``, ``sleep``), so
everything runs under the project's deterministic scheduler with ``ctx.now`` and
``ctx.sleep``.  docs/resilience.md is the guide.
"""

from distcheck.impl.resilience.breaker import (
    BreakerRecord,
    BreakerStore,
    CircuitBreaker,
    CircuitOpenError,
    MemoryStore,
    Permit,
    SQLiteStore,
    StateChange,
)
from distcheck.impl.resilience.bulkhead import Bulkhead, BulkheadFull
from distcheck.impl.resilience.deadline import Deadline, DeadlineExceeded, current_deadline, deadline
from distcheck.impl.resilience.detector import PhiAccrualDetector, TimeoutDetector
from distcheck.impl.resilience.retry import (
    UNBOUNDED,
    Attempt,
    RetryError,
    RetryEvent,
    Retrying,
    backoff_range,
    retry,
)

__all__ = [
    "UNBOUNDED",
    "Attempt",
    "BreakerRecord",
    "BreakerStore",
    "Bulkhead",
    "BulkheadFull",
    "CircuitBreaker",
    "CircuitOpenError",
    "Deadline",
    "DeadlineExceeded",
    "MemoryStore",
    "Permit",
    "PhiAccrualDetector",
    "RetryError",
    "RetryEvent",
    "Retrying",
    "SQLiteStore",
    "StateChange",
    "TimeoutDetector",
    "backoff_range",
    "current_deadline",
    "deadline",
    "retry",
]
