"""``python -m tfpps.evaluate``: a shim; the command line lives in :mod:`tfpps.cli.evaluate`."""
import sys

from tfpps.cli.evaluate import main

if __name__ == "__main__":
    sys.exit(main())
