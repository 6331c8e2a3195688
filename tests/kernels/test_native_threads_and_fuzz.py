"""The C++ kernels run race-free under ThreadSanitizer and survive a bounded libFuzzer campaign.

Both run binaries of cpp/build_checks.sh (built by setup.sh, brought up to date here):
- TSan: ctest's feature_window_threads_test (threads with their own FeatureWindow, and one
  shared window serialized by a mutex as the binding does) under FRAMEGATE_SANITIZE=thread.
- libFuzzer: cpp/fuzz/feature_window_fuzz.cc with ASan + UBSan, replaying every input in
  cpp/fuzz/regressions, then fuzzing for a bounded time. A longer run: benchmarks/fuzz.py.
"""
from __future__ import annotations

import os
import subprocess
from pathlib import Path


from framegate.benchmarks.fuzz import REGRESSIONS, run_fuzzer

from test_native_build import checks_build  # tests/kernels is on sys.path (rootdir-less tests)

FUZZ_SECONDS = 15


def test_kernels_are_race_free_under_thread_sanitizer_with_several_threads():
    build = checks_build("tsan")
    proc = subprocess.run([str(build / "feature_window_threads_test")], capture_output=True, text=True,
                          timeout=120, env=dict(os.environ, TSAN_OPTIONS="halt_on_error=1 exitcode=66"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "ThreadSanitizer" not in proc.stderr
    assert proc.stdout.count("[PASS]") == 2


def test_feature_window_survives_bounded_libfuzzer_campaign(tmp_path):
    regressions = Path(__file__).resolve().parents[2] / REGRESSIONS
    assert any(regressions.iterdir()), "the regression inputs are replayed on every run"
    binary = checks_build("fuzz") / "feature_window_fuzz"
    result = run_fuzzer(binary, regressions=regressions, seconds=FUZZ_SECONDS, workdir=tmp_path / "run")
    assert result.returncode == 0, result.log_tail
    assert not list((tmp_path / "run").glob("crash-*"))
    assert result.executions > 10_000, result.log_tail  # it really ran, not just started
