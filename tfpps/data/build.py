"""``python -m tfpps.data.build``: a shim; the command line lives in :mod:`tfpps.cli.build`."""
import sys

from tfpps.cli.build import main

if __name__ == "__main__":
    sys.exit(main())
