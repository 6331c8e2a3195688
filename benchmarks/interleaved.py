"""Throughput of several engines taken in turn, utterance by utterance, each in its own process.

On a shared machine the speed of the same code drifts by 20 % and more within minutes
(measured: one process decoding the same 40 utterances five times in a row took from
0.014 to 0.024 of real time). Engines run one after the other, each over the whole test
set, meet different minutes of that drift, and their time ratios swing with it: three
runs of the same benchmark gave framegate / raw ONNX Runtime 0.80, 0.96 and 1.28. Here
every engine is a child process serving one utterance per request (benchmarks/peers/child.py);
for each utterance the engines run back to back, their order rotating, so each ratio
compares times measured seconds apart. Each round does this over every utterance; an
utterance's time is the fastest of its rounds, and ratios come with a bootstrap interval
over utterances.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Hashable, Iterator

import numpy as np
from tqdm import tqdm

from framegate.benchmarks.report import bootstrap_interval
from framegate.engine.errors import FramegateError


class EngineServer:
    """One engine's child process, decoding the utterance it is asked for."""

    def __init__(self, name: str, job: dict, job_path: Path) -> None:
        self.name = name
        job_path.write_text(json.dumps(job), encoding="utf-8")
        self._process = subprocess.Popen(
            [sys.executable, "-m", "framegate.benchmarks.peers.child", "--serve", name, str(job_path)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, encoding="utf-8")

    def _reply(self) -> dict:
        line = self._process.stdout.readline()
        if not line:
            code = self._process.wait()
            raise FramegateError(f"benchmark engine '{self.name}' stopped (exit {code}); its error is printed above")
        return json.loads(line)

    def wait_ready(self) -> None:
        self._reply()

    def decode(self, index: int) -> dict:
        self._process.stdin.write(f"{index}\n")
        self._process.stdin.flush()
        return self._reply()

    def close(self) -> dict:
        """End the input; the engine's summary (threads, memory, modules)."""
        self._process.stdin.close()
        summary = self._reply()
        if self._process.wait() != 0:
            raise FramegateError(f"benchmark engine '{self.name}' failed (exit {self._process.returncode})")
        return summary

    def kill(self) -> None:
        if self._process.poll() is None:
            self._process.kill()
            self._process.wait()


def schedule(keys: list[Hashable], utterances: int, rounds: int) -> Iterator[tuple[int, int, Hashable]]:
    """(round, utterance, engine key) in running order: per round, per utterance, every engine
    once, back to back; the first engine rotates so none always runs first (after another's
    caches) or last."""
    for round_index in range(rounds):
        for i in range(utterances):
            shift = (i + round_index) % len(keys)
            for key in keys[shift:] + keys[:shift]:
                yield round_index, i, key


def run_interleaved(jobs: dict[Hashable, tuple[str, dict]], utterances: int, rounds: int,
                    work: Path) -> dict[Hashable, dict]:
    """jobs: key -> (engine name, job). Every engine decodes every utterance `rounds` times,
    the engines in turn per utterance; per key: the engine's summary with `utterances`, the
    records of the first round, each with its fastest `compute_s` of all rounds."""
    keys = list(jobs)
    servers: dict[Hashable, EngineServer] = {}
    try:
        for n, key in enumerate(keys):
            name, job = jobs[key]
            servers[key] = EngineServer(name, job, work / f"serve_{n}_{name}.job.json")
        for server in servers.values():  # all loaded before the first timed call
            server.wait_ready()
        records: dict[Hashable, list[dict]] = {key: [] for key in keys}
        progress = tqdm(total=rounds * utterances * len(keys), desc="throughput, engines in turn", unit="decode")
        for round_index, i, key in schedule(keys, utterances, rounds):
            record = servers[key].decode(i)
            if round_index == 0:
                records[key].append(record)
            else:
                kept = records[key][i]
                kept["compute_s"] = min(kept["compute_s"], record["compute_s"])
            progress.update()
        progress.close()
        return {key: {**servers[key].close(), "utterances": records[key]} for key in keys}
    finally:
        for server in servers.values():
            server.kill()


def ratio_interval(numerator: list[float], denominator: list[float], rounds: int = 2000,
                   seed: int = 0) -> list[float]:
    """95 % bootstrap interval over utterances of sum(numerator) / sum(denominator)
    (per-utterance times of two engines on the same utterances)."""
    pairs = np.column_stack([numerator, denominator]).astype(float)
    return bootstrap_interval(pairs, lambda s: s[:, 0].sum() / s[:, 1].sum(), rounds, seed)
