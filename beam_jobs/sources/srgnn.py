"""The pickled session files of SR-GNN / NARM / GCE-GNN preprocessing, loaded with a restricted unpickler."""

from __future__ import annotations

from typing import Any, Iterator

from beam_jobs.events import Event, SourceError, short_repr
from beam_jobs.sources.base import SourceAdapter


SRGNN_TIME_BASE = 1_000_000_000
"""Synthetic time of the first session of an ``srgnn`` file (2001-09-09)."""
SRGNN_SECONDS_PER_SESSION = 60
"""Synthetic time between two sessions of an ``srgnn`` file (clicks 1 s apart inside one): a "day" is
1,440 sessions, about a real day of the diginetica training data (186,670 sessions in ~150 days)."""


def load_srgnn_pickle(path: str) -> Any:
    """Unpickle ``path`` with an unpickler that builds no class at all: ``find_class`` (and persistent ids)
    are refused, so only the pickle opcodes' own types (lists, tuples, ints, str, dicts, ...) can be made and
    no code runs. SourceError (one line, naming the file) for anything else."""
    import io
    import pickle

    class ListsOnly(pickle.Unpickler):
        def find_class(self, module, name):
            raise pickle.UnpicklingError(f"forbidden class {module}.{name}")

        def persistent_load(self, pid):
            raise pickle.UnpicklingError("forbidden persistent id")

    from apache_beam.io.filesystems import FileSystems

    with FileSystems.open(path) as fh:
        data = fh.read()
    try:
        return ListsOnly(io.BytesIO(data)).load()
    except pickle.UnpicklingError as err:
        raise SourceError(f"{path}: refused to load the pickle: {err} (only lists, tuples and ints are "
                          f"loaded from an srgnn file)") from None
    except Exception as err:  # truncated / not a pickle at all (EOFError, ValueError, ...)
        raise SourceError(f"{path}: not a readable pickle ({type(err).__name__}: {short_repr(str(err), 80)})") from None


def _positive_ints(seq: Any) -> bool:
    return isinstance(seq, list) and all(type(x) is int and x > 0 for x in seq)


def srgnn_structure(path: str, obj: Any) -> str:
    """``"sessions"`` (a list of sessions: non-empty lists of positive ints) or ``"prefixes"`` (a tuple
    ``(prefixes, labels)``: prefixes non-empty lists of positive ints, labels positive ints, as many);
    SourceError (one line naming the file and the first bad entry) otherwise."""
    expected = ("expected a list of sessions (lists of positive ints, e.g. all_train_seq.txt) or a tuple "
                "(prefixes, labels) (e.g. test.txt)")
    if isinstance(obj, tuple):
        if len(obj) != 2 or not isinstance(obj[0], list) or not isinstance(obj[1], list):
            raise SourceError(f"{path}: bad srgnn structure: a tuple of {len(obj)} elements; {expected}")
        prefixes, labels = obj
        if len(prefixes) != len(labels):
            raise SourceError(f"{path}: bad srgnn structure: {len(prefixes)} prefixes but {len(labels)} labels")
        for i, (p, y) in enumerate(zip(prefixes, labels)):
            if not p or not _positive_ints(p):
                raise SourceError(f"{path}: bad srgnn structure: prefix {i} is {short_repr(p, 60)}; {expected}")
            if type(y) is not int or y <= 0:
                raise SourceError(f"{path}: bad srgnn structure: label {i} is {short_repr(y, 60)}; {expected}")
        return "prefixes"
    if isinstance(obj, list):
        for i, sess in enumerate(obj):
            if not sess or not _positive_ints(sess):
                raise SourceError(f"{path}: bad srgnn structure: session {i} is {short_repr(sess, 60)}; {expected}")
        return "sessions"
    raise SourceError(f"{path}: bad srgnn structure: a {type(obj).__name__}; {expected}")


class SrgnnSource(SourceAdapter):
    """The pickled session files of SR-GNN / NARM / GCE-GNN preprocessing (no users, no times)::

        all_train_seq.txt   pickle of [[1, 2], [3, 4, 5], ...]             (sessions)
        test.txt            pickle of ([[3, 4], [3]], [5, 4])              (prefixes, labels)

    Loaded with a restricted unpickler (:func:`load_srgnn_pickle`: no class is ever built, so a
    malicious pickle cannot run code) and checked (:func:`srgnn_structure`). Each session (or each
    ``prefix + [label]``) is one synthetic session and user (``<file>:<n>``); times are synthetic, in
    file order: session n starts at ``SRGNN_TIME_BASE + 60 n`` s, its clicks 1 s apart. In an evaluation split of
    ``--split=given`` a (prefix, label) pair is one record as given: history = prefix, target =
    label (events tagged ``target``); in training it is the session ``prefix + [label]``.
    """

    name = "srgnn"
    file_format = "pickle"
    description = "SR-GNN/NARM pickles: all_train_seq.txt (sessions) / test.txt ((prefixes, labels))"

    def load(self, path: str) -> tuple[str, Any]:
        obj = load_srgnn_pickle(path)
        return srgnn_structure(path, obj), obj

    def open_state(self, path: str, first_line: str | bytes | None = None) -> str:
        return self.load(path)[0]

    def events(self, path: str, file_index: int) -> Iterator[dict]:
        """Event dicts of one file (``target: True`` marks a label), in file order."""
        kind, obj = self.load(path)
        rows = obj if kind == "sessions" else [p + [y] for p, y in zip(*obj)]
        for n, row in enumerate(rows):
            sid = f"{file_index}:{n}"
            for j, item in enumerate(row):
                ts = SRGNN_TIME_BASE + n * SRGNN_SECONDS_PER_SESSION + j
                ev = Event(user_id=sid, item_id=str(item), timestamp=ts, session_id=sid).to_dict()
                if kind == "prefixes" and j == len(row) - 1:
                    ev["target"] = True
                yield ev
