"""z3 proofs of distcheck specs: inductive invariants for bounded instances, and the
quorum lemmas consensus protocols rest on.

Where it sits: part of ``checks/``; the ``distcheck prove`` command
(``checks/cli/prove.py``) and the tests use it.  It is the only place in
``checks/`` with protocol-specific code, one module per protocol:

=====================  ==============================================================
``system``             the framework: a bounded state as named z3 variables
                       (``Field``, ``SymState``), one ``Transition`` per spec action,
                       and the ``Encoding`` base class a protocol module fills in
``induction``          the obligations Init ⇒ Inv, Inv ∧ Next ⇒ Inv′, Inv ⇒ Safety,
                       with z3 models decoded into real spec states
``crosscheck``         proof that an encoding says what the executable spec does, on
                       every reachable state of the instance
``obligations``        what every proof step reports (verdict, time, counterexample)
``registry``           the provable targets, by name
``twophase``           TwoPhase's encoding and its inductive invariant
``lock``, ``paxos``    the lock service's, Paxos's and Voting's encodings
``raft``               an abstraction of Raft's election part, proving ElectionSafety
``saga``               an abstraction of sagas (both styles), proving SemanticAtomicity
``quorums``            quorum-intersection lemmas (majorities; BFT with N = 3f+1)
=====================  ==============================================================

A later protocol (lock, Paxos, Raft, PBFT) adds one module with an ``Encoding``
subclass and one line in ``registry``.
"""
