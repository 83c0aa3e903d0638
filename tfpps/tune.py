"""``python -m tfpps.tune``: a shim; the command line lives in :mod:`tfpps.cli.tune`."""
import sys

from tfpps.cli.tune import main

if __name__ == "__main__":
    sys.exit(main())
