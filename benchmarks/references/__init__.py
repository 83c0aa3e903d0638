"""Reference benchmarks: tfpps beside other frameworks' own code (RecBole, the official GRU4Rec, a PyTorch HEM/ZAM/AEM, SR-GNN's preprocessing), each run in its own venv."""
