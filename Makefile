# Two commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-dev

.PHONY: demo test lint typecheck typecheck-docs pytest pytest-dev docs bench bench-docs clean browser

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

# The suite on Python 3.11, 3.12 and 3.13 (noxfile.py), each in a fresh environment;
# `make pytest-dev` runs it once, in .venv.
pytest: $(STAMP) browser
	$(BIN)/nox

pytest-dev: $(STAMP) browser
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

bench-docs: $(STAMP)
	$(BIN)/python -m benchmarks.report_docs

clean:
	rm -rf $(VENV) .nox build dist .pytest_cache .ruff_cache
