# Two entry points: `make run` (the main job) and `make test` (lint + the suite).
# Each creates .venv if missing and (re)installs the project only when
# pyproject.toml changed; the install is editable, so code edits need none.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip --disable-pip-version-check

.PHONY: run test lint bench clean help

help:
	@echo "make run    - set up .venv and run the main job (train, evaluate, report)"
	@echo "make test   - set up .venv with test tools, lint, and run the test suite"
	@echo "make lint   - ruff over src, tests, benchmarks, examples and scripts"
	@echo "make bench  - run the benchmarks and update BENCHMARKS.md"
	@echo "make clean  - remove .venv and caches (runs/ is kept)"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Stamps record that the install matches the current pyproject.toml. tensorflow-cpu (what
# digitlab 0.1 installed) and tensorflow share one package folder: when the old one is there,
# remove both, so that tensorflow is installed whole.
DROP_TF_CPU := if $(PIP) show -q tensorflow-cpu >/dev/null 2>&1; then $(PIP) uninstall -y -q tensorflow-cpu tensorflow; fi
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	@$(DROP_TF_CPU)
	$(PIP) install -q -e .
	@touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	@$(DROP_TF_CPU)
	$(PIP) install -q -e '.[test]'
	@touch $@ $(VENV)/.installed

run: $(VENV)/.installed
	$(BIN)/digitlab run
	@echo
	@echo "Next: source $(VENV)/bin/activate   (or call $(BIN)/digitlab), then try:"
	@echo "  digitlab predict examples/   |   digitlab serve   |   digitlab --help"

lint: $(VENV)/.installed-test
	$(BIN)/ruff check src tests benchmarks examples scripts

test: lint
	$(BIN)/python -m pytest

# Every table in BENCHMARKS.md, on this machine (see BENCHMARKS.md for how long each takes;
# run it on a quiet machine: the numbers are wall-clock times).
bench: $(VENV)/.installed-test
	$(BIN)/python benchmarks/bench_run.py --preset seed --write
	$(BIN)/python benchmarks/bench_run.py --preset fast --write
	$(BIN)/python benchmarks/bench_presets.py --seeds 3 --write
	$(BIN)/python benchmarks/bench_predict.py --write
	$(BIN)/python benchmarks/bench_runtimes.py --write
	$(BIN)/python benchmarks/bench_server.py --write
	$(BIN)/python benchmarks/bench_preprocess.py --write
	$(BIN)/python benchmarks/bench_mnist_c.py --montage docs/mnist_c.png --write
	$(BIN)/python benchmarks/bench_nondigits.py --montage docs/nondigits.png --write
	$(BIN)/python benchmarks/bench_calibration.py --figures docs --write
	$(BIN)/python benchmarks/bench_style.py --n 100 --seed 0 --finetune 10,20 --write

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache build src/*.egg-info
