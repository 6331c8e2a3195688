"""The C++ kernels run race-free under ThreadSanitizer and survive bounded libFuzzer campaigns.

Both run binaries of cpp/build_checks.sh (built by setup.sh, brought up to date here):
- TSan: ctest's feature_window_threads_test (threads with their own FeatureWindow, and one
  shared window serialized by a mutex as the binding does) under FRAMEGATE_SANITIZE=thread.
- libFuzzer: every harness cpp/fuzz/<name>_fuzz.cc (feature window, global CNN, gated encoder,
  token LM, the driver's raw tensor files and kernel weights) with ASan + UBSan, replaying the inputs of
  its earlier findings in cpp/fuzz/regressions/<name>/, then fuzzing for a bounded time.
  A longer run: benchmarks/fuzz.py.
"""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from framegate.benchmarks.fuzz import FUZZERS, regressions_dir, run_fuzzer

from test_native_build import checks_build  # tests/kernels is on sys.path (rootdir-less tests)

REPO = Path(__file__).resolve().parents[2]
FUZZ_SECONDS = 10
# Executions a campaign must reach to count as having fuzzed, not just started: about a tenth of
# what FUZZ_SECONDS gave on the 2-core machine with training jobs running (load average 3.6):
# 235k, 55k, 59k and 12k (raw_tensors builds and runs kernels from many of its files).
MIN_EXECUTIONS = {"feature_window": 10_000, "global_cnn_state": 5_000, "gated_encoder": 5_000,
                  "token_lm": 10_000, "raw_tensors": 1_000}  # token_lm: 376k in 40 s alone
# Harnesses whose findings were fixed: their inputs must stay in the tree and keep passing.
WITH_FINDINGS = ("feature_window", "global_cnn_state", "token_lm", "raw_tensors")


@pytest.fixture(scope="module")
def fuzz_build() -> Path:
    return checks_build("fuzz")


def test_kernels_are_race_free_under_thread_sanitizer_with_several_threads():
    build = checks_build("tsan")
    proc = subprocess.run([str(build / "feature_window_threads_test")], capture_output=True, text=True,
                          timeout=120, env=dict(os.environ, TSAN_OPTIONS="halt_on_error=1 exitcode=66"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "ThreadSanitizer" not in proc.stderr
    assert proc.stdout.count("[PASS]") == 2


@pytest.mark.parametrize("name", WITH_FINDINGS)
def test_every_fixed_finding_replays_clean(name, fuzz_build, tmp_path):
    inputs = sorted(p for p in regressions_dir(REPO, name).iterdir() if p.is_file())
    assert inputs, f"the inputs of {name}'s fixed findings are kept in {regressions_dir(REPO, name)}"
    result = run_fuzzer(fuzz_build / f"{name}_fuzz", regressions=regressions_dir(REPO, name), runs=0,
                        workdir=tmp_path / "replay")
    assert result.returncode == 0, result.log_tail
    assert result.executions >= len(inputs), result.log_tail  # -runs=0: each input once, no fuzzing


@pytest.mark.parametrize("name", FUZZERS)
def test_harness_survives_bounded_libfuzzer_campaign(name, fuzz_build, tmp_path):
    result = run_fuzzer(fuzz_build / f"{name}_fuzz", regressions=regressions_dir(REPO, name),
                        seconds=FUZZ_SECONDS, workdir=tmp_path / "run")
    assert result.returncode == 0, result.log_tail
    assert not list((tmp_path / "run").glob("crash-*"))
    assert result.executions >= MIN_EXECUTIONS[name], result.log_tail  # it really ran, not just started
