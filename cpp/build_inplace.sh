#!/usr/bin/env bash
# Builds framegate.kernels._native for development, with warnings as errors,
# and copies it into kernels/ (gitignored) where the dev import path finds it:
#   cpp/build_inplace.sh            # Release
#   BUILD_TYPE=Debug cpp/build_inplace.sh
# Also builds the C++ tests; run them with: ctest --test-dir build/inplace
# Uses the project venv's Python (override with PYTHON=...) and at most
# JOBS (default 2) parallel compile jobs.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
python="${PYTHON:-$repo/.venv/bin/python}"
build_dir="$repo/build/inplace"
generator=()
command -v ninja >/dev/null && generator=(-G Ninja)

# A generator change cannot reuse an old cache.
if [ -f "$build_dir/CMakeCache.txt" ] && ! grep -q "CMAKE_GENERATOR:INTERNAL=${generator[1]:-Unix Makefiles}$" "$build_dir/CMakeCache.txt"; then
  rm -rf "$build_dir"
fi

cmake -S "$repo" -B "$build_dir" "${generator[@]}" \
  -DCMAKE_BUILD_TYPE="${BUILD_TYPE:-Release}" \
  -DFRAMEGATE_WERROR=ON \
  -DFRAMEGATE_BUILD_PYTHON=ON \
  -DPython_EXECUTABLE="$python" \
  -Dpybind11_DIR="$("$python" -m pybind11 --cmakedir)"
cmake --build "$build_dir" --parallel "${JOBS:-2}"

rm -f "$repo"/kernels/_native*.so
cp "$build_dir"/cpp/_native*.so "$repo/kernels/"
echo "built $(ls "$repo"/kernels/_native*.so)"
