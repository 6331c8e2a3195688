// FeatureWindow used from several threads, the way the engine uses it: run by
// ctest and, in the Python test suite, under ThreadSanitizer
// (FRAMEGATE_SANITIZE=thread), so a data race fails the build's test run.
//
// Two patterns are exercised:
//   1. Each thread owns its own FeatureWindow (one per stream): the kernel has
//      no hidden shared state (no statics, no globals), so the results equal
//      a serial run exactly.
//   2. One FeatureWindow shared by threads, every call serialized by a mutex:
//      the same discipline as the pybind11 binding's LockedFeatureWindow
//      (cpp/bindings/feature_window.cc), which holds a std::mutex around
//      every call with the GIL released. The kernel's counters must add up.
#include <algorithm>
#include <cstddef>
#include <mutex>
#include <random>
#include <thread>
#include <vector>

#include "check.h"
#include "feature_window.h"

namespace {

using framegate::testing::RunTests;

using framegate::FeatureWindow;
using framegate::FeatureWindowConfig;

constexpr int kThreads = 6;

FeatureWindowConfig MakeConfig(int window, int chunk, int bins) {
  FeatureWindowConfig c;
  c.window_frames = window;
  c.chunk_frames = chunk;
  c.num_bins = bins;
  c.pad_value = -3.0f;
  return c;
}

// One stream: frames fed in seeded random blocks, then Finish, then Reset and
// a second utterance. Returns every window emitted, in order.
std::vector<float> RunStream(const FeatureWindowConfig& config,
                             const std::vector<float>& frames,
                             unsigned seed) {
  const auto bins = static_cast<std::size_t>(config.num_bins);
  const std::size_t n = frames.size() / bins;
  std::mt19937 rng(seed);
  FeatureWindow fw(config);
  std::vector<float> out;
  for (int utterance = 0; utterance < 2; ++utterance) {
    std::size_t pos = 0;
    while (pos < n) {
      const std::size_t block = std::min(
          n - pos, std::uniform_int_distribution<std::size_t>(0, 37)(rng));
      fw.Accept(frames.data() + pos * bins, block, &out);
      pos += block;
    }
    fw.Finish(&out);
    fw.Reset();
  }
  return out;
}

void TestThreadsWithOwnWindowsEqualSerialRuns() {
  const FeatureWindowConfig config = MakeConfig(11, 8, 16);
  std::vector<std::vector<float>> inputs(kThreads);
  for (int i = 0; i < kThreads; ++i) {
    std::mt19937 rng(static_cast<unsigned>(100 + i));
    std::normal_distribution<float> normal;
    inputs[static_cast<std::size_t>(i)].resize(static_cast<std::size_t>(3000 + 37 * i) * 16);
    for (float& v : inputs[static_cast<std::size_t>(i)]) v = normal(rng);
  }
  std::vector<std::vector<float>> serial(kThreads);
  for (int i = 0; i < kThreads; ++i) {
    serial[static_cast<std::size_t>(i)] =
        RunStream(config, inputs[static_cast<std::size_t>(i)], static_cast<unsigned>(i));
  }
  std::vector<std::vector<float>> threaded(kThreads);
  std::vector<std::thread> threads;
  for (int i = 0; i < kThreads; ++i) {
    threads.emplace_back([&, i] {
      const auto k = static_cast<std::size_t>(i);
      threaded[k] = RunStream(config, inputs[k], static_cast<unsigned>(i));
    });
  }
  for (std::thread& t : threads) t.join();
  for (std::size_t i = 0; i < serial.size(); ++i) {
    CHECK(!serial[i].empty());
    CHECK(threaded[i] == serial[i]);
  }
}

void TestSharedWindowSerializedByAMutexCountsEveryFrame() {
  const FeatureWindowConfig config = MakeConfig(10, 5, 8);
  FeatureWindow shared(config);
  std::mutex mutex;
  const std::vector<float> block(257 * 8, 0.5f);
  constexpr int kBlocksPerThread = 60;
  std::vector<std::size_t> emitted(kThreads, 0);
  std::vector<std::thread> threads;
  for (int i = 0; i < kThreads; ++i) {
    threads.emplace_back([&, i] {
      std::vector<float> out;
      for (int b = 0; b < kBlocksPerThread; ++b) {
        out.clear();
        std::lock_guard<std::mutex> lock(mutex);
        emitted[static_cast<std::size_t>(i)] += shared.Accept(block.data(), 257, &out);
        CHECK(out.size() % shared.floats_per_window() == 0);
      }
    });
  }
  for (std::thread& t : threads) t.join();
  std::size_t total = 0;
  for (std::size_t e : emitted) total += e;
  const std::size_t frames = static_cast<std::size_t>(kThreads) * kBlocksPerThread * 257;
  CHECK(shared.frames_received() == frames);
  CHECK(shared.windows_emitted() == total);
  CHECK(total == (frames - 10) / 5 + 1);
}

}  // namespace

int main() {
  return RunTests({
      {"ThreadsWithOwnWindowsEqualSerialRuns", TestThreadsWithOwnWindowsEqualSerialRuns},
      {"SharedWindowSerializedByAMutexCountsEveryFrame",
       TestSharedWindowSerializedByAMutexCountsEveryFrame},
  });
}
