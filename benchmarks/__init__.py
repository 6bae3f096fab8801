"""Benchmarks for cai against plain baselines; `python -m benchmarks.run` runs them all."""
