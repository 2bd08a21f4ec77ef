"""Baselines beside the main line: spline interpolation of a stack, and SMORE (a self-supervised
2D network per stack). They reuse io, geometry and the slice-profile vocabulary."""
