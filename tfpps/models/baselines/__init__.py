"""Baselines fitted in one pass, without gradients (popularity, S-POP, item- and session-KNN, BM25)."""
