"""``python -m tfpps.train``: a shim; the command line lives in :mod:`tfpps.cli.train`."""
import sys

from tfpps.cli.train import main

if __name__ == "__main__":
    sys.exit(main())
