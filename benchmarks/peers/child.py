"""Run one engine of the latency benchmark in this process: `python -m ... NAME JOB OUT`.

The parent writes the job as JSON and reads the result JSON back; progress bars go to
standard error. The process imports only what its engine needs, so the peak RSS it
reports is that engine's alone (VmHWM, benchmarks/process_memory.py).
"""
from __future__ import annotations

import importlib
import json
import sys
import time
from pathlib import Path

from framegate.benchmarks.peers import RUNNERS
from framegate.benchmarks.process_memory import memory_mb


def main(argv: list[str]) -> int:
    name, job_path, out_path = argv
    job = json.loads(Path(job_path).read_text(encoding="utf-8"))
    started = time.perf_counter()
    result = importlib.import_module(RUNNERS[name]).run(job)
    result["wall_s"] = time.perf_counter() - started
    result.update(memory_mb())
    result["modules"] = sorted(m for m in ("torch", "matplotlib", "sherpa_onnx", "pocketsphinx", "onnxruntime")
                               if m in sys.modules)
    Path(out_path).write_text(json.dumps(result), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
