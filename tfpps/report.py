"""``python -m tfpps.report``: a shim; the command line lives in :mod:`tfpps.cli.report`."""
import sys

from tfpps.cli.report import main

if __name__ == "__main__":
    sys.exit(main())
