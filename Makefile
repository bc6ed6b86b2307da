# Two entry points, each doing all of its own set-up from a fresh clone:
#   make book   -> executes every notebook with papermill and builds _build/html
#   make test   -> unit tests + a smoke execution of every notebook + a smoke book build
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.calkit-installed
PROFILE ?= cpu
export MPLCONFIGDIR := $(CURDIR)/.cache/mpl
export JUPYTER_RUNTIME_DIR := $(CURDIR)/.cache/jupyter-runtime

.PHONY: setup book test lint check-features clean

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[book,test]'
	touch $@

book: $(STAMP)
	$(PY) tools/build_book.py --profile $(PROFILE)

test: $(STAMP)
	$(PY) -m pytest -q -m "not extended"

# The featuriser's equality with matminer on every composition of every data set (minutes; make
# test checks a covering subset). Run it after any change to calkit/fast_features.py.
check-features: $(STAMP)
	CALKIT_FULL_FEATURE_CHECK=1 $(PY) -m pytest -q -p no:cacheprovider \
	    tests/test_fast_features.py -k "every_real_composition"

lint: $(STAMP)
	$(VENV)/bin/ruff check calkit tests tools benchmarks
	$(VENV)/bin/mypy

clean:
	rm -rf _build .cache/mpl .cache/jupyter-runtime
