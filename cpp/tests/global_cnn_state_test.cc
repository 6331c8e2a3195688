// Python-free tests of GlobalCnn, run by ctest (also under sanitizers).
// The expected outputs come from an independent, deliberately naive
// construction: a float64 full-utterance pass that indexes the whole input
// history directly (no ring, no tiles, no GEMM).
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <limits>
#include <random>
#include <vector>

#include "check.h"
#include "global_cnn_state.h"

namespace {

using framegate::testing::RunTests;
using framegate::testing::Throws;

using framegate::GlobalCnn;
using framegate::GlobalCnnBlockWeights;
using framegate::GlobalCnnConfig;
using framegate::GlobalCnnState;
using framegate::SqueezeMode;

GlobalCnnConfig MakeConfig(int channels, int hidden, int se, int blocks,
                           SqueezeMode mode) {
  GlobalCnnConfig c;
  c.channels = channels;
  c.hidden = hidden;
  c.se_hidden = se;
  c.num_blocks = blocks;
  c.squeeze = mode;
  c.ema_decay = 0.9;
  return c;
}

std::vector<float> Random(std::size_t n, std::mt19937* rng, float scale) {
  std::normal_distribution<float> dist(0.0f, scale);
  std::vector<float> v(n);
  for (float& x : v) x = dist(*rng);
  return v;
}

std::vector<GlobalCnnBlockWeights> RandomWeights(const GlobalCnnConfig& c,
                                                 std::mt19937* rng) {
  const auto C = static_cast<std::size_t>(c.channels);
  const auto H = static_cast<std::size_t>(c.hidden);
  const auto S = static_cast<std::size_t>(c.se_hidden);
  std::vector<GlobalCnnBlockWeights> blocks(static_cast<std::size_t>(c.num_blocks));
  for (GlobalCnnBlockWeights& w : blocks) {
    w.norm_weight = Random(C, rng, 0.5f);
    for (float& g : w.norm_weight) g += 1.0f;
    w.norm_bias = Random(C, rng, 0.1f);
    w.pw1_weight = Random(H * C, rng, 0.5f);
    w.pw1_bias = Random(H, rng, 0.1f);
    w.dw_weight = Random(H * 3, rng, 0.5f);
    w.dw_bias = Random(H, rng, 0.1f);
    w.pw2_weight = Random(C * H, rng, 0.5f);
    w.pw2_bias = Random(C, rng, 0.1f);
    w.se1_weight = Random(S * C, rng, 0.5f);
    w.se1_bias = Random(S, rng, 0.1f);
    w.se2_weight = Random(C * S, rng, 0.5f);
    w.se2_bias = Random(C, rng, 0.1f);
  }
  return blocks;
}

// The specification: a float64 pass over the whole utterance.
std::vector<double> Offline(const GlobalCnnConfig& c,
                            const std::vector<GlobalCnnBlockWeights>& blocks,
                            const std::vector<float>& input, std::size_t T) {
  const auto C = static_cast<std::size_t>(c.channels);
  const auto H = static_cast<std::size_t>(c.hidden);
  const auto S = static_cast<std::size_t>(c.se_hidden);
  std::vector<double> x(input.begin(), input.end());
  for (std::size_t b = 0; b < blocks.size(); ++b) {
    const GlobalCnnBlockWeights& w = blocks[b];
    const std::size_t d = std::size_t{1} << b;
    std::vector<double> u(T * H), wout(T * C), normed(C);
    for (std::size_t t = 0; t < T; ++t) {
      double mean = 0.0, var = 0.0;
      for (std::size_t i = 0; i < C; ++i) mean += x[t * C + i] / static_cast<double>(C);
      for (std::size_t i = 0; i < C; ++i) var += (x[t * C + i] - mean) * (x[t * C + i] - mean) / static_cast<double>(C);
      for (std::size_t i = 0; i < C; ++i) {
        normed[i] = (x[t * C + i] - mean) / std::sqrt(var + 1e-5) * w.norm_weight[i] + w.norm_bias[i];
      }
      for (std::size_t j = 0; j < H; ++j) {
        double a = w.pw1_bias[j];
        for (std::size_t i = 0; i < C; ++i) a += w.pw1_weight[j * C + i] * normed[i];
        u[t * H + j] = std::max(a, 0.0);
      }
    }
    for (std::size_t t = 0; t < T; ++t) {
      std::vector<double> v(H);
      for (std::size_t j = 0; j < H; ++j) {
        double a = w.dw_bias[j];
        for (std::size_t k = 0; k < 3; ++k) {
          const std::size_t back = (2 - k) * d;
          if (t >= back) a += w.dw_weight[j * 3 + k] * u[(t - back) * H + j];
        }
        v[j] = std::max(a, 0.0);
      }
      for (std::size_t i = 0; i < C; ++i) {
        double a = w.pw2_bias[i];
        for (std::size_t j = 0; j < H; ++j) a += w.pw2_weight[i * H + j] * v[j];
        wout[t * C + i] = a;
      }
    }
    std::vector<double> squeeze(C, 0.0);
    for (std::size_t t = 0; t < T; ++t) {
      std::vector<double> s(C), g(S);
      for (std::size_t i = 0; i < C; ++i) {
        if (c.squeeze == SqueezeMode::kEma) {
          squeeze[i] = t == 0 ? wout[t * C + i]
                              : c.ema_decay * squeeze[i] + (1 - c.ema_decay) * wout[t * C + i];
          s[i] = squeeze[i];
        } else {
          squeeze[i] += wout[t * C + i];
          s[i] = squeeze[i] / static_cast<double>(t + 1);
        }
      }
      for (std::size_t k = 0; k < S; ++k) {
        double a = w.se1_bias[k];
        for (std::size_t i = 0; i < C; ++i) a += w.se1_weight[k * C + i] * s[i];
        g[k] = std::max(a, 0.0);
      }
      for (std::size_t i = 0; i < C; ++i) {
        double a = w.se2_bias[i];
        for (std::size_t k = 0; k < S; ++k) a += w.se2_weight[i * S + k] * g[k];
        x[t * C + i] += wout[t * C + i] / (1.0 + std::exp(-a));
      }
    }
  }
  return x;
}

double MaxRelativeError(const std::vector<float>& got, const std::vector<double>& want) {
  double worst = 0.0;
  for (std::size_t i = 0; i < got.size(); ++i) {
    worst = std::max(worst, std::abs(got[i] - want[i]) / (1.0 + std::abs(want[i])));
  }
  return worst;
}

void TestRandomChunkingsEqualOfflinePass() {
  std::mt19937 rng(42);
  for (int trial = 0; trial < 40; ++trial) {
    const SqueezeMode mode = trial % 2 ? SqueezeMode::kEma : SqueezeMode::kCumulative;
    const GlobalCnnConfig config =
        MakeConfig(std::uniform_int_distribution<int>(1, 6)(rng),
                   std::uniform_int_distribution<int>(1, 7)(rng),
                   std::uniform_int_distribution<int>(1, 3)(rng),
                   std::uniform_int_distribution<int>(1, 4)(rng), mode);
    const auto blocks = RandomWeights(config, &rng);
    const GlobalCnn cnn(config, blocks);
    const std::size_t T = std::uniform_int_distribution<std::size_t>(0, 300)(rng);
    const auto C = static_cast<std::size_t>(config.channels);
    const std::vector<float> input = Random(T * C, &rng, 1.0f);

    GlobalCnnState state = cnn.InitialState();
    std::vector<float> got(T * C);
    std::size_t pos = 0;
    while (pos < T) {
      const std::size_t n = std::min(T - pos, std::uniform_int_distribution<std::size_t>(0, 200)(rng));
      cnn.Forward(input.data() + pos * C, n, &state, got.data() + pos * C);
      pos += n;
    }
    CHECK(state.frames == static_cast<std::int64_t>(T));
    CHECK(MaxRelativeError(got, Offline(config, blocks, input, T)) < 1e-5);
  }
}

void TestResetStartsANewUtterance() {
  std::mt19937 rng(7);
  const GlobalCnnConfig config = MakeConfig(3, 4, 2, 3, SqueezeMode::kCumulative);
  const auto blocks = RandomWeights(config, &rng);
  const GlobalCnn cnn(config, blocks);
  const std::vector<float> first = Random(50 * 3, &rng, 1.0f);
  const std::vector<float> second = Random(20 * 3, &rng, 1.0f);
  GlobalCnnState state = cnn.InitialState();
  std::vector<float> out(50 * 3);
  cnn.Forward(first.data(), 50, &state, out.data());
  cnn.Reset(&state);
  CHECK(state.frames == 0);
  std::vector<float> again(20 * 3), fresh(20 * 3);
  cnn.Forward(second.data(), 20, &state, again.data());
  GlobalCnnState new_state = cnn.InitialState();
  cnn.Forward(second.data(), 20, &new_state, fresh.data());
  CHECK(again == fresh);
}

void TestNonFiniteInputIsRefusedAndStateKept() {
  std::mt19937 rng(3);
  const GlobalCnnConfig config = MakeConfig(2, 3, 1, 2, SqueezeMode::kCumulative);
  const GlobalCnn cnn(config, RandomWeights(config, &rng));
  GlobalCnnState state = cnn.InitialState();
  std::vector<float> frames = {1.0f, 2.0f, std::numeric_limits<float>::quiet_NaN(), 0.0f};
  std::vector<float> out(4);
  CHECK(Throws([&] { cnn.Forward(frames.data(), 2, &state, out.data()); }, "frame 1, channel 0"));
  CHECK(state.frames == 0);
}

// Found by cpp/fuzz/global_cnn_state_fuzz.cc (cpp/fuzz/regressions/global_cnn_state/).
void TestEmptyCallWithNullPointersIsANoOp() {
  std::mt19937 rng(4);
  const GlobalCnnConfig config = MakeConfig(2, 3, 1, 2, SqueezeMode::kEma);
  const GlobalCnn cnn(config, RandomWeights(config, &rng));
  GlobalCnnState state = cnn.InitialState();
  cnn.Forward(nullptr, 0, &state, nullptr);
  CHECK(state.frames == 0);
}

void TestBadConfigAndWeightsAreRefused() {
  std::mt19937 rng(5);
  GlobalCnnConfig config = MakeConfig(2, 3, 1, 2, SqueezeMode::kEma);
  auto blocks = RandomWeights(config, &rng);
  blocks[1].pw2_weight.pop_back();
  CHECK(Throws([&] { GlobalCnn cnn(config, blocks); }, "block 1 pw2_weight"));
  config.ema_decay = 1.0;
  CHECK(Throws([&] { config.Validate(); }, "ema_decay"));
}

void TestStateOfAnotherNetworkIsRefused() {
  std::mt19937 rng(9);
  const GlobalCnnConfig small = MakeConfig(2, 3, 1, 2, SqueezeMode::kCumulative);
  const GlobalCnnConfig large = MakeConfig(2, 3, 1, 3, SqueezeMode::kCumulative);
  const GlobalCnn a(small, RandomWeights(small, &rng));
  const GlobalCnn b(large, RandomWeights(large, &rng));
  GlobalCnnState state = a.InitialState();
  std::vector<float> frames(2, 0.5f), out(2);
  CHECK(Throws([&] { b.Forward(frames.data(), 1, &state, out.data()); }));
}

}  // namespace

int main() {
  return RunTests({
      {"RandomChunkingsEqualOfflinePass", TestRandomChunkingsEqualOfflinePass},
      {"ResetStartsANewUtterance", TestResetStartsANewUtterance},
      {"NonFiniteInputIsRefusedAndStateKept", TestNonFiniteInputIsRefusedAndStateKept},
      {"EmptyCallWithNullPointersIsANoOp", TestEmptyCallWithNullPointersIsANoOp},
      {"BadConfigAndWeightsAreRefused", TestBadConfigAndWeightsAreRefused},
      {"StateOfAnotherNetworkIsRefused", TestStateOfAnotherNetworkIsRefused},
  });
}
