"""Model architectures, one per module, in one sub-package per kind (``sequential``, ``search``, ``metric``,
``baselines``); ``base`` is the contract. See :mod:`tfpps.registry` for the name -> class map."""
