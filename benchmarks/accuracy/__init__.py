"""Accuracy benchmarks: how well tfpps's models rank, on public data and beside the baselines and published numbers."""
