"""Vocabularies for serving: raw string ids -> vocabulary indices, with the feature spec's PAD/OOV rules.

Index ``PAD_ID = 0`` is padding and ``OOV_ID = 1`` out-of-vocabulary
(:mod:`tfpps.spec.schema`). For requests, an empty string is padding (it is
dropped from a history), any token that is not a real vocabulary entry maps to
``OOV_ID`` (the literal ``<PAD>``/``<OOV>`` tokens included), and real tokens
map to their index ``>= FIRST_ID``. :class:`Vocabulary` does this in Python and
:meth:`Vocabulary.table` builds the same mapping as an in-graph
``tf.lookup.StaticHashTable`` for exported models.
"""
from __future__ import annotations

from typing import Iterable, Sequence

from tfpps.spec.schema import FIRST_ID, OOV_ID


class Vocabulary:
    """Tokens in index order (``tokens[0] = <PAD>``, ``tokens[1] = <OOV>``)."""

    def __init__(self, tokens: Sequence[str]):
        self.tokens = list(tokens)
        self._index = {t: i for i, t in enumerate(self.tokens) if i >= FIRST_ID}

    def __len__(self) -> int:
        return len(self.tokens)

    @property
    def real_tokens(self) -> list[str]:
        """Tokens of the real entries (indices ``FIRST_ID ..``)."""
        return self.tokens[FIRST_ID:]

    def index(self, token: str) -> int:
        return self._index.get(token, OOV_ID)

    def __contains__(self, token: str) -> bool:
        return token in self._index

    def unknown(self, tokens: Iterable[str]) -> list[str]:
        """The non-empty ``tokens`` that are not real vocabulary entries, in order."""
        return [t for t in tokens if t and t not in self._index]

    def table(self):
        """In-graph lookup (``tf.lookup.StaticHashTable``): real token -> its index, anything else -> ``OOV_ID``."""
        import tfpps  # noqa: F401
        import tensorflow as tf

        keys = self.real_tokens
        values = list(range(FIRST_ID, FIRST_ID + len(keys)))
        if not keys:  # an empty table still needs typed keys
            init = tf.lookup.KeyValueTensorInitializer(tf.constant([], tf.string), tf.constant([], tf.int64))
        else:
            init = tf.lookup.KeyValueTensorInitializer(tf.constant(keys), tf.constant(values, tf.int64))
        return tf.lookup.StaticHashTable(init, default_value=OOV_ID)
