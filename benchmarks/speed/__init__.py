"""Speed benchmarks: how fast tfpps trains, reads data, evaluates and serves on one machine."""
