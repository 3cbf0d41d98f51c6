# `make demo` and `make test` work on a fresh machine with Python 3.10+ and make. `make test` runs
# `make services` first: as root it installs and starts what the tests need (PostgreSQL, a Docker
# Engine in swarm mode, Chromium, nginx, HAProxy, sshd) and says so before it does.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: demo demo-stop test services lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[all,demo,test]'
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m demo

demo-stop: $(STAMP)
	$(PY) -m demo --stop

test: $(STAMP) services
	$(PY) -m pytest -n 2 $(PYTEST_ARGS)

# What the tests need besides Python: installed and started when run as root; otherwise one
# line each says what could not be done and how (scripts/test-services.sh).
services:
	@bash scripts/test-services.sh

lint: $(STAMP)
	$(PY) -m pip install --quiet ruff mypy
	$(VENV)/bin/ruff check rollback_harness rollback checks plugins tests demo bench
	$(VENV)/bin/ruff format --check rollback_harness rollback checks plugins tests demo bench
	$(VENV)/bin/mypy

bench: $(STAMP)
	$(PY) bench/bench_harness.py
	@for b in runbook endpoints fleet startup; do $(PY) bench/bench_$$b.py || exit 1; done

clean:
	rm -rf $(VENV) .demo reports/*/
