"""``python -m tfpps.export``: a shim; the command line lives in :mod:`tfpps.cli.export`."""
import sys

from tfpps.cli.export import main

if __name__ == "__main__":
    sys.exit(main())
