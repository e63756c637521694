"""The ``kagura`` command as a person uses it: in a real terminal (pexpect), with Ctrl-C.

Terminal tests run ``python -m kagura.cli`` in a pty with a clean environment (no
provider key, no KAGURA_* variables); the quick checks of output and errors call
:func:`kagura.cli.main` in-process.
"""

from __future__ import annotations

import io
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

import pexpect
import pytest
import typer

from kagura.cli import OFFLINE_TTFT_S, app, main
from kagura.testing.loopback import LoopbackServer, Script

_ENV_VARS = ("OPENAI_API_KEY", "KAGURA_MODEL", "KAGURA_API_BASE")
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
TEXT = (
    "The quick brown fox jumps over the lazy dog while the patient owl counts "
    "the stars above the quiet valley and the river hums an old song to the reeds."
)


def plain(output: str) -> str:
    """Terminal output without colours and cursor moves."""
    return _ANSI.sub("", output).replace("\r", "")


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The developer's keys and KAGURA_* settings must not leak into these tests."""
    for name in _ENV_VARS:
        monkeypatch.delenv(name, raising=False)


def _ctrl_c_as_in_a_terminal() -> None:
    # A suite started in the background (`pytest &` in a script, nohup) has SIGINT ignored,
    # and a child inherits that: Ctrl-C would then do nothing. A person's terminal has it.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def spawn(*args: str, env: Mapping[str, str] = {}, cwd: Path | None = None) -> pexpect.spawn:
    """``kagura ARGS`` in a fresh 30x100 terminal."""
    base = {k: v for k, v in os.environ.items() if k not in _ENV_VARS}
    base |= {"TERM": "xterm-256color", "PYTHONUNBUFFERED": "1"}
    return pexpect.spawn(
        sys.executable,
        ["-m", "kagura.cli", *args],
        env=base | dict(env),
        cwd=str(cwd) if cwd else None,
        dimensions=(30, 100),
        encoding="utf-8",
        timeout=20,
        preexec_fn=_ctrl_c_as_in_a_terminal,
    )


def finish(child: pexpect.spawn) -> str:
    """Wait for the command to exit; return what it printed since the last match."""
    child.expect(pexpect.EOF, timeout=20)
    child.close()
    return str(child.before)


# -- in a terminal -----------------------------------------------------------------------
def test_the_answer_appears_progressively() -> None:
    start = time.monotonic()
    child = spawn("stream", "go", "--replay-text", TEXT, "--tokens-per-s", "20", "--ttft", "0")
    child.expect("quick")
    first_words = time.monotonic() - start
    child.expect("tokens/s")  # the final footer (the live one has no rate)
    footer = time.monotonic() - start
    rest = plain(finish(child))
    assert child.exitstatus == 0
    # 30 tokens at 20 per second: the end comes about 1.5 s after the first words
    assert footer - first_words > 1.0, (first_words, footer)
    assert "tokens" in rest
    assert "(estimated)" not in rest  # the offline model reports its usage


def test_ctrl_c_stops_with_130_and_keeps_the_partial_text() -> None:
    child = spawn("stream", "go", "--replay-text", TEXT, "--tokens-per-s", "10", "--ttft", "0")
    child.expect("brown")
    child.sendintr()
    after = plain(finish(child))
    assert child.exitstatus == 130
    assert "[stopped: Ctrl-C]" in after
    # printed again below the cleared live view: a strict prefix of the answer
    kept = after[: after.index("[stopped: Ctrl-C]")].strip().splitlines()[-1].strip()
    assert kept.startswith("The quick brown")
    assert TEXT.startswith(kept)
    assert len(kept) < len(TEXT)
    assert "Traceback" not in after


def test_sigterm_stops_like_ctrl_c_and_shows_the_cursor_again() -> None:
    child = spawn("stream", "go", "--replay-text", TEXT, "--tokens-per-s", "10", "--ttft", "0")
    child.expect("brown")
    child.kill(signal.SIGTERM)
    after = finish(child)
    assert child.exitstatus == 128 + signal.SIGTERM  # exited, not killed by the signal
    # rich's Live hid the cursor ("\x1b[?25l"); it must be shown again ("\x1b[?25h")
    assert "\x1b[?25h" in after
    assert "\x1b[?25l" not in after[after.rindex("\x1b[?25h") :]
    assert "[stopped: SIGTERM]" in plain(after)
    assert "Traceback" not in after


def test_ctrl_c_closes_the_http_stream(loopback: LoopbackServer) -> None:
    loopback.enqueue(Script.text("word " * 400, chunk_size=5, chunk_delay=0.02))
    env = {"KAGURA_API_BASE": loopback.base_url, "OPENAI_API_KEY": "sk-test-0123456789"}
    child = spawn("stream", "hello", "--model", "openai/x", env=env)
    child.expect("word word word")
    assert loopback.stats().streams_in_progress == 1
    child.sendintr()
    after = plain(finish(child))
    assert child.exitstatus == 130
    assert "word word" in after
    assert loopback.wait_idle_sync(5.0)
    assert loopback.stats().streams_closed_by_client == 1
    assert loopback.stats().streams_completed == 0


def test_schema_shows_the_object_growing(tmp_path: Path) -> None:
    (tmp_path / "cli_models.py").write_text(
        "from pydantic import BaseModel\n"
        "class Pet(BaseModel):\n"
        "    name: str\n"
        "    tricks: list[str]\n"
    )
    document = '{"name": "Rex", "tricks": ["sit", "roll over", "play dead", "fetch the paper"]}'
    start = time.monotonic()
    child = spawn(
        "stream", document, "-m", "kagura/echo", "--schema", "cli_models:Pet",
        "--tokens-per-s", "8", "--ttft", "0", cwd=tmp_path,
    )  # fmt: skip
    child.expect("Rex")
    named = time.monotonic() - start
    child.expect("tokens/s")
    done = time.monotonic() - start
    printed = plain(str(child.before))
    finish(child)
    assert child.exitstatus == 0
    assert done - named > 0.5, (named, done)  # the name showed well before the last trick
    assert '"fetch the paper"' in printed  # the whole object stays on screen


# -- output and errors -----------------------------------------------------------------------
def test_not_a_terminal_writes_plain_text_and_the_footer_to_stderr(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code = main(["stream", "Hello there, pipe.", "-m", "kagura/echo", "--tokens-per-s", "0"])
    out, err = capsys.readouterr()
    assert code == 0
    assert out == "Hello there, pipe.\n"
    assert "time to first token" in err
    assert "3 + 3 = 6 tokens" in err


def test_sentences_and_throttle_lose_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    args = ["-m", "kagura/replay", "--replay-text", TEXT, "--tokens-per-s", "0", "--ttft", "0"]
    assert main(["stream", "go", "--sentences", "--throttle", "0.01", *args]) == 0
    assert capsys.readouterr().out == TEXT + "\n"


def test_log_reports_the_stream_events_on_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["stream", "a b", "-m", "kagura/echo", "--log", "--tokens-per-s", "0"]) == 0
    out, err = capsys.readouterr()
    assert out == "a b\n"
    assert "stream.start" in err
    assert "stream.end" in err
    # The offline model reports its usage: the log says so, it does not estimate.
    end = next(line for line in err.splitlines() if "stream.end" in line)
    assert "tokens_estimated=False" in end


def test_a_dash_reads_the_prompt_from_stdin(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO("from stdin"))
    assert main(["stream", "-", "-m", "kagura/echo", "--tokens-per-s", "0"]) == 0
    assert capsys.readouterr().out == "from stdin\n"


@pytest.mark.parametrize("stdin", [None, io.StringIO()], ids=["never-open", "closed"])
def test_a_closed_stdin_is_one_clear_usage_error(
    stdin: io.StringIO | None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    if stdin is not None:
        stdin.close()
    monkeypatch.setattr(sys, "stdin", stdin)  # what `kagura stream - <&-` gets
    assert main(["stream", "-", "-m", "kagura/echo", "--tokens-per-s", "0"]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert "cannot read the prompt from stdin" in err
    assert "Traceback" not in err


def run_in_shell(redirect: str, *args: str) -> subprocess.CompletedProcess[str]:
    """``kagura ARGS REDIRECT`` run by sh (``>&-`` closes stdout), stderr captured."""
    env = {k: v for k, v in os.environ.items() if k not in _ENV_VARS}
    return subprocess.run(
        ["sh", "-c", f'"$@" {redirect}', "sh", sys.executable, "-m", "kagura.cli", *args],
        stderr=subprocess.PIPE,
        env=env,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize("command", [["stream", "hi", "-m", "kagura/echo"], ["demo"]])
def test_a_closed_stdout_fails_before_the_request(command: list[str]) -> None:
    done = run_in_shell(">&-", *command, "--tokens-per-s", "0", "--ttft", "0")
    assert done.returncode == 1
    assert done.stderr == "kagura: stdout is closed: there is nowhere to write the answer\n"


def test_a_reader_that_went_away_is_one_line_and_exit_1() -> None:
    # `| true`: the reader exits at once, long before the first token (--ttft 1)
    args = ["stream", "hi", "-m", "kagura/echo", "--tokens-per-s", "0", "--ttft", "1"]
    env = {k: v for k, v in os.environ.items() if k not in _ENV_VARS}
    child = subprocess.Popen(
        [sys.executable, "-m", "kagura.cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        text=True,
    )
    assert child.stdout is not None
    child.stdout.close()
    _, err = child.communicate(timeout=60)
    assert child.returncode == 1
    assert err.strip().splitlines()[-1] == (
        "kagura: stdout was closed (broken pipe): the answer was not written in full"
    )
    assert "Traceback" not in err
    assert "Exception ignored" not in err


def importable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, module: str, source: str) -> None:
    """Write ``module`` in ``tmp_path`` and make it importable, as --schema imports it."""
    (tmp_path / f"{module}.py").write_text(source)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))


def test_schema_not_a_terminal_prints_the_validated_object(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    importable(
        tmp_path,
        monkeypatch,
        "cli_models_plain",
        "from pydantic import BaseModel\nclass Point(BaseModel):\n    x: int\n    y: int = 0\n",
    )
    args = ["-m", "kagura/echo", "--schema", "cli_models_plain:Point", "--tokens-per-s", "0"]
    assert main(["stream", 'Sure: {"x": 3}', *args]) == 0
    assert capsys.readouterr().out == '{\n  "x": 3,\n  "y": 0\n}\n'


def test_demo_works_offline_and_says_how_to_use_a_real_model(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["demo", "--tokens-per-s", "0", "--ttft", "0"]) == 0
    out = capsys.readouterr().out
    assert "kagura/replay" in out
    assert "buffer_sentences" in out
    assert "  1  Once upon a time, a dragon named Ember guarded the valley of St. Aldric." in out
    assert "  7  And that, the villagers said, is how the valley got its name." in out
    for name in ("OPENAI_API_KEY", "KAGURA_MODEL", "KAGURA_API_BASE"):
        assert name in out


def test_model_choice_follows_the_environment(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("KAGURA_MODEL", "kagura/echo")
    assert main(["stream", "echo me", "--tokens-per-s", "0"]) == 0
    out, err = capsys.readouterr()
    assert out == "echo me\n"
    assert "kagura/echo" in err


def test_a_missing_key_is_one_line_naming_the_variable(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["stream", "hi", "--model", "gpt-4o-mini"]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "OPENAI_API_KEY" in lines[0]
    assert "Traceback" not in err


def test_debug_shows_the_traceback(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["stream", "hi", "--model", "gpt-4o-mini", "--debug"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err
    assert "MissingAPIKeyError" in err
    assert err.strip().splitlines()[-1].startswith("kagura: no API key")


def test_a_failed_stream_keeps_its_partial_text(
    loopback: LoopbackServer, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("KAGURA_API_BASE", loopback.base_url)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-0123456789")
    loopback.enqueue(Script.text("Hello world, and more", error_event_after=1))
    assert main(["stream", "hi", "--model", "openai/x"]) == 1
    out, err = capsys.readouterr()
    assert out == "Hell\n"  # what arrived before the error event
    assert err.startswith("kagura: StreamError")
    assert len(err.strip().splitlines()) == 1
    assert "sk-test" not in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["stream", "hi", "--throttle", "0"], "--throttle"),
        (["stream", "hi", "--throttle", "nan"], "positive, finite number of seconds, got nan"),
        (["stream", "hi", "--throttle", "inf"], "positive, finite number of seconds, got inf"),
        (["stream", "hi", "--ttft", "inf"], "--ttft"),
        (["demo", "--ttft", "inf"], "--ttft"),
        (["stream", "hi", "--tokens-per-s", "inf"], "--tokens-per-s"),
        (["stream", "hi", "--schema", "pydantic:BaseModel"], "pydantic's base class"),
        (["stream", "hi", "--schema", "pydantic:RootModel"], "is a generic model"),
        (["stream", "hi", "--schema", "no_such_module_here:Model"], "cannot import"),
        (["stream", "hi", "--schema", "json:dumps"], "not a pydantic model"),
        (["stream"], "Missing argument"),
    ],
)
def test_usage_errors_exit_2(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(args) == 2
    err = capsys.readouterr().err
    assert message in " ".join(err.replace("│", " ").split())  # the message box wraps lines


def test_a_schema_without_fields_is_a_usage_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    importable(
        tmp_path,
        monkeypatch,
        "cli_models_empty",
        "from pydantic import BaseModel\nclass Nothing(BaseModel):\n    pass\n",
    )
    assert main(["stream", "hi", "--schema", "cli_models_empty:Nothing"]) == 2
    assert "has no fields" in capsys.readouterr().err


@pytest.mark.parametrize("command", [[], ["stream"], ["demo"]])
def test_help_shows_flags_as_flags(command: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*command, "--help"]) == 0
    out = capsys.readouterr().out
    assert "--help" in out
    assert "<bool>" not in out


def test_stream_and_demo_pace_the_offline_models_alike() -> None:
    group = typer.main.get_command(app)
    assert isinstance(group, typer.core.TyperGroup)
    defaults = {
        name: next(p.default for p in command.params if p.name == "ttft")
        for name, command in group.commands.items()
    }
    assert defaults == {"stream": OFFLINE_TTFT_S, "demo": OFFLINE_TTFT_S}


# -- secrets never reach the terminal ---------------------------------------------------
PLAIN_KEY = "my-plain-key-1234"  # not sk-shaped: only remembering it can scrub it


@pytest.mark.parametrize("debug", [False, True], ids=["one-line", "debug"])
@pytest.mark.parametrize(
    "script",
    [
        Script.error(401, f"Incorrect API key provided: {PLAIN_KEY}."),
        Script.error(500, f'upstream said {{"key": "{PLAIN_KEY}"}}'),
        Script.text(
            "Hello world", error_event_after=1, error_body={"message": f"bad key {PLAIN_KEY}"}
        ),
    ],
    ids=["401", "500", "mid-stream"],
)
def test_an_echoed_key_never_reaches_stderr(
    loopback: LoopbackServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    script: Script,
    debug: bool,
) -> None:
    monkeypatch.setenv("KAGURA_API_BASE", loopback.base_url)
    monkeypatch.setenv("OPENAI_API_KEY", PLAIN_KEY)
    loopback.enqueue(script, script, script)  # the CLI retries a 500 twice
    args = ["stream", "hi", "--model", "openai/x", *(["--debug"] if debug else [])]
    assert main(args) == 1
    out, err = capsys.readouterr()
    assert "kagura: " in err
    assert ("Traceback" in err) is debug
    assert PLAIN_KEY not in out + err


def test_a_password_in_the_api_base_never_reaches_stderr(
    loopback: LoopbackServer, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    base = loopback.base_url.replace("://", "://proxy:url-pa55-w0rd@", 1)
    monkeypatch.setenv("KAGURA_API_BASE", base)
    loopback.enqueue(Script.error(401, "no user proxy with password url-pa55-w0rd"))
    assert main(["stream", "hi", "--model", "openai/x", "--debug"]) == 1
    err = capsys.readouterr().err
    assert "kagura: " in err
    assert "url-pa55-w0rd" not in err


def test_the_debug_traceback_scrubs_the_chain_and_shows_no_locals() -> None:
    from rich.console import Console

    from kagura._redact import remember_secret
    from kagura.cli import _report  # pyright: ignore[reportPrivateUsage] -- the unit under test

    remember_secret(PLAIN_KEY)

    def fail() -> None:
        local_note = "".join(reversed("6789-eulav-lacol-a"))  # not in the source shown
        try:
            raise ValueError(f"root cause quoting {PLAIN_KEY}")
        except ValueError as exc:
            raise RuntimeError(f"wrapper quoting {PLAIN_KEY} ({local_note[:1]})") from exc

    buffer = io.StringIO()
    console = Console(file=buffer, width=200, highlight=False)
    try:
        fail()
    except RuntimeError as exc:
        _report(exc, console, model="openai/x", debug=True)
    printed = buffer.getvalue()
    assert "Traceback" in printed
    assert "root cause quoting [REDACTED]" in printed
    assert "wrapper quoting [REDACTED]" in printed
    assert PLAIN_KEY not in printed
    assert "a-local-value-9876" not in printed


@pytest.mark.parametrize(
    ("model", "key_var", "route"),
    [
        ("anthropic/claude-sonnet-4-5", "ANTHROPIC_API_KEY", "/v1/messages"),
        ("gemini/gemini-2.5-flash", "GEMINI_API_KEY", ":streamGenerateContent"),
    ],
)
def test_stream_speaks_anthropic_and_gemini_in_a_fresh_process(
    loopback: LoopbackServer, model: str, key_var: str, route: str
) -> None:
    loopback.enqueue(Script.text("Hello from the other protocol.", reasoning=("Thinking...",)))
    env = {k: v for k, v in os.environ.items() if k not in _ENV_VARS}
    env |= {"KAGURA_API_BASE": loopback.base_url, key_var: "test-key-0123456789"}
    code = "import sys, kagura.cli; code = kagura.cli.main(sys.argv[1:]); "
    code += "print('litellm' in sys.modules, file=sys.stderr); sys.exit(code)"
    done = subprocess.run(
        [sys.executable, "-c", code, "stream", "hi", "--model", model],
        capture_output=True,
        env=env,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("Hello from the other protocol.")
    assert "Thinking" not in done.stdout  # reasoning is not the answer
    assert done.stderr.splitlines()[-1] == "False"  # litellm was never imported
    assert route in loopback.requests[-1].path
