"""Threaded implementations of the protocols (runtime and protocol modules).

Imports neither ``spec`` nor ``checks``: implementations record trace events in the
documented JSON format and are validated like any external implementation.
"""
