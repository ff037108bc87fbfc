# sgan_jax: make setup [ACCELERATOR=cuda12|cuda13|tpu] | make train | make test | make lint
PYTHON ?= python3
# Empty: CPU jaxlib. cuda12 / cuda13 / tpu: also the package's extra of that name, the
# accelerator plugins at the pinned jax version (setup.cfg).
ACCELERATOR ?=
VENV := .venv
PY := $(VENV)/bin/python
WORKDIR ?= runs/sgan_mnist
# Offline MNIST: the shared data folder when it is there (CI, these machines), else tfds downloads.
SGAN_MANUAL_DIR ?= $(if $(wildcard ../shared/data/mnist),$(abspath ../shared/data),)
export SGAN_MANUAL_DIR

.PHONY: setup setup-baselines train test lint format benchmark clean gpu-bundle gpu-rehearsal

setup: $(VENV)/.installed$(ACCELERATOR)

$(VENV)/.installed$(ACCELERATOR): requirements.txt setup.cfg pyproject.toml
	@case "$(ACCELERATOR)" in ""|cuda12|cuda13|tpu) ;; \
		*) echo "error: ACCELERATOR: must be cuda12, cuda13 or tpu (or empty); got $(ACCELERATOR)" >&2; exit 2;; esac
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps -e .
	$(if $(ACCELERATOR),$(PY) -m pip install --quiet -e ".[$(ACCELERATOR)]")
	touch $@

setup-baselines: setup
	$(PY) -m pip install --quiet -r requirements-baselines.txt

train: setup
	$(PY) experiments/train.py --workdir=$(WORKDIR)

# Two pytest workers, a test file each at a time (module fixtures are built once), in the
# order tests/conftest.py gives (longest files first): a test spends much of its time compiling
# and tracing on one thread, which the other worker's runs fill. pytest-xdist's loadgroup
# would group finer, but pytest 9.2 breaks it (pytest-dev/pytest-xdist#1386). TEST_WORKERS=0
# runs the suite in this process. --durations lists the slowest tests, for CI's time budget.
TEST_WORKERS ?= 2

test: setup
	$(PY) -m pytest -n $(TEST_WORKERS) --dist=loadfile --no-loadscope-reorder --durations=25

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

# What experiments/gpu_check.sh needs on a GPU machine that has jax/flax/optax/orbax but not the
# rest: wheels for Python 3.12 in .whl/ and MNIST prepared under .cache/tfds (both git-ignored).
GPU_WHEELS := ml_collections==1.1.0 tensorflow-datasets==4.9.10 array_record==0.8.6 \
	dm-tree==0.1.10 immutabledict==4.3.1 simple-parsing==0.1.9 \
	tensorflow-metadata==1.21.0 toml==0.10.2 wrapt==2.5.2 importlib_resources==7.1.0 \
	docstring_parser==0.18.0 googleapis-common-protos==1.76.0 protobuf==7.36.2 tensorboardX==2.6.5 \
	six==1.17.0 tqdm==4.70.1
# Published only as source: built here into pure-Python wheels.
GPU_SOURCE_WHEELS := promise==2.3

gpu-bundle: setup
	rm -rf .whl && mkdir -p .whl
	$(PY) -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 \
		--implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
		--platform manylinux2014_x86_64 --platform any -d .whl $(GPU_WHEELS)
	$(PY) -m pip wheel --quiet --no-deps -w .whl $(GPU_SOURCE_WHEELS)
	TFDS_DATA_DIR=$(CURDIR)/.cache/tfds $(PY) -c "from sgan_jax.data import input_pipeline as p; \
		p.load_dataset('mnist', '$(CURDIR)/.cache/tfds', '$(SGAN_MANUAL_DIR)' or None)"
	# Of the prepared MNIST, what loading needs once the decoded arrays are cached: tfds'
	# metadata and the arrays (12 MB, not the 37 MB of records; pyarrow, 55 MB, stays out too).
	rm -rf .cache/tfds_gpu && mkdir -p .cache/tfds_gpu/mnist/3.0.1
	cp .cache/tfds/mnist/3.0.1/dataset_info.json .cache/tfds/mnist/3.0.1/features.json \
		.cache/tfds/mnist/3.0.1/sgan_jax_arrays.npz .cache/tfds_gpu/mnist/3.0.1/
	du -sh .whl .cache/tfds_gpu

# experiments/gpu_check.sh's smoke part on this machine's CPU, in a Python 3.12 venv that holds
# only what a GPU image brings (GPU_IMAGE: jax at the images' version, not requirements.txt's)
# plus the bundle: what the lease would find missing or broken shows here first.
PYTHON312 ?= python3.12
GPU_IMAGE ?= jax==0.11.2 flax optax orbax-checkpoint matplotlib absl-py
REHEARSAL := .cache/gpu_rehearsal

gpu-rehearsal: gpu-bundle
	rm -rf $(REHEARSAL) && $(PYTHON312) -m venv $(REHEARSAL)/venv
	$(REHEARSAL)/venv/bin/pip install --quiet $(GPU_IMAGE)
	PATH=$(CURDIR)/$(REHEARSAL)/venv/bin:$$PATH JAX_PLATFORMS=cpu SGAN_MANUAL_DIR= \
		OUT=$(CURDIR)/$(REHEARSAL)/out bash experiments/gpu_check.sh smoke
