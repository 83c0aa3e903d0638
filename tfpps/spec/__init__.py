"""What the Beam feature job, the tf.data readers and serving must agree on, with no heavy imports.

* :mod:`tfpps.spec.schema`: the one feature spec (example kinds, feature names and shapes,
  ``PAD_ID`` / ``OOV_ID`` / ``FIRST_ID``, the dataset directory's file names, ``JOB_VERSION``).
* :mod:`tfpps.spec.text`: query and product-text normalisation (:func:`~tfpps.spec.text.tokenize`,
  the Porter stemmer, :func:`~tfpps.spec.text.normalize_words`), so a serving request's query is
  normalised exactly as the Beam job normalised the training queries.

The rule: nothing here imports TensorFlow or Apache Beam at import time (``beam_jobs``, ``tfpps.data``
and ``tfpps.serving`` all import this package). The schema's record encoder and parsers import
TensorFlow only when called.
"""
