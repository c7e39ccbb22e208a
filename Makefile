PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint format bench bench-serving clean

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

# One model behind asgikit + Batcher, asgikit unbatched and LitServe, over real HTTP.
bench-serving: $(VENV)/.bench-installed
	$(BIN)/python bench/bench_serving_peers.py

clean:
	rm -rf $(VENV) build dist *.egg-info .mypy_cache .ruff_cache .pytest_cache
