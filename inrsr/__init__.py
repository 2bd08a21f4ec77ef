"""inrsr: single-subject multi-contrast MRI super-resolution with implicit neural representations."""

__version__ = "0.1.0"
