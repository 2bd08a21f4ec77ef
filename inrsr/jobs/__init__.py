"""End-to-end jobs, each built on :func:`inrsr.jobs.reconstruct.reconstruct`: ``fit_stacks``
(``inrsr fit``), ``sample``, ``check``, ``demo`` and the single-file ``tools`` (simulate,
evaluate, the baselines). The command line and the experiments call these."""
