"""Scoring results: metrics against a truth, self-consistency without one, and figures."""
