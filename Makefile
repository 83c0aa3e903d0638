# Two commands for a newcomer:  `make demo`  and  `make test`.
# Both create (or reuse) the virtualenv in .venv and install the project into it.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.tfpps-installed

.PHONY: venv demo test lint data bench clean

$(STAMP): setup.py pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	@touch $(STAMP)

venv: $(STAMP)

## Build the synthetic default dataset with the Beam job (if missing), train GRU4Rec and the
## popularity baseline on it, and print their test metrics side by side.
demo: venv
	$(PY) -m tfpps.demo

## Run the test suite.
test: venv
	$(PY) -m pytest -q tests

## Lint (ruff; rules in pyproject.toml). CI runs it before the tests.
lint: venv
	$(VENV)/bin/ruff check tfpps beam_jobs tests benchmarks

## Build the real-data datasets used by the benchmarks (needs ../shared/data).
data: venv
	$(PY) -m tfpps.data.build --dataset=ml-100k

clean:
	rm -rf runs data_out .pytest_cache
