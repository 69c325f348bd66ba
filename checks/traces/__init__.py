"""Traces: the one trace model for every source (``trace``: JSON Lines on disk),
its text rendering and message sequence charts (``render``), the self-contained
HTML viewer (``html``) and ShiViz export (``shiviz``)."""
