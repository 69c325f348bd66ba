"""The one vocabulary every check reports in: explorer, swarm, fuzz, prove, validate,
replay and simulate name their answer ``verdict`` (in their Python result types and
in ``--json``), with these words.

========== =================================================================== =====
verdict    meaning                                                             exit
========== =================================================================== =====
ok         checked, and every property holds                                   0
violated   a property failed (the result says which, and its ``kind``)        1
bounded    nothing failed in what was searched, but the search was cut short   0
           (``--max-depth``, or a swarm's random sample), so it is not a proof
unknown    no answer: z3 gave up, or a trace leaves too much unexplained       1 / 2
invalid    the input is not what it claims (a trace that does not replay)      2
========== =================================================================== =====

What failed is a result's ``kind`` (an invariant, a deadlock, a refinement step, a
reachability property never reached, a trace step no behaviour explains, ...), never
a second verdict word.  A proof obligation reports ``proved``, ``failed``,
``unknown`` or ``skipped`` (``checks.proofs.obligations``); the proof's verdict is
made of those in the words above.
"""

from __future__ import annotations

from typing import Final

OK: Final = "ok"
VIOLATED: Final = "violated"
BOUNDED: Final = "bounded"
UNKNOWN: Final = "unknown"
INVALID: Final = "invalid"

VERDICTS: Final = (OK, VIOLATED, BOUNDED, UNKNOWN, INVALID)
