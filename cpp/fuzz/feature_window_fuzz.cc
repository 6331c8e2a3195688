// libFuzzer harness for the Python-free FeatureWindow kernel.
//
// Build (Debian's clang; see FRAMEGATE_FUZZ in cpp/CMakeLists.txt):
//   cmake -S cpp -B build/fuzz -DCMAKE_CXX_COMPILER=clang++ \
//         -DFRAMEGATE_FUZZ=ON -DFRAMEGATE_BUILD_PYTHON=OFF
//   cmake --build build/fuzz --target feature_window_fuzz
//   build/fuzz/feature_window_fuzz -max_total_time=60 cpp/fuzz/regressions/feature_window
//
// Each input is decoded into a config and a sequence of calls (Accept blocks of
// fuzzer-chosen float bytes, including NaN/Inf, Finish, Reset, ...). Besides
// the sanitizers' checks, every window emitted is compared bit for bit with an
// independent oracle (pad the utterance, take windows every chunk), and the
// documented contracts are checked: Validate throws std::invalid_argument for
// a bad config and nothing else, Accept after Finish throws std::logic_error,
// counters add up. Any violation aborts, so libFuzzer records the input.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <vector>

#include <fuzzer/FuzzedDataProvider.h>

#include "feature_window.h"

namespace {

using framegate::FeatureWindow;
using framegate::FeatureWindowConfig;

// Bounds the fuzzer's memory: windows up to this many floats are constructed.
constexpr long long kMaxWindowFloats = 1 << 14;
constexpr std::size_t kMaxUtteranceFrames = 1 << 9;

void Require(bool condition) {
  if (!condition) std::abort();
}

// The oracle: the utterance padded to L = k*C + (W - C) >= n (k >= 1) when
// finished, windows of W frames every C frames.
std::vector<float> ExpectedWindows(const std::vector<float>& frames,
                                   const FeatureWindowConfig& c, bool finished) {
  const auto bins = static_cast<std::size_t>(c.num_bins);
  const auto W = static_cast<std::size_t>(c.window_frames);
  const auto C = static_cast<std::size_t>(c.chunk_frames);
  const std::size_t n = frames.size() / bins;
  std::vector<float> padded = frames;
  std::size_t length = n;
  if (finished && n > 0) {
    const std::size_t k = n > W - C ? (n - (W - C) + C - 1) / C : 1;
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

bool SameBits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() &&
         (a.empty() || std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0);
}

// Arbitrary integers and floats: Validate either accepts or throws
// std::invalid_argument; a valid config small enough to build constructs.
void FuzzValidation(FuzzedDataProvider& data) {
  FeatureWindowConfig c;
  c.window_frames = data.ConsumeIntegral<int>();
  c.chunk_frames = data.ConsumeIntegral<int>();
  c.num_bins = data.ConsumeIntegral<int>();
  c.pad_value = data.ConsumeFloatingPoint<float>();
  bool valid = true;
  try {
    c.Validate();
  } catch (const std::invalid_argument&) {
    valid = false;
  }
  if (valid) {
    Require(c.chunk_frames >= 1 && c.window_frames >= c.chunk_frames && c.num_bins >= 1);
    if (static_cast<long long>(c.window_frames) * c.num_bins <= kMaxWindowFloats) {
      FeatureWindow fw(c);
      Require(fw.capacity_frames() >= static_cast<std::size_t>(c.window_frames));
    }
  }
}

void FuzzStream(FuzzedDataProvider& data) {
  FeatureWindowConfig c;
  c.window_frames = data.ConsumeIntegralInRange<int>(1, 48);
  c.chunk_frames = data.ConsumeIntegralInRange<int>(1, c.window_frames);
  c.num_bins = data.ConsumeIntegralInRange<int>(1, 12);
  c.pad_value = static_cast<float>(data.ConsumeIntegralInRange<int>(-8, 8));
  FeatureWindow fw(c);
  const auto bins = static_cast<std::size_t>(c.num_bins);
  std::vector<float> utterance;  // every frame of the current utterance
  std::vector<float> emitted;    // every window emitted in it
  bool finished = false;
  while (data.remaining_bytes() > 0) {
    switch (data.ConsumeIntegralInRange<int>(0, 3)) {
      case 0: {  // Accept a block of fuzzer bytes as floats (NaN, Inf, ...).
        std::size_t n = data.ConsumeIntegralInRange<std::size_t>(0, 64);
        if (utterance.size() / bins + n > kMaxUtteranceFrames) n = 0;
        std::vector<float> block(n * bins);
        const std::vector<std::uint8_t> bytes = data.ConsumeBytes<std::uint8_t>(block.size() * sizeof(float));
        if (!bytes.empty()) std::memcpy(block.data(), bytes.data(), bytes.size());
        const std::size_t ready = fw.WindowsReadyAfter(n);
        const std::size_t before = emitted.size();
        std::size_t k = 0;
        bool threw = false;
        try {
          k = fw.Accept(n ? block.data() : nullptr, n, &emitted);
        } catch (const std::logic_error&) {
          threw = true;
        }
        Require(threw == finished);
        if (threw) break;
        Require(k == ready);
        Require(emitted.size() - before == k * fw.floats_per_window());
        utterance.insert(utterance.end(), block.begin(), block.end());
        Require(SameBits(emitted, ExpectedWindows(utterance, c, false)));
        break;
      }
      case 1: {  // Finish, possibly twice.
        const std::size_t before = emitted.size();
        const std::size_t k = fw.Finish(&emitted);
        Require(emitted.size() - before == k * fw.floats_per_window());
        if (finished) Require(k == 0);
        finished = true;
        Require(SameBits(emitted, ExpectedWindows(utterance, c, true)));
        Require(fw.WindowsReadyAfter(5) == 0);
        break;
      }
      case 2:  // Reset: a new utterance.
        fw.Reset();
        utterance.clear();
        emitted.clear();
        finished = false;
        break;
      default:  // Counters agree with the oracle's view.
        Require(fw.frames_received() == utterance.size() / bins);
        Require(fw.windows_emitted() * fw.floats_per_window() == emitted.size());
        Require(fw.finished() == finished);
        Require(fw.capacity_frames() == static_cast<std::size_t>(c.window_frames));
        break;
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* bytes, std::size_t size) {
  FuzzedDataProvider data(bytes, size);
  if (data.ConsumeBool()) {
    FuzzValidation(data);
  } else {
    FuzzStream(data);
  }
  return 0;
}
