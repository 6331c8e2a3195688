"""The C++ kernels build without Python, warning-free, and pass their tests under ASan + UBSan.

setup.sh builds the checking variants once (cpp/build_checks.sh); here the same script runs
again, an incremental no-op unless a source changed since, so the build itself stays out of
the test phase while a stale binary can never be what is tested.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

CPP_DIR = Path(__file__).resolve().parents[2] / "cpp"
# Every C++ test executable; each must run (and pass) under the sanitizers.
CTESTS = ("feature_window_test", "feature_window_threads_test", "global_cnn_state_test", "gated_encoder_test",
          "gemm_test", "raw_tensors_test")


def find_tool(name: str) -> str:
    beside_python = Path(sys.executable).parent / name
    found = str(beside_python) if beside_python.exists() else shutil.which(name)
    assert found, f"{name} not found: the native build test needs it"
    return found


def run(cmd: list[str], **kwargs) -> str:
    result = subprocess.run(cmd, capture_output=True, text=True, **kwargs)
    assert result.returncode == 0, f"{' '.join(cmd)} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def checks_build(kind: str) -> Path:
    """The up-to-date build directory of one checking variant (asan, tsan or fuzz)."""
    env = dict(os.environ, CMAKE=find_tool("cmake"))
    return Path(run(["bash", str(CPP_DIR / "build_checks.sh"), kind], env=env).strip().splitlines()[-1])


def test_cpp_builds_standalone_with_werror_and_passes_ctest_under_sanitizers():
    build = checks_build("asan")
    env = dict(os.environ, ASAN_OPTIONS="abort_on_error=1", UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1")
    report = run([find_tool("ctest"), "--test-dir", str(build), "--output-on-failure", "--timeout", "60"], env=env)
    for name in CTESTS:
        assert f" {name} " in report and "Passed" in report, f"ctest did not run {name}:\n{report}"
