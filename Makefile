# Two commands: `make demo` and `make test`. Each sets up .venv first (idempotent: redone only
# when setup.py or this Makefile change).
PYTHON ?= python3
# Where datasets (and the generated procedural demo data) live; see README.
export FASTREID_DATASETS ?= $(CURDIR)/datasets
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.setup-done

.PHONY: setup demo test test-all
setup: $(STAMP)

$(STAMP): setup.py Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check torch==2.14.1 torchvision==0.29.1
	# fastreid's metadata pins torch 1.13 (no wheels for Python 3.11): install it without deps;
	# setup.py declares what it really needs.
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps fastreid==1.4.0
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[test]'
	$(PY) tools/build_rank_cylib.py
	touch $(STAMP)

demo: setup
	mkdir -p "$(FASTREID_DATASETS)"
	$(PY) tools/demo.py

test: setup
	$(PY) -m pytest -q tests

# Slow and GPU-only tests too (skipped by default).
test-all: setup
	$(PY) -m pytest -q --run-slow tests
