PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint format bench clean soak bench-streams

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test,dev,demo]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m uvicorn --app-dir examples ml_serving:router --host 127.0.0.1 --port 8000

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy --strict asgikit

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

test: lint
	$(BIN)/python -m pytest -q

$(VENV)/.bench-installed: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[bench]'
	touch $(VENV)/.bench-installed

bench: $(VENV)/.bench-installed
	$(BIN)/python bench/inproc.py
	$(BIN)/python bench/bench_streaming.py
	$(BIN)/python bench/bench_batching.py
	$(BIN)/python bench/bench_multipart.py
	$(BIN)/python bench/bench_files.py
	$(BIN)/python bench/bench_middleware.py
	$(BIN)/python bench/bench_metrics.py

clean:
	rm -rf $(VENV) build dist *.egg-info .mypy_cache .ruff_cache .pytest_cache

# Soak: uvicorn serving the ML example under churn (SSE clients leaving, aborted uploads,
# a shed burst), round after round; fails if fds, threads, temp files or RSS drift.
# About a minute; CI runs it after `make test`.
soak: $(STAMP)
	$(BIN)/python -m pytest -q -s -p no:cacheprovider soak

bench-streams: $(VENV)/.bench-installed
	$(BIN)/python bench/bench_many_streams.py
