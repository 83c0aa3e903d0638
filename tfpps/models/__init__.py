"""Model architectures, one per module; see :mod:`tfpps.registry` for the name -> class map."""
