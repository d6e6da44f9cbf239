"""Character statistics of names."""
