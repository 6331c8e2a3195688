// libFuzzer harness for GlobalCnn (global_cnn_state.h): ConvRNN-T's global
// CNN run incrementally over a stream.
//
// Build and run: cpp/build_checks.sh fuzz, then
//   build/checks/fuzz/global_cnn_state_fuzz -max_total_time=60 cpp/fuzz/regressions/global_cnn_state
//
// An input is either
//   - a config of arbitrary integers and decay: Validate() throws
//     std::invalid_argument or accepts a config whose fields are in range,
//     and an accepted small one builds; or
//   - a small network (shapes, squeeze mode, weights with edge values poked
//     in, sometimes a tensor of the wrong size) and one to three utterances,
//     each streamed in input-chosen chunks (empty ones included, passed as
//     null pointers), with a Reset between utterances and sometimes a
//     tampered state. Checked: the constructor refuses exactly the non-finite
//     or misshapen weights; a chunk holding a non-finite frame is refused and
//     leaves the state as it was; a tampered state is refused; Reset gives
//     InitialState(); and the streamed outputs and final state equal one
//     Forward() call over the whole utterance from a fresh state, bit for bit
//     (NaN matching NaN: with the fuzz build's GEMM, gemm.h's plain loop,
//     every frame runs the same operations whatever the chunking), finite
//     whenever weights and frames are tame.
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include <fuzzer/FuzzedDataProvider.h>

#include "fuzz_support.h"
#include "global_cnn_layout.h"
#include "global_cnn_state.h"

namespace {

using namespace framegate;
using framegate::fuzz::AllFinite;
using framegate::fuzz::Require;
using framegate::fuzz::SameValues;
using framegate::fuzz::Tame;

constexpr std::size_t kMaxFrames = 160;  // > 2 tiles of 64 frames

// Hands out tensors from a ValueSource, as the layout asks for them.
class FillingSource {
 public:
  explicit FillingSource(fuzz::ValueSource& values) : values_(values) {}
  std::vector<float> Take(const std::string&, const std::vector<std::int64_t>& dims) {
    std::size_t n = 1;
    for (std::int64_t d : dims) n *= static_cast<std::size_t>(d);
    return values_.Fill(n);
  }

 private:
  fuzz::ValueSource& values_;
};

constexpr int kBlockTensors = 12;

std::vector<float>* Tensor(GlobalCnnBlockWeights& w, int index) {
  std::vector<float>* tensors[] = {&w.norm_weight, &w.norm_bias,
                                   &w.pw1_weight, &w.pw1_bias, &w.dw_weight, &w.dw_bias,
                                   &w.pw2_weight, &w.pw2_bias, &w.se1_weight, &w.se1_bias,
                                   &w.se2_weight, &w.se2_bias};
  return tensors[index];
}

bool SameDoubles(const std::vector<double>& a, const std::vector<double>& b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (!(a[i] == b[i] || (std::isnan(a[i]) && std::isnan(b[i])))) return false;
  }
  return true;
}

bool SameState(const GlobalCnnState& a, const GlobalCnnState& b) {
  if (a.frames != b.frames || a.blocks.size() != b.blocks.size()) return false;
  for (std::size_t i = 0; i < a.blocks.size(); ++i) {
    const GlobalCnnState::Block &x = a.blocks[i], &y = b.blocks[i];
    if (x.oldest != y.oldest || !SameValues(x.history, y.history) ||
        !SameDoubles(x.squeeze, y.squeeze)) {
      return false;
    }
  }
  return true;
}

void FuzzValidation(FuzzedDataProvider& data) {
  GlobalCnnConfig c;
  c.channels = fuzz::ConfigInt(data);
  c.hidden = fuzz::ConfigInt(data);
  c.se_hidden = fuzz::ConfigInt(data);
  c.num_blocks = fuzz::ConfigInt(data);
  c.squeeze = static_cast<SqueezeMode>(data.ConsumeIntegralInRange<int>(-1, 2));
  c.ema_decay = data.ConsumeBool() ? data.ConsumeFloatingPoint<double>()
                                    : data.ConsumeProbability<double>();  // [0, 1]
  try {
    c.Validate();
  } catch (const std::invalid_argument&) {
    return;
  }
  Require(c.channels >= 1 && c.hidden >= 1 && c.se_hidden >= 1 && c.num_blocks >= 1 &&
          c.num_blocks <= 16 && c.ema_decay > 0.0 && c.ema_decay < 1.0 &&
          (c.squeeze == SqueezeMode::kCumulative || c.squeeze == SqueezeMode::kEma));
  if (c.channels > 64 || c.hidden > 64 || c.se_hidden > 64 || c.num_blocks > 8) return;
  fuzz::ValueSource values(data);
  FillingSource source(values);
  std::vector<GlobalCnnBlockWeights> blocks;
  for (int b = 0; b < c.num_blocks; ++b) {
    GlobalCnnBlockWeights w = TakeGlobalCnnBlockWeights(c, source);
    for (int i = 0; i < kBlockTensors; ++i) {
      for (float& v : *Tensor(w, i)) v = std::isfinite(v) ? v : 0.0f;
    }
    blocks.push_back(std::move(w));
  }
  const GlobalCnn cnn(c, std::move(blocks));
  GlobalCnnState state = cnn.InitialState();
  cnn.Reset(&state);
  Require(SameState(state, cnn.InitialState()));
}

// Refuses a tampered copy of `state` (one field of it made inconsistent).
void CheckTamperedStateIsRefused(FuzzedDataProvider& data, const GlobalCnn& cnn,
                                 const GlobalCnnState& state) {
  GlobalCnnState bad = state;
  const auto b = data.ConsumeIntegralInRange<std::size_t>(0, bad.blocks.size() - 1);
  GlobalCnnState::Block& block = bad.blocks[b];
  switch (data.ConsumeIntegralInRange<int>(0, 4)) {
    case 0:
      bad.blocks.pop_back();
      break;
    case 1:
      block.history.pop_back();
      break;
    case 2:
      block.oldest = block.history.size();  // past the ring's last row
      break;
    case 3:
      block.squeeze.push_back(0.0);
      break;
    default:
      bad.frames = -1 - data.ConsumeIntegralInRange<std::int64_t>(0, 1 << 20);
      break;
  }
  const float frame[1] = {0.0f};
  std::vector<float> out(static_cast<std::size_t>(cnn.config().channels));
  bool refused = false;
  try {
    cnn.Forward(frame, 0, &bad, out.data());
  } catch (const std::invalid_argument&) {
    refused = true;
  }
  Require(refused);
}

void FuzzStream(FuzzedDataProvider& data) {
  GlobalCnnConfig c;
  c.channels = data.ConsumeIntegralInRange<int>(1, 6);
  c.hidden = data.ConsumeIntegralInRange<int>(1, 6);
  c.se_hidden = data.ConsumeIntegralInRange<int>(1, 4);
  c.num_blocks = data.ConsumeIntegralInRange<int>(1, 4);
  c.squeeze = data.ConsumeBool() ? SqueezeMode::kEma : SqueezeMode::kCumulative;
  constexpr double kDecays[] = {0.9, 0.5, 0.99, 1e-6, 0.999999};
  c.ema_decay = data.PickValueInArray(kDecays);
  const auto C = static_cast<std::size_t>(c.channels);

  fuzz::ValueSource values(data);
  FillingSource source(values);
  std::vector<GlobalCnnBlockWeights> blocks;
  bool finite = true, tame = true;
  for (int b = 0; b < c.num_blocks; ++b) {
    blocks.push_back(TakeGlobalCnnBlockWeights(c, source));
    for (int i = 0; i < kBlockTensors; ++i) {
      finite = finite && AllFinite(*Tensor(blocks.back(), i));
      tame = tame && Tame(*Tensor(blocks.back(), i));
    }
  }
  const bool misshapen = data.ConsumeIntegralInRange<int>(0, 7) == 0;
  if (misshapen) {
    const auto b = data.ConsumeIntegralInRange<std::size_t>(0, blocks.size() - 1);
    std::vector<float>* t = Tensor(blocks[b], data.ConsumeIntegralInRange<int>(0, kBlockTensors - 1));
    if (data.ConsumeBool()) {
      t->push_back(0.0f);
    } else {
      t->pop_back();
    }
  }
  std::optional<GlobalCnn> built;
  try {
    built.emplace(c, std::move(blocks));
  } catch (const std::invalid_argument&) {
    Require(misshapen || !finite);
    return;
  }
  Require(!misshapen && finite);
  const GlobalCnn& cnn = *built;

  GlobalCnnState state = cnn.InitialState();
  const int utterances = data.ConsumeIntegralInRange<int>(1, 3);
  for (int u = 0; u < utterances; ++u) {
    if (u > 0) {
      cnn.Reset(&state);
      Require(SameState(state, cnn.InitialState()));
    }
    const auto T = data.ConsumeIntegralInRange<std::size_t>(0, kMaxFrames);
    std::vector<float> frames = values.Fill(T * C);
    std::vector<float> streamed(T * C);
    std::size_t pos = 0;
    while (pos < T) {
      const std::size_t n = data.remaining_bytes() ? data.ConsumeIntegralInRange<std::size_t>(0, T - pos)
                                                   : T - pos;
      float* chunk = frames.data() + pos * C;
      const std::vector<float> chunk_values(chunk, chunk + n * C);
      if (!AllFinite(chunk_values)) {
        const GlobalCnnState before = state;
        bool refused = false;
        try {
          cnn.Forward(chunk, n, &state, streamed.data() + pos * C);
        } catch (const std::invalid_argument&) {
          refused = true;
        }
        Require(refused && SameState(state, before));
        // The stream goes on with that chunk's non-finite values zeroed.
        for (std::size_t i = 0; i < n * C; ++i) chunk[i] = std::isfinite(chunk[i]) ? chunk[i] : 0.0f;
        continue;
      }
      cnn.Forward(n ? chunk : nullptr, n, &state, n ? streamed.data() + pos * C : nullptr);
      pos += n;
    }
    Require(state.frames == static_cast<std::int64_t>(T));
    if (data.ConsumeIntegralInRange<int>(0, 7) == 0) CheckTamperedStateIsRefused(data, cnn, state);

    // One call over the utterance as the stream took it (refused values zeroed).
    GlobalCnnState fresh = cnn.InitialState();
    std::vector<float> one_call(T * C);
    cnn.Forward(T ? frames.data() : nullptr, T, &fresh, T ? one_call.data() : nullptr);
    Require(SameValues(streamed, one_call));
    Require(SameState(state, fresh));
    if (tame && Tame(frames)) Require(AllFinite(one_call));
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* bytes, std::size_t size) {
  FuzzedDataProvider data(bytes, size);
  if (data.ConsumeIntegralInRange<int>(0, 7) == 0) {
    FuzzValidation(data);
  } else {
    FuzzStream(data);
  }
  return 0;
}
