"""pyright (strict) over the Python examples of README.md and docs/, each as its own file.

``make typecheck-docs`` (part of ``make typecheck``, so of ``make test``) runs

    .venv/bin/python tests/test_docs_typecheck.py

which writes every ```python block that ``tests/test_docs.py`` runs to a file of its own
in a temporary directory, opening with ``# pyright: strict`` and padded so that its line
numbers are the Markdown file's, runs pyright on them with the repository's configuration
(``[tool.pyright]`` in pyproject.toml: its interpreter and Python version) and prints each
diagnostic at the Markdown line it comes from (``README.md:70:5: error: ...``). A block
sees nothing of the blocks around it, as when it is pasted into a file.

The tests below check the extraction and the mapping; the pyright run itself belongs to
``make``, not to the suite (it would run once per Python of ``nox``).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from test_docs import EXAMPLES, ROOT, Block, padded_source

PYRIGHT = Path(sys.executable).parent / "pyright"
HEADER = "# pyright: strict\n"


@dataclass(frozen=True, slots=True)
class Diagnostic:
    """One pyright finding, placed in the Markdown file."""

    where: str  # README.md:70:5
    severity: str
    message: str

    def __str__(self) -> str:
        return f"{self.where}: {self.severity}: {self.message}"


def snippet_name(block: Block) -> str:
    """A file name for the block: its Markdown path and line, as an identifier."""
    stem = block.path.relative_to(ROOT).with_suffix("").as_posix()
    return "".join(c if c.isalnum() else "_" for c in stem) + f"_L{block.line}.py"


def write_snippets(blocks: Iterable[Block], dest: Path) -> dict[Path, Block]:
    """Write each block to ``dest``: the strict comment on line 1, the code at its own lines."""
    dest.mkdir(parents=True, exist_ok=True)
    files: dict[Path, Block] = {}
    for block in blocks:
        path = dest / snippet_name(block)
        # padded_source starts with block.line blank lines; the header takes the first.
        path.write_text(HEADER + padded_source(block)[1:], encoding="utf-8")
        files[path.resolve()] = block
    return files


def run_pyright(files: dict[Path, Block]) -> list[Diagnostic]:
    """pyright's errors and warnings on the files, at their Markdown lines."""
    result = subprocess.run(
        [str(PYRIGHT), "--outputjson", "--project", str(ROOT / "pyproject.toml"), *map(str, files)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    try:
        report = json.loads(result.stdout)
    except json.JSONDecodeError:
        raise RuntimeError(f"pyright failed:\n{result.stdout}\n{result.stderr}") from None
    found: list[Diagnostic] = []
    for item in report["generalDiagnostics"]:
        block = files.get(Path(item["file"]).resolve())
        start = item["range"]["start"]  # 0-based, as the padded file's lines
        if block is None:
            where = f"{item['file']}:{start['line'] + 1}"
        else:
            where = f"{block.path.relative_to(ROOT).as_posix()}:{start['line'] + 1}"
        rule = f" ({item['rule']})" if "rule" in item else ""
        found.append(
            Diagnostic(
                f"{where}:{start['character'] + 1}", item["severity"], item["message"] + rule
            )
        )
    return found


def typecheck(blocks: Sequence[Block]) -> list[Diagnostic]:
    with tempfile.TemporaryDirectory(prefix="kagura-docs-") as tmp:
        return run_pyright(write_snippets(blocks, Path(tmp)))


def main() -> int:
    blocks = [block for block, _ in EXAMPLES]
    found = [d for d in typecheck(blocks) if d.severity in ("error", "warning")]
    for diagnostic in found:
        print(diagnostic)
    print(f"pyright (strict) on {len(blocks)} documentation examples: {len(found)} problems")
    return 1 if found else 0


def test_every_example_is_written_at_its_markdown_lines(tmp_path: Path) -> None:
    blocks = [block for block, _ in EXAMPLES]
    files = write_snippets(blocks, tmp_path)
    assert len(files) == len(blocks), "two examples were written to one file"
    for path, block in files.items():
        lines = path.read_text(encoding="utf-8").splitlines()
        assert lines[0] == HEADER.strip()
        # The block's first line of code is the line after its opening fence.
        assert lines[block.line : block.line + 3] == block.code.splitlines()[:3], block.id


def test_readme_and_the_site_are_both_checked() -> None:
    pages = {block.path.relative_to(ROOT).as_posix() for block, _ in EXAMPLES}
    assert "README.md" in pages
    assert "docs/en/quickstart.md" in pages


if __name__ == "__main__":
    raise SystemExit(main())
