"""The checking machinery: explorer, traces, CLI.  Talks to specs through ``spec.core``."""
