"""Pure state-machine specifications of distributed protocols (the reference).

Imports only the standard library and attrs.  ``spec.core`` is the contract;
``spec.registry`` lists every spec; one module per protocol family.
"""
