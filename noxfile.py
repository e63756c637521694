"""The test suite on every Python that `requires-python = ">=3.11"` promises.

``make test`` runs lint, typing and the docs once, then ``nox -s tests``: the suite on 3.11,
3.12 and 3.13, each in a fresh environment made by uv. A Python missing from the machine is
reported as skipped (nox says which); with ``CI`` set, a missing one is an error.

    nox -s tests-3.12 -- tests/pipes     # one Python, some tests (in one process)

Without arguments, two runs. First the suite less the relay's tests, on two pytest-xdist
workers: much of it waits on timers, servers and subprocesses, so two share the 2 cores of
CI well. ``--dist loadfile`` sends each test file whole to one worker: a module-scoped
fixture (a Chromium, the docs site built, litellm's answers from a child process) starts
once, and a file's tests run in their order, as without xdist; session fixtures (the
loopback server, redis-server) start once per worker, on free ports. Then the relay's tests
(RELAY_TESTS) in one process of their own: they hold leases of 0.3 to 1 s in wall time
against redis-server and a Redis Cluster, and a second worker busy on the same cores made
them fail now and then (a producer reported lost).
"""

from __future__ import annotations

import glob
import os

import nox
import nox.command

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

RELAY_TESTS = ["tests/relay", "tests/test_relay_web.py"]


@nox.session(python=PYTHONS)
def tests(session: nox.Session) -> None:
    """pytest (with the doctests of src/kagura) in a fresh environment."""
    session.install("-e", ".[dev]")
    pytest = ("python", "-m", "pytest", "-p", "no:cacheprovider")
    if session.posargs:
        session.run(*pytest, *session.posargs)
        return
    ignore = [f"--ignore={path}" for path in RELAY_TESTS]
    runs = {
        "the suite less the relay's tests": [*pytest, "-n", "2", "--dist", "loadfile", *ignore],
        "the relay's tests": [*pytest, *RELAY_TESTS],
    }
    failed = []
    for name, command in runs.items():
        try:
            session.run(*command)
        except nox.command.CommandFailed:
            failed.append(name)  # the other run still runs: one report of every failure
    if failed:
        session.error(f"failed: {' and '.join(failed)}")
