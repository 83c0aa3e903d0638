"""The examples in the docstrings of the small shared modules run as written."""
import doctest
import importlib

import pytest

import tfpps  # noqa: F401

MODULES = ["tfpps.cli.parser", "tfpps.runs.run_dir", "tfpps.models.base", "tfpps.registry", "tfpps.spec.ownership", "tfpps.data.tfrecord_file"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0, result
