"""Scale benchmarks: how tfpps grows with data volume, catalogue size and workers."""
