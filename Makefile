# Two commands do everything on one machine (Python 3.11):
#   make run    installs into .venv and runs the whole pipeline on the `default` config
#   make test   installs into .venv (with test extras) and runs the test suite
# Then (each in its own terminal where it keeps running):
#   make predict EQ="31 + 87"   asks the pushed model, no server needed
#   make serve                  TF Serving-compatible server on :8501 (REST) and :8500 (gRPC)
#   make tensorboard            TensorBoard over the pipeline root's view on :6006
# The tools are in .venv/bin (not on PATH): `source .venv/bin/activate` to type `lstm-math`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
ARGS ?=
PYTEST_ARGS ?=
PIPELINE_ROOT ?= artifacts
MODEL_BASE ?= serving_models
EQ ?= 31 + 87

.PHONY: install run test test-slow test-containers serve predict tensorboard clean

$(VENV)/.installed: setup.py
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[test,kfp]"
	touch $@

install: $(VENV)/.installed

run: install
	$(VENV)/bin/lstm-math run --config default $(ARGS)

test: install
	$(PY) -m pytest --durations=15 $(PYTEST_ARGS)

test-slow: install
	$(PY) -m pytest -m "slow and not containers" $(PYTEST_ARGS)

# The image built and run with podman (as root: installs podman, runc, debootstrap where
# missing, builds a local Debian base; see docs/cluster.md). Skips, one line, where it can't.
test-containers: install
	$(PY) scripts/container_env.py setup --image localhost/lstm-math:test || [ $$? -eq 3 ]
	$(PY) -m pytest -m containers $(PYTEST_ARGS)

serve: install
	$(VENV)/bin/lstm-math serve --model-base $(MODEL_BASE) $(ARGS)

predict: install
	$(VENV)/bin/lstm-math predict --via saved-model --saved-model $(MODEL_BASE) "$(EQ)"

tensorboard: install
	$(VENV)/bin/tensorboard --logdir $(PIPELINE_ROOT)/tensorboard

clean:
	rm -rf artifacts serving_models
