"""Moving rows between partitions online (placeholder docstring, rewritten below)."""
