"""Run one engine of the latency benchmark in this process.

`python -m ... NAME JOB OUT` decodes every utterance of the job and writes the result
JSON to OUT. `python -m ... --serve NAME JOB` loads the engine and then decodes one
utterance per request: an index on a line of standard input, its record as a JSON line
on standard output; at the end of input a last line carries the process's memory. The
parent so takes every engine in turn, utterance by utterance (benchmarks/interleaved.py),
and a slow minute of a shared machine lands on all of them alike. Progress bars and
anything a library prints go to standard error. The process imports only what its engine
needs, so the peak RSS it reports is that engine's alone (VmHWM, benchmarks/process_memory.py).
"""
from __future__ import annotations

import importlib
import json
import os
import sys
import time
from pathlib import Path
from types import ModuleType

from tqdm import tqdm

from framegate.benchmarks.peers import RUNNERS
from framegate.benchmarks.process_memory import memory_mb


def _summary(module: ModuleType, job: dict) -> dict:
    """What the parent needs besides the records: engine, threads, memory, modules loaded."""
    return {"engine": module.ENGINE, "threads": getattr(module, "FIXED_THREADS", job["threads"]), **memory_mb(),
            "modules": sorted(m for m in ("torch", "matplotlib", "sherpa_onnx", "pocketsphinx", "onnxruntime")
                              if m in sys.modules)}


def run_all(name: str, job: dict) -> dict:
    """Every utterance of `job` through engine `name`, in order."""
    module = importlib.import_module(RUNNERS[name])
    started = time.perf_counter()
    decode = module.load(job)
    records = [decode(i, utt) for i, utt in enumerate(tqdm(job["utterances"], desc=name, unit="utt"))]
    return {"utterances": records, "wall_s": time.perf_counter() - started, **_summary(module, job)}


def serve(name: str, job: dict) -> None:
    """Decode the utterances whose indices arrive on standard input, one JSON line each."""
    replies = os.fdopen(os.dup(sys.stdout.fileno()), "w", encoding="utf-8")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # library output must not corrupt the replies
    sys.stdout = sys.stderr
    module = importlib.import_module(RUNNERS[name])
    decode = module.load(job)
    replies.write(json.dumps({"ready": True}) + "\n")
    replies.flush()
    for line in sys.stdin:
        index = int(line)
        replies.write(json.dumps(decode(index, job["utterances"][index])) + "\n")
        replies.flush()
    replies.write(json.dumps(_summary(module, job)) + "\n")
    replies.close()


def main(argv: list[str]) -> int:
    if argv[0] == "--serve":
        name, job_path = argv[1:]
        serve(name, json.loads(Path(job_path).read_text(encoding="utf-8")))
        return 0
    name, job_path, out_path = argv
    result = run_all(name, json.loads(Path(job_path).read_text(encoding="utf-8")))
    Path(out_path).write_text(json.dumps(result), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
