"""Sagas: long-running transactions as a sequence of local transactions, each with a
compensation (``spec/saga.py``); orchestrated (``orchestrator``) and choreographed."""
