"""``python -m tfpps.launch``: a shim; the command line lives in :mod:`tfpps.cli.launch`."""
import sys

from tfpps.cli.launch import main

if __name__ == "__main__":
    sys.exit(main())
