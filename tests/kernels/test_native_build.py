"""The C++ kernels build without Python, warning-free, and pass their tests under ASan + UBSan.

Runs in the default pytest selection (so in CI); it needs only cmake and a C++ compiler and
takes well under a minute on two cores.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

CPP_DIR = Path(__file__).resolve().parents[2] / "cpp"


def find_tool(name: str) -> str:
    beside_python = Path(sys.executable).parent / name
    found = str(beside_python) if beside_python.exists() else shutil.which(name)
    assert found, f"{name} not found: the native build test needs it"
    return found


def run(cmd: list[str], **kwargs) -> None:
    result = subprocess.run(cmd, capture_output=True, text=True, **kwargs)
    assert result.returncode == 0, f"{' '.join(cmd)} failed:\n{result.stdout}\n{result.stderr}"


def test_cpp_builds_standalone_with_werror_and_passes_ctest_under_sanitizers(tmp_path):
    cmake, ctest = find_tool("cmake"), find_tool("ctest")
    build = tmp_path / "build"
    generator = ["-G", "Ninja"] if shutil.which("ninja") else []
    env = dict(os.environ, ASAN_OPTIONS="abort_on_error=1", UBSAN_OPTIONS="print_stacktrace=1")
    start = time.monotonic()

    run([
        cmake, "-S", str(CPP_DIR), "-B", str(build), *generator,
        "-DCMAKE_BUILD_TYPE=Debug",
        "-DFRAMEGATE_WERROR=ON",
        "-DFRAMEGATE_BUILD_PYTHON=OFF",
        "-DFRAMEGATE_SANITIZE=address,undefined",
    ], env=env)
    run([cmake, "--build", str(build), "--parallel", "2"], env=env)
    run([ctest, "--test-dir", str(build), "--output-on-failure", "--timeout", "30"], env=env)

    assert time.monotonic() - start < 60
