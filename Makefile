# `make demo` and `make test` work on a fresh machine with Python 3.10+ and make.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: demo demo-stop test lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[all,demo,test]'
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m demo

demo-stop: $(STAMP)
	$(PY) -m demo --stop

test: $(STAMP)
	$(PY) -m pytest -n 2 $(PYTEST_ARGS)

lint: $(STAMP)
	$(PY) -m pip install --quiet ruff mypy
	$(VENV)/bin/ruff check rollback_harness rollback checks plugins tests demo bench
	$(VENV)/bin/ruff format --check rollback_harness rollback checks plugins tests demo bench
	$(VENV)/bin/mypy

bench: $(STAMP)
	$(PY) bench/bench_harness.py

clean:
	rm -rf $(VENV) .demo reports/*/
