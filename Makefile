# Two commands do everything on one machine (Python 3.11):
#   make run    installs into .venv and runs the whole pipeline on the `default` config
#   make test   installs into .venv (with test extras) and runs the test suite
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
ARGS ?=
PYTEST_ARGS ?=

.PHONY: install run test test-slow clean

$(VENV)/.installed: setup.py
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[test,kfp]"
	touch $@

install: $(VENV)/.installed

run: install
	$(VENV)/bin/lstm-math run --config default $(ARGS)

test: install
	$(PY) -m pytest $(PYTEST_ARGS)

test-slow: install
	$(PY) -m pytest -m slow $(PYTEST_ARGS)

clean:
	rm -rf artifacts serving_models
