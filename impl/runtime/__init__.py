"""The runtime every protocol implementation is written on.

Where it sits: ``impl/<protocol>.py`` modules use ``Context`` (``api``) and nothing
else of threads, sockets or clocks; ``controlled`` runs them under a deterministic
scheduler with faults, ``free`` on OS threads over TCP; ``storage`` is the durable
log both use; ``tracelog`` writes the trace format that ``distcheck validate`` reads.
``actor`` is how protocols are written on ``Context`` (handlers, typed messages and
timers); ``config`` holds what every protocol configures alike (variants, timing);
``faults`` wraps nodes or choice sources to inject slow clocks and pauses;
``nemesis`` schedules crashes, partitions, slow nodes and clock jumps over a free run.
"""

from distcheck.impl.runtime.actor import Actor, MessageError, Messages, Rejected, encode, wire
from distcheck.impl.runtime.api import (
    Context,
    ContextWrapper,
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
from distcheck.impl.runtime.config import Timing, check_variant
from distcheck.impl.runtime.controlled import FaultPolicy, RunResult, Simulation, StepRecord, run_simulation
from distcheck.impl.runtime.faults import PausingChoices, SlowClock
from distcheck.impl.runtime.free import FreeRuntime
from distcheck.impl.runtime.nemesis import Fault, Nemesis, plan
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
    "Actor",
    "Choice",
    "ChoiceSource",
    "Context",
    "ContextWrapper",
    "DrawChoices",
    "Envelope",
    "Fault",
    "FaultPolicy",
    "FreeRuntime",
    "Lock",
    "Message",
    "MessageError",
    "Messages",
    "Nemesis",
    "NodeCrashed",
    "NodeMain",
    "PCTChoices",
    "PausingChoices",
    "Queue",
    "RandomChoices",
    "Received",
    "Rejected",
    "ReplayChoices",
    "RunResult",
    "Simulation",
    "SlowClock",
    "StepRecord",
    "Storage",
    "Timer",
    "Timing",
    "TraceLog",
    "check_variant",
    "encode",
    "plan",
    "run_simulation",
    "wire",
]
