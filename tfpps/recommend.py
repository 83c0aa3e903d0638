"""``python -m tfpps.recommend``: a shim; the command line lives in :mod:`tfpps.cli.recommend`."""
import sys

from tfpps.cli.recommend import main

if __name__ == "__main__":
    sys.exit(main())
