"""``python -m tfpps.synthetic``: see :mod:`tfpps.synthetic.cli`."""
import sys

from tfpps.synthetic.cli import main

if __name__ == "__main__":
    sys.exit(main())
