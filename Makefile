# `make demo`: set up .venv and detect faces in the bundled sample image with the bundled model.
# `make test`: set up .venv and run the test suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

$(BIN)/leanface: requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -r requirements.txt
	$(BIN)/pip install -q --no-deps -e .
	touch $@

setup: $(BIN)/leanface

demo: setup
	$(BIN)/leanface demo --save-dir demo_out

test: setup
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -q --durations=15

bench: setup
	$(BIN)/python bench/bench_speed.py

.PHONY: setup demo test bench
