# Two entry points, each self-installing into .venv:  make run  |  make test
SHELL := /bin/bash
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
export DO_NOT_TRACK := 1
export KEDRO_DISABLE_TELEMETRY := true
export MLFLOW_DISABLE_TELEMETRY := true
export DVC_NO_ANALYTICS := 1
export PYTHONHASHSEED := 0

# What `make run` reports on its last line: the metrics JSON of the training run and where its plots are.
RUN_METRICS ?= data/08_reporting/train_sta_lstm/embedded/ntu/ntu60_xsub/metrics.json
RUN_REPORTS ?= data/08_reporting/train_sta_lstm/embedded/ntu/ntu60_xsub/

.PHONY: install run test lint bench clean

# the C extensions are built by the editable install: rebuild when their sources change
$(BIN)/.installed: pyproject.toml setup.py $(wildcard src/skeleton_attention/skeletons/*.c)
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q "torch==2.13.0"
	$(BIN)/pip install -q -e ".[dev]"
	touch $@

install: $(BIN)/.installed

## Generate the embedded synthetic data set, prepare it, and train STA-LSTM on it; the last line
## is the test accuracy.
run: install
	$(BIN)/kedro run --env=embedded
	@$(BIN)/skeleton-attention summary $(RUN_METRICS) --details $(RUN_REPORTS)

## The test suite (what CI runs).
test: install
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/pytest -n 2 --dist loadgroup

lint: install
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

bench: install
	$(BIN)/python benchmarks/bench_prepare.py
	$(BIN)/python benchmarks/bench_train.py

clean:
	rm -rf $(VENV) mlflow.db mlruns
