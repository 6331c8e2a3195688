"""The C++ kernels run race-free under ThreadSanitizer and survive a bounded libFuzzer campaign.

Both build Python-free from cpp/ in a temporary directory (about 10 s each on two cores):
- TSan: ctest's feature_window_threads_test (threads with their own FeatureWindow, and one
  shared window serialized by a mutex as the binding does) under FRAMEGATE_SANITIZE=thread.
- libFuzzer: cpp/fuzz/feature_window_fuzz.cc with ASan + UBSan, replaying every input in
  cpp/fuzz/regressions, then fuzzing for a bounded time. A longer run: benchmarks/fuzz.py.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from framegate.benchmarks.fuzz import CPP_DIR, REGRESSIONS, build_fuzzers, run_fuzzer

from test_native_build import find_tool, run  # tests/kernels is on sys.path (rootdir-less tests)

FUZZ_SECONDS = 15


def test_kernels_are_race_free_under_thread_sanitizer_with_several_threads(tmp_path):
    cmake = find_tool("cmake")
    build = tmp_path / "build"
    generator = ["-G", "Ninja"] if shutil.which("ninja") else []
    start = time.monotonic()
    run([cmake, "-S", str(CPP_DIR), "-B", str(build), *generator, "-DCMAKE_BUILD_TYPE=Debug",
         "-DFRAMEGATE_WERROR=ON", "-DFRAMEGATE_BUILD_PYTHON=OFF", "-DFRAMEGATE_SANITIZE=thread"])
    run([cmake, "--build", str(build), "--parallel", "2", "--target", "feature_window_threads_test"])
    proc = subprocess.run([str(build / "feature_window_threads_test")], capture_output=True, text=True,
                          timeout=60, env=dict(os.environ, TSAN_OPTIONS="halt_on_error=1 exitcode=66"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "ThreadSanitizer" not in proc.stderr
    assert proc.stdout.count("[PASS]") == 2
    assert time.monotonic() - start < 60


@pytest.mark.skipif(shutil.which("clang++") is None, reason="clang++ missing: setup.sh installs it")
def test_feature_window_survives_bounded_libfuzzer_campaign(tmp_path):
    assert any(REGRESSIONS.iterdir()), "the regression inputs are replayed on every run"
    binary = build_fuzzers(tmp_path / "build", cmake=find_tool("cmake"))["feature_window_fuzz"]
    result = run_fuzzer(binary, seconds=FUZZ_SECONDS, workdir=tmp_path / "run")
    assert result.returncode == 0, result.log_tail
    assert not list((tmp_path / "run").glob("crash-*"))
    assert result.executions > 10_000, result.log_tail  # it really ran, not just started
