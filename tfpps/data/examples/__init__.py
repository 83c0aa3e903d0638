"""Example builders that models use, one module per model family."""
