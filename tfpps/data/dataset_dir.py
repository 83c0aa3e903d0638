"""What a model needs to know about a dataset to build itself (vocabulary sizes, item supports)."""
from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass
class DatasetInfo:
    """What a model needs to know about the data to build itself."""

    num_items: int  # item vocabulary size, PAD and OOV rows included
    num_users: int  # user vocabulary size, PAD and OOV rows included
    item_counts: np.ndarray  # [num_items] training support of each item (0 for PAD/OOV)
    num_words: int = 0
    kind: str = "sequential"
