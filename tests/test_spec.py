"""Tests for tfpps.spec: the text helpers (tokenizer, Porter stemmer, category-path queries) and the
package's rule that importing it loads neither TensorFlow nor Apache Beam."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tfpps.spec.text import normalize_words, porter_stem, query_from_category_path, tokenize

PORTER_CASES = {
    "caresses": "caress", "ponies": "poni", "ties": "ti", "caress": "caress", "cats": "cat",
    "feed": "feed", "agreed": "agre", "plastered": "plaster", "bled": "bled",
    "motoring": "motor", "sing": "sing", "conflated": "conflat", "troubled": "troubl",
    "sized": "size", "hopping": "hop", "tanned": "tan", "falling": "fall", "hissing": "hiss",
    "fizzed": "fizz", "failing": "fail", "filing": "file", "happy": "happi", "sky": "sky",
    "running": "run", "relational": "relat", "conditional": "condit", "rational": "ration",
    "valenci": "valenc", "hesitanci": "hesit", "digitizer": "digit", "conformabli": "conform",
    "radicalli": "radic", "differentli": "differ", "vileli": "vile", "analogousli": "analog",
    "vietnamization": "vietnam", "predication": "predic", "operator": "oper",
    "feudalism": "feudal", "decisiveness": "decis", "hopefulness": "hope",
    "callousness": "callous", "formaliti": "formal", "sensitiviti": "sensit",
    "sensibiliti": "sensibl", "triplicate": "triplic", "formative": "form",
    "formalize": "formal", "electriciti": "electr", "electrical": "electr", "hopeful": "hope",
    "goodness": "good", "revival": "reviv", "allowance": "allow", "inference": "infer",
    "airliner": "airlin", "gyroscopic": "gyroscop", "adjustable": "adjust",
    "defensible": "defens", "irritant": "irrit", "replacement": "replac",
    "adjustment": "adjust", "dependent": "depend", "adoption": "adopt", "homologou": "homolog",
    "communism": "commun", "activate": "activ", "angulariti": "angular",
    "homologous": "homolog", "effective": "effect", "bowdlerize": "bowdler",
    "probate": "probat", "rate": "rate", "cease": "ceas", "controll": "control", "roll": "roll",
    "generalization": "gener", "oscillators": "oscil", "is": "is", "a": "a",
}


@pytest.mark.parametrize("word, stem", sorted(PORTER_CASES.items()))
def test_porter_stem(word, stem):
    assert porter_stem(word) == stem


def test_tokenize_and_query_from_category_path():
    assert tokenize("Clothing, Shoes & Jewelry -- Men's_Watches 2nd") == [
        "clothing", "shoes", "jewelry", "men", "s", "watches", "2nd"]
    assert tokenize("Café Crème") == ["café", "crème"]
    assert query_from_category_path(["Clothing, Shoes & Jewelry", "Women", "Shoes"]) == \
        "cloth shoe jewelri women"
    assert query_from_category_path(["Sports & Outdoors", "Other Sports", "Dance"]) == \
        "sport outdoor other danc"
    assert query_from_category_path(["Books", "the Books"], stopwords=["the"]) == "book"
    assert query_from_category_path([]) == ""


def test_normalize_words_stems_and_deduplicates():
    assert normalize_words("Running Shoes, running shoes!") == ["run", "shoe"]
    assert normalize_words("") == [] and normalize_words(None) == []


def test_spec_imports_neither_tensorflow_nor_beam():
    code = ("import sys, tfpps.spec, tfpps.spec.text, tfpps.spec.schema; "
            "bad = [m for m in ('tensorflow', 'apache_beam', 'keras', 'beam_jobs') if m in sys.modules]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)
