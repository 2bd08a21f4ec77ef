"""Fitting a field: the training loop, one optimisation step, the optimiser and schedules, the
smoothness penalty, the MI monitor with early stopping, and the resume state."""
