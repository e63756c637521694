# Two commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-dev

.PHONY: demo test lint typecheck typecheck-docs pytest pytest-dev docs bench bench-peers bench-docs clean browser redis node-deps

$(BIN)/python:
	$(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@ $(VENV)/.installed

demo: $(VENV)/.installed
	$(BIN)/python -m kagura.cli demo

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

typecheck: $(STAMP) typecheck-docs
	$(BIN)/pyright

# pyright (strict) over every Python example of README.md and docs/, each as a file of its
# own (as a reader would paste it), with diagnostics at the Markdown lines.
typecheck-docs: $(STAMP)
	$(BIN)/python tests/test_docs_typecheck.py

# Debian's chromium for tests/test_browser.py (which skips without it). Best effort:
# quiet, and never fails the build (no root, no network, not Debian: the test skips).
browser:
	@test -x /usr/bin/chromium || (export DEBIAN_FRONTEND=noninteractive; \
	  timeout 300 apt-get install -y -qq chromium >/dev/null 2>&1 || \
	  (timeout 120 apt-get update -qq >/dev/null 2>&1 && \
	   timeout 300 apt-get install -y -qq chromium >/dev/null 2>&1) || true)

# Debian's redis-server for the relay tests (tests/relay/, a server per session on a free
# port). Best effort like chromium; the tests skip without it, except under CI (env CI set),
# where they fail.
redis:
	@test -x /usr/bin/redis-server || (export DEBIAN_FRONTEND=noninteractive; \
	  timeout 300 apt-get install -y -qq redis-server >/dev/null 2>&1 || \
	  (timeout 120 apt-get update -qq >/dev/null 2>&1 && \
	   timeout 300 apt-get install -y -qq redis-server >/dev/null 2>&1) || true)

# The AI SDK's client for tests/test_ui_stream.py: `npm ci` in tests/js from its committed
# lockfile (the `ai` version pinned there), again when package*.json change. Without npm
# it says so and the tests skip, except under CI (env CI set), where both fail.
NODE_STAMP := tests/js/node_modules/.installed

node-deps:
	@if command -v npm >/dev/null 2>&1; then \
	  $(MAKE) --no-print-directory $(NODE_STAMP); \
	elif [ -n "$$CI" ]; then \
	  echo "node-deps: npm not found; CI needs Node >= 18 and npm" >&2; exit 1; \
	else \
	  echo "node-deps: npm not found: tests/test_ui_stream.py will skip (install Node >= 18)" >&2; \
	fi

$(NODE_STAMP): tests/js/package.json tests/js/package-lock.json
	cd tests/js && npm ci --no-audit --no-fund --loglevel=error
	touch $@

# The suite on Python 3.11, 3.12 and 3.13 (noxfile.py), each in a fresh environment;
# `make pytest-dev` runs it once, in .venv.
pytest: $(STAMP) browser redis node-deps
	$(BIN)/nox

pytest-dev: $(STAMP) browser redis node-deps
	$(BIN)/python -m pytest -p no:cacheprovider

# The documentation site (docs/en, mkdocs.yml) into site/ (git-ignored); --strict turns
# any warning (a broken link, an unknown ::: identifier) into a failure. Not --quiet:
# mkdocs then stops counting warnings.
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir site

test: lint typecheck pytest docs

# Every benchmark (tables on stdout, JSON in benchmarks/results/), then docs/en/benchmarks.md
# rewritten from the JSON; `make bench-docs` rewrites only the page.
bench: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	$(BIN)/python -m benchmarks
	$(MAKE) --no-print-directory bench-peers

# kagura beside pydantic-ai, langchain-openai, instructor, the openai SDK and litellm
# (benchmarks/bench_peers.py), in an environment of their own: their pins conflict with
# kagura's. Then docs/en/benchmarks.md and its charts from the saved results.
PEERS_VENV := .venv-peers
PEERS := 'pydantic-ai-slim[openai]' langchain-openai instructor openai litellm

$(PEERS_VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(PEERS_VENV) || python3 -m venv $(PEERS_VENV)
	$(PEERS_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(PEERS_VENV)/bin/python -m pip install --quiet -e . $(PEERS)
	touch $@

bench-peers: $(STAMP) $(PEERS_VENV)/.installed
	LITELLM_LOCAL_MODEL_COST_MAP=True $(PEERS_VENV)/bin/python -m benchmarks.bench_peers
	$(BIN)/python -m benchmarks.report_docs

bench-docs: $(STAMP)
	$(BIN)/python -m benchmarks.report_docs

clean:
	rm -rf $(VENV) $(PEERS_VENV) .nox build dist .pytest_cache .ruff_cache tests/js/node_modules
