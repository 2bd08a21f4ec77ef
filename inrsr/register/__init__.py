"""Registration of the stacks: learnable stack poses, MI rigid alignment, and what happens around
the fit (the MI pull during training, starting poses, registered stacks, the report)."""
