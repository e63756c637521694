"""Every ```python block in README.md and docs/ runs here, as a reader would run it.

Each block is one test case (``docs/en/quickstart.md:12``), compiled as a plain module
(no top-level ``await``: pasted into a file, it must run with ``python file.py``) and
executed as a fresh module. Tracebacks point at the Markdown file's own lines. A block
must also call every undecorated function it defines (an example that only defines
``main()`` shows nothing). ``tests/test_docs_typecheck.py`` runs pyright over the same
blocks.

Two conventions in the Markdown:

- ``<!-- skip-test: reason -->`` on the line before a block skips it, with that
  reason (for a block that needs a real provider key, say).
- a ``text`` block titled ``"Output"`` right after a Python block is what the
  block prints: the test compares it with the captured stdout (trailing spaces
  ignored).
"""

from __future__ import annotations

import ast
import re
import sys
import types
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from kagura.llm.cache import set_llm_cache

DOCS = Path(__file__).resolve().parents[1] / "docs"
ROOT = DOCS.parent

_FENCE = re.compile(r"^(?P<indent>[ ]*)(?P<fence>`{3,}|~{3,})(?P<info>[^`]*)$")
_SKIP = re.compile(r"<!--\s*skip-test:\s*(?P<reason>.+?)\s*-->")
_OUTPUT_TITLE = re.compile(r"""\btitle=(["'])Output\1""")


@dataclass(frozen=True, slots=True)
class Block:
    """One fenced code block of a Markdown file."""

    path: Path
    line: int  # 1-based line of the opening fence
    lang: str
    info: str
    code: str
    before: str  # the nearest non-blank line above the fence
    after_gap: bool  # False when only blank lines separate it from the previous block

    @property
    def id(self) -> str:
        return f"{self.path.relative_to(ROOT).as_posix()}:{self.line}"


def parse_blocks(path: Path) -> list[Block]:
    """The fenced code blocks of a Markdown file, in order (unclosed fences fail)."""
    lines = path.read_text(encoding="utf-8").splitlines()
    blocks: list[Block] = []
    last_text = ""
    gap = True
    i = 0
    while i < len(lines):
        opening = _FENCE.match(lines[i])
        if opening is None:
            if lines[i].strip():
                last_text = lines[i].strip()
                gap = True
            i += 1
            continue
        indent, fence = len(opening["indent"]), opening["fence"]
        info = opening["info"].strip()
        body: list[str] = []
        j = i + 1
        while j < len(lines):
            closing = _FENCE.match(lines[j])
            if (
                closing is not None
                and closing["fence"][0] == fence[0]
                and len(closing["fence"]) >= len(fence)
                and not closing["info"].strip()
            ):
                break
            line = lines[j]
            body.append(line[indent:] if line[:indent].strip() == "" else line.lstrip())
            j += 1
        else:
            raise AssertionError(f"{path}:{i + 1}: code fence never closed")
        lang = info.split(maxsplit=1)[0].lstrip("{.").rstrip("}") if info else ""
        blocks.append(Block(path, i + 1, lang, info, "\n".join(body), last_text, gap))
        last_text = ""
        gap = False
        i = j + 1
    return blocks


def markdown_files() -> list[Path]:
    """README.md and every page of the documentation site."""
    return [ROOT / "README.md", *sorted(DOCS.rglob("*.md"))]


def python_examples() -> Iterator[tuple[Block, Block | None]]:
    """Each Python block, with the ``Output`` block that follows it, if any."""
    for path in markdown_files():
        blocks = parse_blocks(path)
        for k, block in enumerate(blocks):
            if block.lang not in ("python", "py"):
                continue
            following = blocks[k + 1] if k + 1 < len(blocks) else None
            is_output = (
                following is not None
                and not following.after_gap
                and _OUTPUT_TITLE.search(following.info) is not None
            )
            yield block, following if is_output else None


EXAMPLES = list(python_examples())


def padded_source(block: Block) -> str:
    """The block's code, after blank lines, so that its line numbers are the Markdown file's."""
    return "\n" * block.line + block.code + "\n"


def _run(block: Block) -> None:
    # No PyCF_ALLOW_TOP_LEVEL_AWAIT: a top-level `await` or `async for` is the SyntaxError
    # a reader would get.
    code = compile(padded_source(block), str(block.path), "exec", dont_inherit=True)
    name = f"docs_example_{abs(hash(block.id))}"
    module = types.ModuleType(name)
    module.__file__ = str(block.path)
    sys.modules[name] = module  # pydantic, dataclasses and typing look classes up here
    try:
        exec(code, module.__dict__)
    finally:
        del sys.modules[name]


def uncalled_functions(code: str) -> list[str]:
    """Top-level functions a block defines but never refers to (decorated ones excepted:
    a decorator such as ``@pytest.fixture`` or ``@agent`` is what uses them)."""
    tree = ast.parse(code)
    defined = [
        node.name
        for node in tree.body
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and not node.decorator_list
    ]
    used = {
        node.id
        for node in ast.walk(tree)
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load)
    }
    return [name for name in defined if name not in used]


@pytest.fixture(autouse=True)
def fresh_cache() -> Iterator[None]:
    """Each example starts with an empty default LLM cache, as a new process would."""
    set_llm_cache(None)
    yield
    set_llm_cache(None)


@pytest.mark.parametrize(("block", "output"), EXAMPLES, ids=[b.id for b, _ in EXAMPLES])
def test_example(block: Block, output: Block | None, capsys: pytest.CaptureFixture[str]) -> None:
    if (skip := _SKIP.search(block.before)) is not None:
        pytest.skip(f"marked skip-test in the docs: {skip['reason']}")
    _run(block)
    if output is not None:
        printed = capsys.readouterr().out
        assert _normalise(printed) == _normalise(output.code), f"output of {block.id}"


@pytest.mark.parametrize(("block", "output"), EXAMPLES, ids=[b.id for b, _ in EXAMPLES])
def test_example_calls_what_it_defines(block: Block, output: Block | None) -> None:
    assert not uncalled_functions(block.code), (
        f"{block.id}: defines but never calls {uncalled_functions(block.code)}"
    )


def _normalise(text: str) -> str:
    return "\n".join(line.rstrip() for line in text.strip("\n").splitlines())


def test_docs_have_examples() -> None:
    """The collection itself works: the pages are found and their examples with them."""
    assert markdown_files(), f"no Markdown under {DOCS}"
    assert len(EXAMPLES) >= 20, "fewer Python examples than expected: is a fence malformed?"


@pytest.mark.parametrize("path", markdown_files(), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_output_blocks_follow_examples(path: Path) -> None:
    """An ``Output`` block always belongs to the Python block just above it."""
    blocks = parse_blocks(path)
    for k, block in enumerate(blocks):
        if _OUTPUT_TITLE.search(block.info):
            previous = blocks[k - 1] if k else None
            assert previous is not None, f"{block.id}: an Output block with no example above"
            assert previous.lang in ("python", "py"), f"{block.id}: follows a non-Python block"
            assert not block.after_gap, f"{block.id}: text between the example and its output"
