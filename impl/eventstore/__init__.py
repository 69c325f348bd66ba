"""Event sourcing and CQRS: an event store (SQLite, PostgreSQL), aggregates rebuilt
by replay with snapshots and upcasters, projections with checkpoints, and the
command/query split with read-your-writes tokens.  The reference for each is
``spec/event_store.py`` and ``spec/cqrs.py``; docs/event-sourcing.md says how to use it."""
