"""Run every benchmark module (`bench_*.py`) in turn: `python -m benchmarks`.

`python -m benchmarks bench_transports bench_coldstart` runs only those. Either way,
docs/en/benchmarks.md is then rewritten from every saved result (benchmarks.report_docs).
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
from pathlib import Path


def main() -> int:
    names = sorted(
        m.name
        for m in pkgutil.iter_modules([str(Path(__file__).parent)])
        if m.name.startswith("bench_")
    )
    only = set(sys.argv[1:])
    for name in names:
        if only and name not in only:
            continue
        print(f"\n## {name}")
        importlib.import_module(f"benchmarks.{name}").main()
    from benchmarks import report_docs

    return report_docs.main([])


if __name__ == "__main__":
    raise SystemExit(main())
