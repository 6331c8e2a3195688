"""Fuzz the Python-free C++ kernels with libFuzzer (ASan + UBSan), bounded or long.

One harness per native entry point that takes untrusted input (cpp/fuzz/<name>_fuzz.cc):
feature_window, global_cnn_state, gated_encoder, token_lm and raw_tensors (the driver's file format and
the kernel weights read from it). The tests run a bounded campaign of each
(tests/kernels/test_native_threads_and_fuzz.py); this script runs longer ones, of all harnesses
or those named, and writes a report (JSON + PNG of coverage over time):

    python -m framegate.benchmarks.fuzz --minutes 30 --json runs/fuzz.json [--fuzzers gated_encoder ...]

Needs Debian's clang and libclang-rt-14-dev (setup.sh installs both). A crash leaves its input
as `crash-*`, which the report lists and copies beside the JSON (`<stem>-crashes/<name>/`):
fix the kernel and add the input, named for the bug, to cpp/fuzz/regressions/<name>/ (every
later run of that harness, the tests' included, replays that directory).
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REGRESSIONS = Path("cpp") / "fuzz" / "regressions"  # relative to a source checkout; one directory a harness
FUZZERS = ("feature_window", "global_cnn_state", "gated_encoder", "token_lm", "raw_tensors")  # binary: <name>_fuzz
_PROGRESS = re.compile(r"^#(\d+)\s+\w+\s+cov: (\d+)")
_STAT = re.compile(r"^stat::(\w+):\s+(\d+)")


@dataclass(frozen=True)
class FuzzRun:
    """One libFuzzer campaign: its final stats and (executions, coverage) progress points."""

    fuzzer: str
    returncode: int
    seconds: float
    stats: dict[str, int]
    progress: list[tuple[int, int]]
    log_tail: str

    @property
    def executions(self) -> int:
        return self.stats.get("number_of_executed_units", 0)


def _run(cmd: list[str], env: dict[str, str]) -> None:
    result = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{result.stdout}\n{result.stderr}")


def checkout(repo: Path) -> Path:
    """The source checkout the fuzzers build from (they need cpp/, which installs do not carry)."""
    if not (repo / REGRESSIONS).is_dir():
        raise RuntimeError(f"{repo} is not a framegate source checkout (no {REGRESSIONS}): pass --repo")
    return repo


def regressions_dir(repo: Path, name: str) -> Path:
    """The directory of inputs harness `name` replays before fuzzing (it may not exist yet)."""
    return repo / REGRESSIONS / name


def build_fuzzers(build_dir: Path, repo: Path, cmake: str = "cmake", jobs: int = 2,
                  names: tuple[str, ...] = FUZZERS) -> dict[str, Path]:
    """Configure cpp/ with FRAMEGATE_FUZZ=ON under clang and build the harnesses `names`; name -> binary."""
    clang = shutil.which("clang++")
    if clang is None:
        raise RuntimeError("clang++ not found: install Debian's clang and libclang-rt-14-dev (setup.sh does)")
    generator = ["-G", "Ninja"] if shutil.which("ninja") else []
    env = dict(os.environ)
    _run([cmake, "-S", str(checkout(repo) / "cpp"), "-B", str(build_dir), *generator, f"-DCMAKE_CXX_COMPILER={clang}",
          "-DCMAKE_BUILD_TYPE=RelWithDebInfo", "-DFRAMEGATE_FUZZ=ON", "-DFRAMEGATE_WERROR=ON",
          "-DFRAMEGATE_BUILD_PYTHON=OFF"], env)
    _run([cmake, "--build", str(build_dir), "--parallel", str(jobs), "--target",
          *(f"{name}_fuzz" for name in names)], env)
    return {name: build_dir / f"{name}_fuzz" for name in names}


def run_fuzzer(binary: Path, *, regressions: Path, seconds: int | None = None, runs: int | None = None,
               workdir: Path, malloc_limit_mb: int = 512) -> FuzzRun:
    """Run one harness on a fresh corpus in `workdir`, replaying `regressions` first (if it exists).

    Bounded by `seconds` (-max_total_time) and/or `runs` (-runs); a crash leaves its input as
    `workdir/crash-*` and a non-zero return code.

    libFuzzer's RSS limit is off: it reads the peak RSS, which Linux carries across exec, so a
    fuzzer started from a big process (pytest with torch loaded) starts "over the limit".
    A single allocation over `malloc_limit_mb` still fails the run, and LeakSanitizer (on with
    ASan) reports leaks, which is what the RSS limit would have caught."""
    corpus = workdir / "corpus"
    corpus.mkdir(parents=True, exist_ok=True)
    limits = ([f"-max_total_time={seconds}"] if seconds else []) + ([f"-runs={runs}"] if runs is not None else [])
    cmd = [str(binary), *limits, "-print_final_stats=1", "-rss_limit_mb=0",
           f"-malloc_limit_mb={malloc_limit_mb}",
           f"-artifact_prefix={workdir}/", str(corpus)] + ([str(regressions)] if regressions.is_dir() else [])
    start = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True,
                          env=dict(os.environ, ASAN_OPTIONS="abort_on_error=1:quarantine_size_mb=64",
                                   UBSAN_OPTIONS="print_stacktrace=1"))
    elapsed = time.monotonic() - start
    stats, progress = {}, []
    for line in proc.stderr.splitlines():
        if m := _PROGRESS.match(line):
            progress.append((int(m.group(1)), int(m.group(2))))
        elif m := _STAT.match(line):
            stats[m.group(1)] = int(m.group(2))
    return FuzzRun(binary.name, proc.returncode, elapsed, stats, progress, "\n".join(proc.stderr.splitlines()[-40:]))


def run(minutes: float, json_path: Path, build_dir: Path, repo: Path, names: tuple[str, ...] = FUZZERS) -> dict:
    """Build, fuzz each harness of `names` for `minutes`, write the report and its PNG (and keep crashes)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from framegate.benchmarks.report import machine_info, write_report

    binaries = build_fuzzers(build_dir, repo, names=names)
    runs = {}
    fig, ax = plt.subplots(figsize=(7, 4))
    with tempfile.TemporaryDirectory(prefix="framegate-fuzz-") as tmp:
        for name, binary in binaries.items():
            result = run_fuzzer(binary, regressions=regressions_dir(repo, name), seconds=max(1, round(60 * minutes)),
                                workdir=Path(tmp) / name)
            crashes = sorted((Path(tmp) / name).glob("crash-*"))
            if crashes:
                kept = json_path.parent / f"{json_path.stem}-crashes" / name
                kept.mkdir(parents=True, exist_ok=True)
                for crash in crashes:
                    shutil.copy(crash, kept / crash.name)
            runs[name] = {"returncode": result.returncode, "seconds": round(result.seconds, 3),
                          "executions": result.executions,
                          "coverage_edges": result.progress[-1][1] if result.progress else 0,
                          "stats": result.stats, "crashes": [c.name for c in crashes],
                          "log_tail": result.log_tail if result.returncode else ""}
            if result.progress:
                ax.plot(*zip(*result.progress), label=name)
    ax.set_xlabel("executions")
    ax.set_ylabel("coverage (edges)")
    ax.set_xscale("log")
    ax.set_title(f"libFuzzer + ASan + UBSan, {minutes:g} min per harness")
    ax.legend()
    report = {"schema": 1, "minutes_per_fuzzer": minutes, "fuzzers": runs, "machine": machine_info(),
              "clean": all(r["returncode"] == 0 for r in runs.values())}
    write_report(json_path, report, fig)
    return report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="per harness")
    parser.add_argument("--json", type=Path, required=True, metavar="PATH")
    parser.add_argument("--repo", type=Path, default=Path.cwd(), help="the source checkout (default: here)")
    parser.add_argument("--build-dir", type=Path, default=None, help="default: REPO/build/fuzz")
    parser.add_argument("--fuzzers", nargs="+", choices=FUZZERS, default=list(FUZZERS), metavar="NAME",
                        help=f"harnesses to run (default: all of {', '.join(FUZZERS)})")
    args = parser.parse_args()
    repo = checkout(args.repo.resolve())
    report = run(args.minutes, args.json, args.build_dir or repo / "build" / "fuzz", repo, tuple(args.fuzzers))
    for name, r in report["fuzzers"].items():
        print(f"{name}: {r['executions']} executions in {r['seconds']:.0f} s, {r['coverage_edges']} edges, "
              f"{'clean' if r['returncode'] == 0 else 'CRASH ' + ', '.join(r['crashes'])}")
    return 0 if report["clean"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
