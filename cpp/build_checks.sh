#!/usr/bin/env bash
# Builds the Python-free checking variants of cpp/ (setup.sh runs it once; the tests rerun it,
# which is then an incremental no-op unless sources changed):
#   asan  Debug, AddressSanitizer + UndefinedBehaviorSanitizer, every ctest  -> build/checks/asan
#   tsan  ThreadSanitizer, the multi-threaded kernel test                    -> build/checks/tsan
#   fuzz  libFuzzer harnesses under clang with ASan + UBSan                   -> build/checks/fuzz
# Usage: cpp/build_checks.sh [asan|tsan|fuzz ...]   (default: all three); JOBS (default 2).
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
cmake_bin="${CMAKE:-cmake}"
generator=()
command -v ninja >/dev/null && generator=(-G Ninja)
common=(-DFRAMEGATE_WERROR=ON -DFRAMEGATE_BUILD_PYTHON=OFF)

build() {  # name, cmake args..., -- targets...
  local dir="$repo/build/checks/$1"; shift
  local args=() targets=()
  while [ $# -gt 0 ] && [ "$1" != "--" ]; do args+=("$1"); shift; done
  [ $# -gt 0 ] && shift && targets=("$@")
  [ -f "$dir/CMakeCache.txt" ] || "$cmake_bin" -S "$repo/cpp" -B "$dir" "${generator[@]}" "${common[@]}" "${args[@]}" >/dev/null
  "$cmake_bin" --build "$dir" --parallel "${JOBS:-2}" ${targets[@]:+--target "${targets[@]}"} >/dev/null
  echo "$dir"
}

for kind in "${@:-asan tsan fuzz}"; do
  for k in $kind; do
    case "$k" in
      asan) build asan -DCMAKE_BUILD_TYPE=Debug -DFRAMEGATE_SANITIZE=address,undefined ;;
      tsan) build tsan -DCMAKE_BUILD_TYPE=Debug -DFRAMEGATE_SANITIZE=thread -- feature_window_threads_test ;;
      fuzz) build fuzz -DCMAKE_CXX_COMPILER="$(command -v clang++)" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
              -DFRAMEGATE_FUZZ=ON -- feature_window_fuzz global_cnn_state_fuzz gated_encoder_fuzz \
              token_lm_fuzz raw_tensors_fuzz ;;
      *) echo "unknown check build '$k' (asan, tsan or fuzz)" >&2; exit 2 ;;
    esac
  done
done
