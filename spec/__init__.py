"""Pure state-machine specifications of distributed protocols (the reference).

Imports only the standard library and attrs.  ``contract`` is what a spec is (rules,
Next, invariants, variants); ``values`` and ``codec`` the data specs are made of and
its JSON form; ``network`` the environment models specs share; ``registry`` lists
every spec; then one module per protocol family.
"""
