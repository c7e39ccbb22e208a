PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: demo test test-pythons test-ray lint format docs bench bench-why bench-shared bench-serving bench-e2e clean soak bench-streams system-deps

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test,dev,demo,docs]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m uvicorn --app-dir examples ml_serving:router --host $(HOST) --port $(PORT)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy --strict asgikit
	$(BIN)/mypy --strict examples tests/typing

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# Debian packages the tests use (nginx; chromium for the demo page's browser test, driven
# by Playwright with no browser download), installed only when missing; CI runs as root.
system-deps:
	.ci/system-deps

# Branch coverage of asgikit/ is printed, and below 95% fails the run.
test: lint system-deps
	$(BIN)/python -m pytest -q --cov=asgikit --cov-branch --cov-report=term --cov-fail-under=95
	$(MAKE) docs

# The suite on the other CPython versions the project supports (requires-python >= 3.10),
# each in a venv of its own (.venv-3.X); an interpreter that is not found is skipped, and
# said so. About 3 minutes a version, so not part of `make test`. Choose them with
# PYTHONS="/path/to/python3.12 ...".
PYTHONS ?= python3.10 python3.12 python3.13
test-pythons: system-deps
	@for py in $(PYTHONS); do \
	  if ! $$py -c 'import sys' >/dev/null 2>&1; then \
	    echo "test-pythons: $$py not found, skipped"; continue; fi; \
	  venv=.venv-$$($$py -c 'import sys; print("%d.%d" % sys.version_info[:2])'); \
	  echo "test-pythons: $$py in $$venv"; \
	  [ -x $$venv/bin/python ] || $$py -m venv $$venv || exit 1; \
	  $$venv/bin/python -m pip install --quiet --upgrade pip || exit 1; \
	  $$venv/bin/python -m pip install --quiet -e '.[test]' || exit 1; \
	  $$venv/bin/python -m pytest -q -p no:cacheprovider || exit 1; \
	done

docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet

# The Ray Serve recipe: ray[serve] is heavy (ray alone is 240 MB), so it is not part of `make test`.
$(VENV)/.ray-installed: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[test,ray]'
	touch $(VENV)/.ray-installed

test-ray: $(VENV)/.ray-installed
	$(BIN)/python -m pytest -q -m ray tests/test_ray_serve.py

$(VENV)/.bench-installed: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[bench]'
	touch $(VENV)/.bench-installed

bench: $(VENV)/.bench-installed
	$(BIN)/python bench/inproc.py
	# what cancel_on_disconnect costs: the same routes with it on
	$(BIN)/python bench/inproc.py --apps raw_app,asgikit_app,asgikit_cancel_app \
		--scenarios hello,json,route-varied --routing '' --rounds 25
	$(BIN)/python bench/bench_streaming.py
	$(BIN)/python bench/bench_batching.py
	$(BIN)/python bench/bench_multipart.py
	$(BIN)/python bench/bench_files.py
	$(BIN)/python bench/bench_middleware.py
	$(BIN)/python bench/bench_metrics.py
	$(MAKE) bench-why

# WSGI (gunicorn sync/gthread) vs ASGI (uvicorn + asgikit), one process each: about 4
# minutes; writes docs/img/why_asgi.png. Shorter: make bench-why WHY_ARGS="--duration 1".
bench-why: $(VENV)/.bench-installed
	$(BIN)/python bench/why_asgi.py $(WHY_ARGS)

# Instructions per request under callgrind (repeatable on a busy machine; needs valgrind).
bench-instructions: $(VENV)/.bench-installed
	command -v valgrind >/dev/null || (apt-get update && apt-get install -y valgrind)
	$(BIN)/python bench/instructions.py --apps raw_app,raw_generator_app,falcon_app,asgikit_app \
		--scenarios hello,stream,sse

# The shared peer harness (../shared/bench, or SHARED_BENCH=...) with asgikit plugged in.
bench-shared: $(VENV)/.bench-installed
	$(BIN)/python bench/shared_inproc.py --apps raw,falcon_app,starlette_app,asgikit_app \
		--scenarios hello,json,route-varied,stream --no-routing

# One model behind asgikit + Batcher, asgikit unbatched and LitServe, over real HTTP.
bench-serving: $(VENV)/.bench-installed
	$(BIN)/python bench/bench_serving_peers.py

clean:
	rm -rf $(VENV) site .coverage build dist *.egg-info .mypy_cache .ruff_cache .pytest_cache

# Soak: uvicorn serving the ML example under churn (SSE clients leaving, aborted uploads,
# a shed burst), round after round; fails if fds, threads, temp files or RSS drift.
# About a minute; CI runs it after `make test`.
soak: $(STAMP)
	$(BIN)/python -m pytest -q -s -p no:cacheprovider soak

bench-streams: $(VENV)/.bench-installed
	$(BIN)/python bench/bench_many_streams.py

# End to end: raw ASGI, Starlette, Falcon, BlackSheep and asgikit under uvicorn (httptools,
# h11) and granian, driven by wrk (installed here when missing). About 13 minutes; quicker:
# make bench-e2e E2E_ARGS=--quick, or E2E_ARGS="--servers granian --scenarios hello,stream".
bench-e2e: $(VENV)/.bench-installed
	command -v wrk >/dev/null || (apt-get update && apt-get install -y wrk)
	$(BIN)/python bench/e2e.py $(E2E_ARGS)
