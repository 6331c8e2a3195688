"""Run one engine of the latency benchmark in this process: `python -m ... NAME JOB OUT`.

The parent writes the job as JSON and reads the result JSON back; progress bars go to
standard error. The process imports only what its engine needs, so the peak RSS it
reports is that engine's alone. It is VmHWM from /proc/self/status, the high-water mark
of this program's own memory: ru_maxrss would not do, since Linux carries the parent's
resident size at fork into the child's ru_maxrss across exec.
"""
from __future__ import annotations

import importlib
import json
import sys
import time
from pathlib import Path

from framegate.benchmarks.peers import RUNNERS


def _memory_kib() -> dict[str, int]:
    """VmHWM (peak resident) and VmRSS (resident now) of this process, in KiB."""
    fields = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmHWM", "VmRSS"):
            fields[key] = int(value.split()[0])
    return fields


def main(argv: list[str]) -> int:
    name, job_path, out_path = argv
    job = json.loads(Path(job_path).read_text(encoding="utf-8"))
    started = time.perf_counter()
    result = importlib.import_module(RUNNERS[name]).run(job)
    result["wall_s"] = time.perf_counter() - started
    memory = _memory_kib()
    result["peak_rss_mb"] = memory["VmHWM"] / 1024
    result["final_rss_mb"] = memory["VmRSS"] / 1024
    result["modules"] = sorted(m for m in ("torch", "matplotlib", "sherpa_onnx", "pocketsphinx", "onnxruntime")
                               if m in sys.modules)
    Path(out_path).write_text(json.dumps(result), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
