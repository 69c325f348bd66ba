"""Conformance of implementations to specs: trace validation (``validate``), runs of
an implementation under controlled schedules and faults checked step by step
(``simulate``), and one wiring per implemented protocol (``wiring``)."""
