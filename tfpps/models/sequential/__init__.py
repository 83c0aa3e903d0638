"""Next-item models over item sequences, sessions and baskets (GRU4Rec, NARM, HRNN, HRM)."""
