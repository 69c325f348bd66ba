"""Client histories of real systems, checked against sequential models
(``linearizability``; ``parts`` checks a history's sub-histories, on several cores
when it is large)."""
