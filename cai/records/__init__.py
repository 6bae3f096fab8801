"""Record files: reading them (read), appending to them (append), rewriting them whole (rewrite)."""
