// libFuzzer harness for GatedEncoder (gated_encoder.h): the gated Transformer
// blocks (gated_block.h) and their arbitrators (arbitrator.h).
//
// Build and run: cpp/build_checks.sh fuzz, then
//   build/checks/fuzz/gated_encoder_fuzz -max_total_time=60 cpp/fuzz/regressions/gated_encoder
//
// An input is either
//   - a config of arbitrary integers: Validate() throws std::invalid_argument
//     or accepts fields in range, and an accepted small one builds and runs;
//   - or a small encoder (heads, widths, layers, left context, tile size,
//     arbitrator kind, weights from gated_encoder_layout.h with edge values
//     poked in, sometimes a misshapen or missing part), a gate mode and
//     threshold (sometimes invalid), and one or two utterances streamed in
//     input-chosen chunks (empty ones as null pointers), Reset between them.
// Checked: the constructor refuses exactly the non-finite or misshapen
// weights; an invalid mode or threshold, or a chunk with a non-finite frame,
// is refused and leaves the state as it was; every call's counters match its
// gates (a skipped part does no GEMM row); kGated decisions are
// probs > threshold and kDense (or no arbitrator) turns everything on; and,
// with tame weights and frames, the streamed outputs, probabilities, gates
// and final state equal one Forward() call over the whole utterance from a
// fresh state exactly (gated_encoder.h: "any split of a stream into calls
// gives the same output as one call"; with the fuzz build's GEMM, gemm.h's
// plain loop, every frame's arithmetic is the same whatever the tiling, and
// masked keys add exact zeros), and are finite.
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <optional>
#include <random>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include <fuzzer/FuzzedDataProvider.h>

#include "fuzz_support.h"
#include "gated_encoder.h"
#include "gated_encoder_layout.h"

namespace {

using namespace framegate;
using framegate::fuzz::AllFinite;
using framegate::fuzz::Require;
using framegate::fuzz::SameValues;
using framegate::fuzz::Tame;

constexpr int kMaxFrames = 40;

// Hands out tensors from a ValueSource, as the layout asks for them.
class FillingSource {
 public:
  explicit FillingSource(fuzz::ValueSource& values) : values_(values) {}
  std::vector<float> Take(const std::string&, const std::vector<std::int64_t>& dims) {
    std::size_t n = 1;
    for (std::int64_t d : dims) n *= static_cast<std::size_t>(d);
    return values_.Fill(n);
  }
  void CheckAllUsed() const {}

 private:
  fuzz::ValueSource& values_;
};

// Calls fn(tensor) for every weight tensor of `w`.
template <typename Fn>
void ForEachTensor(GatedEncoderWeights& w, Fn&& fn) {
  for (GatedBlockWeights& b : w.blocks) {
    for (std::vector<float>* t :
         {&b.norm_att_weight, &b.norm_att_bias, &b.qkv_weight, &b.qkv_bias, &b.att_out_weight,
          &b.att_out_bias, &b.norm_ff_weight, &b.norm_ff_bias, &b.ff1_weight, &b.ff1_bias,
          &b.ff2_weight, &b.ff2_bias}) {
      fn(*t);
    }
  }
  if (w.feature_arbitrator) {
    FeatureArbitratorWeights& a = *w.feature_arbitrator;
    for (std::vector<float>* t : {&a.conv_weight, &a.conv_bias, &a.out_weight, &a.out_bias}) fn(*t);
  }
  for (BlockArbitratorWeights& a : w.block_arbitrators) {
    for (std::vector<float>* t : {&a.hidden_weight, &a.hidden_bias, &a.out_weight, &a.out_bias}) {
      fn(*t);
    }
  }
  for (std::vector<float>* t : {&w.norm_out_weight, &w.norm_out_bias, &w.out_weight, &w.out_bias}) {
    fn(*t);
  }
}

bool SameCache(const KeyValueCache& a, const KeyValueCache& b) {
  return a.count == b.count && a.times == b.times && SameValues(a.keys, b.keys) &&
         SameValues(a.values, b.values);
}

// The state a stream carries (scratch excluded).
bool SameState(const GatedEncoderState& a, const GatedEncoderState& b) {
  if (a.frames != b.frames || a.caches.size() != b.caches.size() ||
      !SameValues(a.arbitrator_history, b.arbitrator_history)) {
    return false;
  }
  for (std::size_t l = 0; l < a.caches.size(); ++l) {
    if (!SameCache(a.caches[l], b.caches[l])) return false;
  }
  return true;
}

struct Outputs {
  std::vector<float> out, probs;
  std::vector<std::uint8_t> gates;
};

// One Forward() call that must be refused, leaving `state` as it was.
void ExpectRefused(const GatedEncoder& enc, const float* frames, int n, GatedEncoderState* state,
                   GateMode mode, float threshold, Outputs* o, std::size_t at) {
  const GatedEncoderConfig& c = enc.config();
  const GatedEncoderState before = *state;
  EncoderCounters counters;
  bool refused = false;
  try {
    enc.Forward(frames, n, state, mode, threshold,
                o->out.data() + at * static_cast<std::size_t>(c.joiner_dim),
                o->probs.data() + at * static_cast<std::size_t>(c.NumGates()),
                o->gates.data() + at * static_cast<std::size_t>(c.NumGates()), &counters);
  } catch (const std::invalid_argument&) {
    refused = true;
  }
  Require(refused && SameState(*state, before));
}

// Checks one call's counters and decisions for its n frames at `at`.
void CheckCall(const GatedEncoder& enc, const Outputs& o, std::size_t at, int n, GateMode mode,
               float threshold, const EncoderCounters& counters) {
  const GatedEncoderConfig& c = enc.config();
  const auto g = static_cast<std::size_t>(c.NumGates());
  Require(counters.frames == n);
  for (std::size_t l = 0; l < static_cast<std::size_t>(c.num_layers); ++l) {
    std::int64_t att = 0, ff = 0;
    for (std::size_t t = at; t < at + static_cast<std::size_t>(n); ++t) {
      att += o.gates[t * g + 2 * l] != 0;
      ff += o.gates[t * g + 2 * l + 1] != 0;
    }
    Require(counters.attention_rows[l] == att && counters.ff_rows[l] == ff);
  }
  const bool arbitrated = c.arbitrator != ArbitratorKind::kNone;
  for (std::size_t i = at * g; i < (at + static_cast<std::size_t>(n)) * g; ++i) {
    if (mode == GateMode::kDense || (!arbitrated && mode == GateMode::kGated)) {
      Require(o.probs[i] == 1.0f && o.gates[i] == 1);
    } else if (mode == GateMode::kGated) {
      Require(o.gates[i] == (o.probs[i] > threshold ? 1 : 0));
    } else if (!arbitrated) {
      Require(o.probs[i] == 1.0f);
    }
  }
}

void FuzzValidation(FuzzedDataProvider& data) {
  GatedEncoderConfig c;
  c.d_model = fuzz::ConfigInt(data);
  c.num_heads = fuzz::ConfigInt(data);
  c.ff_dim = fuzz::ConfigInt(data);
  c.num_layers = fuzz::ConfigInt(data);
  c.left_context = fuzz::ConfigInt(data);
  c.joiner_dim = fuzz::ConfigInt(data);
  c.max_rows = fuzz::ConfigInt(data);
  c.arbitrator = static_cast<ArbitratorKind>(data.ConsumeIntegralInRange<int>(-1, 3));
  c.arbitrator_kernel = fuzz::ConfigInt(data);
  c.arbitrator_hidden = fuzz::ConfigInt(data);
  try {
    c.Validate();
  } catch (const std::invalid_argument&) {
    return;
  }
  constexpr int kBig = 1 << 20;
  const auto in = [](int v, int lo) { return v >= lo && v <= kBig; };
  Require(in(c.d_model, 1) && in(c.num_heads, 1) && c.d_model % c.num_heads == 0 &&
          in(c.ff_dim, 1) && in(c.num_layers, 1) && in(c.left_context, 0) &&
          in(c.joiner_dim, 1) && in(c.max_rows, 1) && in(c.arbitrator_kernel, 1) &&
          in(c.arbitrator_hidden, 1) &&
          (c.arbitrator == ArbitratorKind::kNone || c.arbitrator == ArbitratorKind::kFeature ||
           c.arbitrator == ArbitratorKind::kBlock));
  if (c.d_model > 32 || c.ff_dim > 32 || c.num_layers > 4 || c.left_context > 64 ||
      c.max_rows > 64 || c.joiner_dim > 16 || c.arbitrator_kernel > 8 || c.arbitrator_hidden > 16) {
    return;
  }
  fuzz::ValueSource values(data);
  FillingSource source(values);
  GatedEncoderWeights w = TakeGatedEncoderWeights(c, source);
  ForEachTensor(w, [](std::vector<float>& t) {
    for (float& v : t) v = std::isfinite(v) ? v : 0.0f;
  });
  const GatedEncoder enc(c, std::move(w));
  GatedEncoderState state = enc.InitialState();
  const std::vector<float> frame(static_cast<std::size_t>(c.d_model), 0.5f);
  const auto g = static_cast<std::size_t>(c.NumGates());
  std::vector<float> out(static_cast<std::size_t>(c.joiner_dim)), probs(g);
  std::vector<std::uint8_t> gates(g);
  EncoderCounters counters;
  enc.Forward(frame.data(), 1, &state, GateMode::kDense, 0.5f, out.data(), probs.data(), gates.data(),
              &counters);
  enc.Reset(&state);
  Require(SameState(state, enc.InitialState()));
}

// A part of the weights made missing, extra or misshapen.
void Misshape(FuzzedDataProvider& data, GatedEncoderWeights* w) {
  switch (data.ConsumeIntegralInRange<int>(0, 3)) {
    case 0: {  // one tensor a value short or long
      std::size_t count = 0;
      ForEachTensor(*w, [&](std::vector<float>&) { ++count; });
      const auto pick = data.ConsumeIntegralInRange<std::size_t>(0, count - 1);
      const bool grow = data.ConsumeBool();
      std::size_t i = 0;
      ForEachTensor(*w, [&](std::vector<float>& t) {
        if (i++ != pick) return;
        if (grow || t.empty()) {
          t.push_back(0.0f);
        } else {
          t.pop_back();
        }
      });
      break;
    }
    case 1:  // the feature arbitrator's weights missing, or given for another kind
      if (w->feature_arbitrator) {
        w->feature_arbitrator.reset();
      } else {
        w->feature_arbitrator.emplace();
      }
      break;
    case 2:  // one block arbitrator too many
      w->block_arbitrators.emplace_back();
      break;
    default:  // one block too few
      w->blocks.pop_back();
      break;
  }
}

void FuzzStream(FuzzedDataProvider& data) {
  GatedEncoderConfig c;
  c.num_heads = data.ConsumeIntegralInRange<int>(1, 3);
  c.d_model = c.num_heads * data.ConsumeIntegralInRange<int>(1, 4);
  c.ff_dim = data.ConsumeIntegralInRange<int>(1, 8);
  c.num_layers = data.ConsumeIntegralInRange<int>(1, 3);
  c.left_context = data.ConsumeIntegralInRange<int>(0, 8);
  c.joiner_dim = data.ConsumeIntegralInRange<int>(1, 4);
  c.max_rows = data.ConsumeIntegralInRange<int>(1, 8);
  c.arbitrator = static_cast<ArbitratorKind>(data.ConsumeIntegralInRange<int>(0, 2));
  c.arbitrator_kernel = data.ConsumeIntegralInRange<int>(1, 4);
  c.arbitrator_hidden = data.ConsumeIntegralInRange<int>(1, 4);
  const auto d = static_cast<std::size_t>(c.d_model);
  const auto g = static_cast<std::size_t>(c.NumGates());
  const auto J = static_cast<std::size_t>(c.joiner_dim);

  fuzz::ValueSource values(data);
  FillingSource source(values);
  GatedEncoderWeights w = TakeGatedEncoderWeights(c, source);
  bool finite = true, tame = true;
  ForEachTensor(w, [&](std::vector<float>& t) {
    finite = finite && AllFinite(t);
    tame = tame && Tame(t);
  });
  const bool misshapen = data.ConsumeIntegralInRange<int>(0, 7) == 0;
  if (misshapen) Misshape(data, &w);
  std::optional<GatedEncoder> built;
  try {
    built.emplace(c, std::move(w));
  } catch (const std::invalid_argument&) {
    Require(misshapen || !finite);
    return;
  }
  Require(!misshapen && finite);
  const GatedEncoder& enc = *built;

  const auto mode = static_cast<GateMode>(data.ConsumeIntegralInRange<int>(0, 2));
  constexpr float kThresholds[] = {0.5f, 0.0f, 1.0f, 0.25f, 0.9f};
  const float threshold = data.PickValueInArray(kThresholds);
  GatedEncoderState state = enc.InitialState();
  const int utterances = data.ConsumeIntegralInRange<int>(1, 2);
  for (int u = 0; u < utterances; ++u) {
    if (u > 0) {
      enc.Reset(&state);
      Require(SameState(state, enc.InitialState()));
    }
    const int T = data.ConsumeIntegralInRange<int>(0, kMaxFrames);
    const auto frames_n = static_cast<std::size_t>(T);
    std::vector<float> frames = values.Fill(frames_n * d);
    std::minstd_rand gate_rng(data.ConsumeIntegral<std::uint32_t>());
    std::vector<std::uint8_t> forced(frames_n * g);
    for (std::uint8_t& on : forced) {  // any non-zero byte means on
      on = (gate_rng() & 3) ? static_cast<std::uint8_t>(1 + gate_rng() % 255) : 0;
    }
    Outputs streamed{std::vector<float>(frames_n * J), std::vector<float>(frames_n * g),
                     mode == GateMode::kForced ? forced : std::vector<std::uint8_t>(frames_n * g)};
    if (T > 0 && data.ConsumeIntegralInRange<int>(0, 7) == 0) {  // an invalid call first
      constexpr float kBadThresholds[] = {-0.1f, 1.5f, std::numeric_limits<float>::quiet_NaN(),
                                          std::numeric_limits<float>::infinity()};
      if (data.ConsumeBool()) {
        ExpectRefused(enc, frames.data(), 1, &state, static_cast<GateMode>(3), threshold, &streamed, 0);
      } else {
        ExpectRefused(enc, frames.data(), 1, &state, mode, data.PickValueInArray(kBadThresholds),
                      &streamed, 0);
      }
    }
    int pos = 0;
    while (pos < T) {
      const int n = data.remaining_bytes() ? data.ConsumeIntegralInRange<int>(0, T - pos) : T - pos;
      const auto at = static_cast<std::size_t>(pos);
      float* chunk = frames.data() + at * d;
      if (!AllFinite(std::vector<float>(chunk, chunk + static_cast<std::size_t>(n) * d))) {
        ExpectRefused(enc, chunk, n, &state, mode, threshold, &streamed, at);
        // The stream goes on with that chunk's non-finite values zeroed.
        for (std::size_t i = 0; i < static_cast<std::size_t>(n) * d; ++i) {
          chunk[i] = std::isfinite(chunk[i]) ? chunk[i] : 0.0f;
        }
        continue;
      }
      EncoderCounters counters;
      if (n == 0) {
        enc.Forward(nullptr, 0, &state, mode, threshold, nullptr, nullptr, nullptr, &counters);
      } else {
        enc.Forward(chunk, n, &state, mode, threshold, streamed.out.data() + at * J,
                    streamed.probs.data() + at * g, streamed.gates.data() + at * g, &counters);
      }
      CheckCall(enc, streamed, at, n, mode, threshold, counters);
      pos += n;
    }
    Require(state.frames == T);

    // One call over the utterance as the stream took it (refused values zeroed).
    GatedEncoderState fresh = enc.InitialState();
    Outputs one_call{std::vector<float>(frames_n * J), std::vector<float>(frames_n * g),
                     mode == GateMode::kForced ? forced : std::vector<std::uint8_t>(frames_n * g)};
    EncoderCounters counters;
    enc.Forward(T ? frames.data() : nullptr, T, &fresh, mode, threshold,
                T ? one_call.out.data() : nullptr, T ? one_call.probs.data() : nullptr,
                T ? one_call.gates.data() : nullptr, &counters);
    CheckCall(enc, one_call, 0, T, mode, threshold, counters);
    if (tame && Tame(frames)) {
      Require(SameValues(streamed.out, one_call.out) && SameValues(streamed.probs, one_call.probs) &&
              streamed.gates == one_call.gates && SameState(state, fresh));
      Require(AllFinite(one_call.out) && AllFinite(one_call.probs));
    }
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
