"""Runs: ``prepare`` a config, ``train`` or ``resume`` it into a run directory, evaluate it,
and the run store; populations and deep ensembles of runs."""
