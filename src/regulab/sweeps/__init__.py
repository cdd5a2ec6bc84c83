"""Hyperparameter sweeps with Optuna: sweep files (``spec``) and the worker (``worker``)."""
