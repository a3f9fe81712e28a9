"""Everything MLflow, in two layers: `registry` (the client, aliases, `models:/` downloads and
the one default-model rule; below `predict`) and `runs` (run logging and the pyfunc wrapper,
which calls `predict`). Nothing is imported here, so importing one never loads the other."""
