"""The checking machinery, in packages by concern.

Where it sits: ``distcheck.checks`` talks to specs only through the contract in
``distcheck.spec.contract`` and the registry; it never imports ``distcheck.impl``
except in the per-protocol wiring.

==================  ==========================================================
``search``          exhaustive BFS (one core and many), swarm, hypothesis
``traces``          the trace model (JSON Lines), text, HTML and ShiViz views
``conformance``     trace validation (refinement), simulate, one wiring per
                    implemented protocol (``conformance/wiring/``)
``proofs``          z3: the encoding framework, induction, cross-checks, quorum
                    lemmas, one encoding per protocol
``histories``       client histories: linearizability
``cli``             the ``distcheck`` command
``params``          a spec built from its registry name and ``-p`` parameters
==================  ==========================================================

Protocol knowledge lives only in ``conformance/wiring/<protocol>.py`` and
``proofs/<protocol>.py``; ``tests/checks/test_layout.py`` enforces it.
"""
