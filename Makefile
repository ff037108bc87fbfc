# sgan_jax: make setup | make train | make test | make lint | make benchmark
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
WORKDIR ?= runs/sgan_mnist
# Offline MNIST: the shared data folder when it is there (CI, these machines), else tfds downloads.
SGAN_MANUAL_DIR ?= $(if $(wildcard ../shared/data/mnist),$(abspath ../shared/data),)
export SGAN_MANUAL_DIR

.PHONY: setup setup-baselines train test lint format benchmark clean

setup: $(VENV)/.installed

$(VENV)/.installed: requirements.txt setup.cfg pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps -e .
	touch $@

setup-baselines: setup
	$(PY) -m pip install --quiet -r requirements-baselines.txt

train: setup
	$(PY) experiments/train.py --workdir=$(WORKDIR)

test: setup
	$(PY) -m pytest

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: setup
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

benchmark: setup
	$(PY) experiments/benchmark.py --iterations=250 --batch_size=32

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
