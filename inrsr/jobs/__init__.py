"""End-to-end jobs. :mod:`~inrsr.jobs.reconstruct` holds the one in-memory reconstruction (stacks
→ training set → fit → data consistency) that ``fit_stacks`` (``inrsr fit``) and ``check``
build on, as do ``make bench`` and ``make exp``; ``sample`` re-renders a saved model, ``demo``
runs ``inrsr fit`` on a phantom, and ``tools`` holds the single-file commands (simulate,
evaluate, the baselines). The command line calls these."""
