"""The BIDS layer of the BIDS App (``inrsr bids BIDS_DIR OUTPUT_DIR participant``):
:mod:`~inrsr.bids.selection` chooses, per subject and session, the runs of a BIDS dataset that
become the fit's stacks (and records why the others were left out); :mod:`~inrsr.bids.derivatives`
names the outputs in a BIDS derivatives layout, writes its ``dataset_description.json`` and checks
every name against the BIDS schema. The dataset is indexed with pybids, which the submodules import
only when they need it."""
