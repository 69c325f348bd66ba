"""distcheck: reference specs, implementations and checks of classic distributed
protocols.

Installed as one package with three parts, each a folder at the top of the
repository (``distcheck/spec``, ``distcheck/checks`` and ``distcheck/impl`` are links
to them, so the repository reads as the design describes it and an install never
puts ``spec`` or ``checks`` at the top of a user's environment):

- ``distcheck.spec``: pure specifications (the reference);
- ``distcheck.impl``: threaded implementations on a controlled or free runtime;
- ``distcheck.checks``: exploration, proofs, traces, conformance and the CLI.

See ``docs/architecture.md``.
"""

__version__ = "0.1.0"
