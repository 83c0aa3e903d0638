"""Runner and data conversion for the Wenjun-Peng PyTorch reference (see compare_wenjun_peng.py)."""
