"""Metric-learning models (CML, HLR-E) and their shared triplet training."""
