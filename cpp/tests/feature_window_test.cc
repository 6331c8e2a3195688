// Python-free tests of FeatureWindow, run by ctest (also under sanitizers).
// Each test is one behaviour; the expected windows come from an independent
// construction: pad the whole utterance, then take windows at stride chunk.
#include <algorithm>
#include <cstddef>
#include <limits>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "check.h"
#include "feature_window.h"

namespace {

using framegate::testing::RunTests;
using framegate::testing::Throws;

using framegate::FeatureWindow;
using framegate::FeatureWindowConfig;

FeatureWindowConfig MakeConfig(int window, int chunk, int bins,
                               float pad = -1.0f) {
  FeatureWindowConfig c;
  c.window_frames = window;
  c.chunk_frames = chunk;
  c.num_bins = bins;
  c.pad_value = pad;
  return c;
}

// Frame t, bin b holds t * 1000 + b: every value identifies its origin.
std::vector<float> MakeFrames(std::size_t num_frames, int bins) {
  std::vector<float> frames(num_frames * static_cast<std::size_t>(bins));
  for (std::size_t t = 0; t < num_frames; ++t) {
    for (int b = 0; b < bins; ++b) {
      frames[t * static_cast<std::size_t>(bins) + static_cast<std::size_t>(b)] =
          static_cast<float>(t) * 1000.0f + static_cast<float>(b);
    }
  }
  return frames;
}

// The specification, written offline: windows of the stream padded to
// L = k*C + (W - C) >= N (k >= 1), or of the unpadded stream if not finished.
std::vector<float> ExpectedWindows(const std::vector<float>& frames,
                                   const FeatureWindowConfig& c,
                                   bool finished) {
  const std::size_t bins = static_cast<std::size_t>(c.num_bins);
  const std::size_t W = static_cast<std::size_t>(c.window_frames);
  const std::size_t C = static_cast<std::size_t>(c.chunk_frames);
  const std::size_t n = frames.size() / bins;
  std::vector<float> padded = frames;
  std::size_t length = n;
  if (finished && n > 0) {
    std::size_t k = 1;
    while (k * C + (W - C) < n) ++k;
    length = k * C + (W - C);
    padded.resize(length * bins, c.pad_value);
  }
  std::vector<float> out;
  for (std::size_t start = 0; start + W <= length; start += C) {
    out.insert(out.end(), padded.begin() + static_cast<std::ptrdiff_t>(start * bins),
               padded.begin() + static_cast<std::ptrdiff_t>((start + W) * bins));
  }
  return out;
}

void TestRandomBlocksEqualOfflineWindows() {
  std::mt19937 rng(1234);
  for (int trial = 0; trial < 300; ++trial) {
    const int chunk = std::uniform_int_distribution<int>(1, 8)(rng);
    const int window = chunk + std::uniform_int_distribution<int>(0, 9)(rng);
    const int bins = std::uniform_int_distribution<int>(1, 5)(rng);
    const std::size_t n = std::uniform_int_distribution<std::size_t>(0, 120)(rng);
    const FeatureWindowConfig config = MakeConfig(window, chunk, bins);
    const std::vector<float> frames = MakeFrames(n, bins);

    FeatureWindow fw(config);
    std::vector<float> got;
    std::size_t count = 0;
    std::size_t pos = 0;
    while (pos < n) {
      const std::size_t block = std::min(
          n - pos, std::uniform_int_distribution<std::size_t>(0, 17)(rng));
      count += fw.Accept(frames.data() + pos * static_cast<std::size_t>(bins),
                         block, &got);
      pos += block;
    }
    CHECK(got == ExpectedWindows(frames, config, false));
    CHECK(count * fw.floats_per_window() == got.size());
    count += fw.Finish(&got);
    CHECK(got == ExpectedWindows(frames, config, true));
    CHECK(count * fw.floats_per_window() == got.size());
    CHECK(fw.windows_emitted() == count);
    CHECK(fw.frames_received() == n);
  }
}

void TestOneHugeBlockEqualsFrameByFrame() {
  const FeatureWindowConfig config = MakeConfig(13, 4, 3);
  const std::vector<float> frames = MakeFrames(5000, 3);
  FeatureWindow whole(config);
  FeatureWindow single(config);
  std::vector<float> a;
  std::vector<float> b;
  whole.Accept(frames.data(), 5000, &a);
  for (std::size_t t = 0; t < 5000; ++t) {
    single.Accept(frames.data() + t * 3, 1, &b);
  }
  CHECK(a == b);
  CHECK(a == ExpectedWindows(frames, config, false));
}

void TestFinishPadsToSmallestCoveringLength() {
  // W=5, C=2: L in {5, 7, 9, ...}. N=6 -> L=7: windows at 0 and 2.
  const FeatureWindowConfig config = MakeConfig(5, 2, 1, -7.0f);
  FeatureWindow fw(config);
  const std::vector<float> frames = MakeFrames(6, 1);
  std::vector<float> out;
  CHECK(fw.Accept(frames.data(), 6, &out) == 1);
  CHECK(fw.Finish(&out) == 1);
  const std::vector<float> expected = {0, 1000, 2000, 3000, 4000,
                                       2000, 3000, 4000, 5000, -7};
  CHECK(out == expected);
}

void TestFinishAddsNothingWhenTailIsCovered() {
  // W=5, C=2, N=5: the only window is already out; L=5 needs no padding.
  FeatureWindow fw(MakeConfig(5, 2, 1));
  const std::vector<float> frames = MakeFrames(5, 1);
  std::vector<float> out;
  CHECK(fw.Accept(frames.data(), 5, &out) == 1);
  CHECK(fw.Finish(&out) == 0);
  CHECK(out.size() == 5);
}

void TestFinishOfShortUtteranceEmitsOnePaddedWindow() {
  FeatureWindow fw(MakeConfig(4, 4, 2, 9.0f));
  const std::vector<float> frames = MakeFrames(1, 2);
  std::vector<float> out;
  CHECK(fw.Accept(frames.data(), 1, &out) == 0);
  CHECK(fw.Finish(&out) == 1);
  const std::vector<float> expected = {0, 1, 9, 9, 9, 9, 9, 9};
  CHECK(out == expected);
}

void TestFinishOfEmptyStreamEmitsNothing() {
  FeatureWindow fw(MakeConfig(4, 2, 2));
  std::vector<float> out;
  CHECK(fw.Accept(nullptr, 0, &out) == 0);
  CHECK(fw.Finish(&out) == 0);
  CHECK(out.empty());
}

void TestFinishTwiceAndAcceptAfterFinish() {
  FeatureWindow fw(MakeConfig(4, 2, 1));
  const std::vector<float> frames = MakeFrames(3, 1);
  std::vector<float> out;
  fw.Accept(frames.data(), 3, &out);
  CHECK(fw.Finish(&out) == 1);
  CHECK(fw.Finish(&out) == 0);
  CHECK(fw.finished());
  CHECK(Throws<std::logic_error>([&] { fw.Accept(frames.data(), 1, &out); }));
}

void TestResetStartsANewUtterance() {
  const FeatureWindowConfig config = MakeConfig(6, 3, 2);
  const std::vector<float> first = MakeFrames(11, 2);
  std::vector<float> second = MakeFrames(8, 2);
  for (float& v : second) v += 0.5f;
  FeatureWindow fw(config);
  std::vector<float> out;
  fw.Accept(first.data(), 11, &out);  // leaves frames buffered
  fw.Reset();
  CHECK(fw.frames_received() == 0);
  CHECK(fw.windows_emitted() == 0);
  CHECK(!fw.finished());
  out.clear();
  fw.Accept(second.data(), 8, &out);
  fw.Finish(&out);
  CHECK(out == ExpectedWindows(second, config, true));
  fw.Reset();
  out.clear();
  fw.Accept(first.data(), 11, &out);  // usable again after Finish + Reset
  CHECK(out == ExpectedWindows(first, config, false));
}

void TestConfigValidationNamesTheField() {
  auto rejects = [](const FeatureWindowConfig& c, const std::string& field) {
    return Throws([&] { c.Validate(); }, field);
  };
  CHECK(rejects(MakeConfig(4, 0, 2), "chunk_frames"));
  CHECK(rejects(MakeConfig(2, 3, 2), "window_frames"));
  CHECK(rejects(MakeConfig(4, 2, 0), "num_bins"));
  CHECK(rejects(MakeConfig(1 << 20, 1, 1 << 20), "num_bins"));
  CHECK(rejects(MakeConfig(4, 2, 1, std::numeric_limits<float>::quiet_NaN()),
                "pad_value"));
  CHECK(Throws([] { FeatureWindow fw(MakeConfig(4, 0, 2)); }));
  MakeConfig(4, 4, 1).Validate();
  CHECK(MakeConfig(8, 4, 80).ToString().find("window_frames=8") !=
        std::string::npos);
}

void TestMemoryStaysBoundedOverALongStream() {
  const FeatureWindowConfig config = MakeConfig(21, 8, 4);
  FeatureWindow fw(config);
  const std::size_t capacity = fw.capacity_frames();
  CHECK(capacity >= 21);
  std::mt19937 rng(7);
  const std::vector<float> block = MakeFrames(4096, 4);
  std::vector<float> out;
  std::size_t windows = 0;
  std::size_t received = 0;
  while (received < 100000) {
    const std::size_t n = std::uniform_int_distribution<std::size_t>(0, 4096)(rng);
    out.clear();
    windows += fw.Accept(block.data(), n, &out);
    received += n;
    CHECK(out.size() == (out.size() / fw.floats_per_window()) * fw.floats_per_window());
  }
  CHECK(fw.capacity_frames() == capacity);
  CHECK(fw.frames_received() == received);
  CHECK(windows == (received - 21) / 8 + 1);
}

}  // namespace

int main() {
  return RunTests({
      {"RandomBlocksEqualOfflineWindows", TestRandomBlocksEqualOfflineWindows},
      {"OneHugeBlockEqualsFrameByFrame", TestOneHugeBlockEqualsFrameByFrame},
      {"FinishPadsToSmallestCoveringLength",
       TestFinishPadsToSmallestCoveringLength},
      {"FinishAddsNothingWhenTailIsCovered",
       TestFinishAddsNothingWhenTailIsCovered},
      {"FinishOfShortUtteranceEmitsOnePaddedWindow",
       TestFinishOfShortUtteranceEmitsOnePaddedWindow},
      {"FinishOfEmptyStreamEmitsNothing", TestFinishOfEmptyStreamEmitsNothing},
      {"FinishTwiceAndAcceptAfterFinish", TestFinishTwiceAndAcceptAfterFinish},
      {"ResetStartsANewUtterance", TestResetStartsANewUtterance},
      {"ConfigValidationNamesTheField", TestConfigValidationNamesTheField},
      {"MemoryStaysBoundedOverALongStream",
       TestMemoryStaysBoundedOverALongStream},
  });
}
