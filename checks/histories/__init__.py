"""Client histories of real systems, checked against sequential models
(``linearizability``)."""
