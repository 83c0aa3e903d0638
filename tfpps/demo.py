"""``python -m tfpps.demo``: a shim; the command line lives in :mod:`tfpps.cli.demo`."""
import sys

from tfpps.cli.demo import main

if __name__ == "__main__":
    sys.exit(main())
