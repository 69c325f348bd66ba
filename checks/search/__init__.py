"""Searching a spec's behaviours: exhaustive BFS (``explore``, ``parallel``), swarm
random walks (``swarm``) and hypothesis stateful tests (``stateful``)."""
