"""Studies: many runs of one question (compare, grid, learning curve, capacity, K-fold, init,
dropout activations, weights, transfer, multi-task), aggregated over seeds and reported.

``regulab.studies.spec`` reads study files, ``regulab.studies.study`` runs them
(``rl.study``, ``rl.run_study``), ``regulab.studies.aggregate`` turns runs into answers and
``regulab.studies.report`` writes the report. What is special about each kind lives in its own
file under ``regulab.studies.kinds`` (the registry ``KINDS``).
"""
