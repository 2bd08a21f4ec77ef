"""Training data: foreground masks, per-contrast intensity scaling, and the flat training tensors
(coordinates, values, contrast and stack ids, profile points) of a subject."""
