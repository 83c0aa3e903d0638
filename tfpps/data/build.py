"""``python -m tfpps.data.build``: a shim; the command line lives in :mod:`tfpps.cli.build`.

It runs that module as ``__main__`` instead of importing it, so importing ``tfpps.data`` never pulls in
the command lines (the data layer imports nothing above it).
"""
import runpy

if __name__ == "__main__":
    runpy.run_module("tfpps.cli.build", run_name="__main__", alter_sys=True)
