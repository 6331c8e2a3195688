"""`python -m framegate.benchmarks.measured_cli OUT.json ARGS...`: run `framegate ARGS` in this
process and write its exit status and peak resident memory (process_memory.py) to OUT.json,
so a benchmark measures the CLI's own memory, not its parent's."""
from __future__ import annotations

import json
import sys
from pathlib import Path

from framegate.benchmarks.process_memory import memory_mb


def main(argv: list[str]) -> int:
    out, args = Path(argv[0]), argv[1:]
    from framegate.engine.cli import main as framegate

    code = framegate(args)
    out.write_text(json.dumps({"returncode": code, **memory_mb()}), encoding="utf-8")
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
