"""The runtime every protocol implementation is written on.

Where it sits: ``impl/<protocol>.py`` modules use ``Context`` (``api``) and nothing
else of threads, sockets or clocks; ``controlled`` runs them under a deterministic
scheduler with faults, ``free`` on OS threads over TCP; ``storage`` is the durable
log both use; ``tracelog`` writes the trace format that ``distcheck validate`` reads.
"""

from distcheck.impl.runtime.api import (
    Context,
    Envelope,
    Lock,
    Message,
    NodeCrashed,
    NodeMain,
    Queue,
    Received,
    Storage,
    Timer,
)
from distcheck.impl.runtime.controlled import FaultPolicy, RunResult, Simulation, StepRecord, run_simulation
from distcheck.impl.runtime.free import FreeRuntime
from distcheck.impl.runtime.strategies import (
    Choice,
    ChoiceSource,
    DrawChoices,
    PCTChoices,
    RandomChoices,
    ReplayChoices,
)
from distcheck.impl.runtime.tracelog import TraceLog

__all__ = [
    "Choice",
    "ChoiceSource",
    "Context",
    "DrawChoices",
    "Envelope",
    "FaultPolicy",
    "FreeRuntime",
    "Lock",
    "Message",
    "NodeCrashed",
    "NodeMain",
    "PCTChoices",
    "Queue",
    "RandomChoices",
    "Received",
    "ReplayChoices",
    "RunResult",
    "Simulation",
    "StepRecord",
    "Storage",
    "Timer",
    "TraceLog",
    "run_simulation",
]
