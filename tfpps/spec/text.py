"""Query and product-text normalisation shared by the Beam feature job and serving (no TensorFlow, no Beam).

The product-search queries and item text the Beam job writes (:mod:`beam_jobs.examples`) and a serving
request's query (:func:`tfpps.serving.requests.normalize_query`) go through :func:`normalize_words`, so
a query typed at serving time meets the words the model was trained on: lower-cased, split on anything
that is not a letter or digit (:func:`tokenize`), Porter-stemmed (:func:`porter_stem`, the classic
algorithm, implemented here, no dependency) and de-duplicated.

>>> normalize_words("Running Shoes, running shoes!")
['run', 'shoe']
>>> query_from_category_path(["Clothing, Shoes & Jewelry", "Women", "Shoes"])
'cloth shoe jewelri women'
"""

from __future__ import annotations

import re
from typing import Iterable, Sequence

__all__ = ["normalize_words", "porter_stem", "query_from_category_path", "tokenize"]

_TOKEN_RE = re.compile(r"[^\W_]+", re.UNICODE)


def tokenize(text: str) -> list[str]:
    """Lower-case and split on anything that is not a letter or digit."""
    return _TOKEN_RE.findall(text.lower())


def query_from_category_path(path: Sequence[str], stopwords: Iterable[str] = ()) -> str:
    """Product-search query from one category path, as Ai et al. (2017) build them.

    Words of all levels are lower-cased, punctuation removed, Porter-stemmed and
    de-duplicated (first occurrence kept); ``stopwords`` (unstemmed) are dropped.
    ``["Clothing, Shoes & Jewelry", "Women", "Shoes"]`` -> ``"cloth shoe jewelri women"``.
    """
    stop = {w.lower() for w in stopwords}
    seen: dict[str, None] = {}
    for level in path:
        for tok in tokenize(str(level)):
            if tok in stop:
                continue
            seen.setdefault(porter_stem(tok), None)
    return " ".join(seen)


def normalize_words(text: str) -> list[str]:
    """Lower-case, split on non-alphanumerics, Porter-stem, de-duplicate (first occurrence kept)."""
    seen: dict[str, None] = {}
    for tok in tokenize(text or ""):
        seen.setdefault(porter_stem(tok), None)
    return list(seen)


# ---- Porter stemmer (M.F. Porter, 1980) ----------------------------------- #
# Implements the algorithm as in Porter's reference implementation
# (tartarus.org/martin/PorterStemmer), including its two documented departures
# from the paper: step 2 maps "bli" -> "ble" (paper: "abli" -> "able") and adds
# "logi" -> "log". Input is expected lower-case; words of <= 2 letters are kept.


def _is_cons(w: str, i: int) -> bool:
    ch = w[i]
    if ch in "aeiou":
        return False
    if ch == "y":
        return i == 0 or not _is_cons(w, i - 1)
    return True


def _measure(stem: str) -> int:
    """Porter's m: the number of VC sequences in [C](VC)^m[V]."""
    m, prev_vowel = 0, False
    for i in range(len(stem)):
        cons = _is_cons(stem, i)
        if cons and prev_vowel:
            m += 1
        prev_vowel = not cons
    return m


def _has_vowel(stem: str) -> bool:
    return any(not _is_cons(stem, i) for i in range(len(stem)))


def _double_cons(w: str) -> bool:
    return len(w) >= 2 and w[-1] == w[-2] and _is_cons(w, len(w) - 1)


def _cvc(w: str) -> bool:
    n = len(w)
    return (n >= 3 and _is_cons(w, n - 3) and not _is_cons(w, n - 2) and _is_cons(w, n - 1)
            and w[-1] not in "wxy")


_STEP2 = (
    ("ational", "ate"), ("tional", "tion"), ("enci", "ence"), ("anci", "ance"),
    ("izer", "ize"), ("bli", "ble"), ("alli", "al"), ("entli", "ent"), ("eli", "e"),
    ("ousli", "ous"), ("ization", "ize"), ("ation", "ate"), ("ator", "ate"),
    ("alism", "al"), ("iveness", "ive"), ("fulness", "ful"), ("ousness", "ous"),
    ("aliti", "al"), ("iviti", "ive"), ("biliti", "ble"), ("logi", "log"),
)  # fmt: skip
_STEP3 = (
    ("icate", "ic"), ("ative", ""), ("alize", "al"), ("iciti", "ic"), ("ical", "ic"),
    ("ful", ""), ("ness", ""),
)  # fmt: skip
_STEP4 = (
    "al", "ance", "ence", "er", "ic", "able", "ible", "ant", "ement", "ment", "ent",
    "ion", "ou", "ism", "ate", "iti", "ous", "ive", "ize",
)  # fmt: skip


def _longest_suffix(w: str, suffixes: Iterable[str]) -> str | None:
    best = None
    for s in suffixes:
        if w.endswith(s) and (best is None or len(s) > len(best)):
            best = s
    return best


def porter_stem(word: str) -> str:
    """Stem one lower-case word with the classic Porter algorithm.

    ``caresses -> caress``, ``ponies -> poni``, ``running -> run``,
    ``relational -> relat``, ``generalization -> gener``.
    """
    w = word
    if len(w) <= 2:
        return w
    # Step 1a
    if w.endswith("sses"):
        w = w[:-2]
    elif w.endswith("ies"):
        w = w[:-2]
    elif w.endswith("ss"):
        pass
    elif w.endswith("s"):
        w = w[:-1]
    # Step 1b
    extra = False
    if w.endswith("eed"):
        if _measure(w[:-3]) > 0:
            w = w[:-1]
    elif w.endswith("ed") and _has_vowel(w[:-2]):
        w, extra = w[:-2], True
    elif w.endswith("ing") and _has_vowel(w[:-3]):
        w, extra = w[:-3], True
    if extra:
        if w.endswith(("at", "bl", "iz")):
            w += "e"
        elif _double_cons(w) and w[-1] not in "lsz":
            w = w[:-1]
        elif _measure(w) == 1 and _cvc(w):
            w += "e"
    # Step 1c
    if w.endswith("y") and _has_vowel(w[:-1]):
        w = w[:-1] + "i"
    # Step 2 / 3: the longest matching suffix decides; replace if m(stem) > 0
    for table in (_STEP2, _STEP3):
        mapping = dict(table)
        suf = _longest_suffix(w, mapping)
        if suf is not None and _measure(w[: -len(suf)]) > 0:
            w = w[: -len(suf)] + mapping[suf]
    # Step 4: delete the longest matching suffix if m(stem) > 1
    suf = _longest_suffix(w, _STEP4)
    if suf is not None:
        stem = w[: -len(suf)]
        if _measure(stem) > 1 and (suf != "ion" or stem.endswith(("s", "t"))):
            w = stem
    # Step 5a
    if w.endswith("e"):
        m = _measure(w[:-1])
        if m > 1 or (m == 1 and not _cvc(w[:-1])):
            w = w[:-1]
    # Step 5b
    if w.endswith("ll") and _measure(w) > 1:
        w = w[:-1]
    return w
