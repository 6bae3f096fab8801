"""Model backends: each implements one async method, `Backend.complete` (base.py)."""
