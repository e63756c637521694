"""The test suite on every Python that `requires-python = ">=3.11"` promises.

``make test`` runs lint, typing and the docs once, then ``nox -s tests``: the suite on 3.11,
3.12 and 3.13, each in a fresh environment made by uv. A Python missing from the machine is
reported as skipped (nox says which); with ``CI`` set, a missing one is an error.

    nox -s tests-3.12 -- tests/pipes     # one Python, some tests
"""

from __future__ import annotations

import glob
import os

import nox

PYTHONS = ["3.11", "3.12", "3.13"]

# pyenv's shims answer only for its global version: put every installed version's own bin
# first on PATH, so "python3.12" is that interpreter. Never download one (no network here).
for _version in PYTHONS:
    for _bin in sorted(glob.glob(os.path.expanduser(f"~/.pyenv/versions/{_version}.*/bin"))):
        os.environ["PATH"] = _bin + os.pathsep + os.environ["PATH"]
os.environ.setdefault("UV_PYTHON_DOWNLOADS", "never")

nox.options.default_venv_backend = "uv"
nox.options.sessions = ["tests"]
nox.options.error_on_missing_interpreters = bool(os.environ.get("CI"))


@nox.session(python=PYTHONS)
def tests(session: nox.Session) -> None:
    """pytest (with the doctests of src/kagura) in a fresh environment."""
    session.install("-e", ".[dev]")
    session.run("python", "-m", "pytest", "-p", "no:cacheprovider", *session.posargs)
