# Two commands: `make demo` and `make test`. Each sets up .venv first (idempotent: redone only
# when setup.py or this Makefile change).
PYTHON ?= python3
# Where datasets (and the generated procedural demo data) live; see docs/getting_started.md.
export FASTREID_DATASETS ?= $(CURDIR)/datasets
VENV   := .venv
PY     := $(VENV)/bin/python
# The engine's own venv: slr_refine's needs alone (requirements/), no torch, no fast-reid.
ENGINE_VENV  := .venv-engine
ENGINE_STAMP := $(ENGINE_VENV)/.setup-done
# Exactly one faiss (setup.py's extras): the GPU build where an NVIDIA driver answers, the CPU
# build elsewhere. `make setup FAISS=cpu` overrides.
FAISS  ?= $(shell nvidia-smi -L >/dev/null 2>&1 && echo gpu || echo cpu)
STAMP  := $(VENV)/.setup-done-$(FAISS)

.PHONY: setup demo test test-all gpu-check
setup: $(STAMP)

$(STAMP): setup.py Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check torch==2.14.1 torchvision==0.29.1
	# fastreid's metadata pins torch 1.13 (no wheels for Python 3.11): install it without deps;
	# setup.py declares what it really needs.
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps fastreid==1.4.0
	# Every faiss build goes first, the chosen one too: they write the same files, so removing one
	# after the other was installed would break the survivor.
	$(PY) -m pip uninstall --quiet --yes faiss-cpu faiss-gpu faiss-gpu-cu11 faiss-gpu-cu12 2>/dev/null || true
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[test,$(FAISS)]'
	$(PY) -c "import fastreid_slr; print('faiss:', fastreid_slr.faiss_build())"
	$(PY) tools/build_rank_cylib.py
	# the pseudo-label step's numba kernels, compiled into their cache now rather than in a first epoch
	$(PY) -m slr_refine.warm_up
	rm -f $(VENV)/.setup-done-*
	touch $(STAMP)

demo: setup
	mkdir -p "$(FASTREID_DATASETS)"
	$(PY) tools/demo.py

$(ENGINE_STAMP): requirements/engine.txt requirements/engine-tests.txt Makefile
	test -x $(ENGINE_VENV)/bin/python || $(PYTHON) -m venv $(ENGINE_VENV)
	$(ENGINE_VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r requirements/engine-tests.txt
	touch $(ENGINE_STAMP)

# The engine's tests where torch and fast-reid are not installed, then the plugin's and whole runs.
test: setup $(ENGINE_STAMP)
	$(ENGINE_VENV)/bin/python -m pytest -q tests/engine
	$(PY) -m pytest -q tests/plugin tests/integration

# The GPU acceptance check (tools/gpu_check.py): the paper's model on CUDA, a tiny CPU mode
# without one. One JSON and one table in output/gpu-check.
gpu-check: setup
	mkdir -p "$(FASTREID_DATASETS)"
	$(PY) tools/gpu_check.py --output output/gpu-check

# Slow and GPU-only tests too (skipped by default).
test-all: setup $(ENGINE_STAMP)
	$(ENGINE_VENV)/bin/python -m pytest -q --run-slow tests/engine
	$(PY) -m pytest -q --run-slow tests/plugin tests/integration
