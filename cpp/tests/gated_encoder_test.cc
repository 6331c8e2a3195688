// Python-free tests of GatedEncoder (arbitrators + gated blocks), run by
// ctest (also under sanitizers). The expected outputs come from a naive
// float64 full-utterance pass that applies the formulas directly: a masked
// softmax over all earlier frames (no ring, no gather, no GEMM).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <vector>

#include "check.h"
#include "gated_encoder.h"

namespace {

using framegate::testing::RunTests;
using framegate::testing::Throws;

using namespace framegate;
using Vec = std::vector<float>;

std::mt19937 g_rng(7);

Vec Random(std::size_t n, float scale) {
  std::normal_distribution<float> dist(0.0f, scale);
  Vec v(n);
  for (float& x : v) x = dist(g_rng);
  return v;
}

GatedEncoderConfig Config(ArbitratorKind kind) {
  GatedEncoderConfig c;
  c.d_model = 8;
  c.num_heads = 2;
  c.ff_dim = 12;
  c.num_layers = 2;
  c.left_context = 3;
  c.joiner_dim = 5;
  c.max_rows = 4;
  c.arbitrator = kind;
  c.arbitrator_kernel = 3;
  c.arbitrator_hidden = 6;
  return c;
}

GatedEncoderWeights Weights(const GatedEncoderConfig& c) {
  const std::size_t d = 8, f = 12, h = 6;
  GatedEncoderWeights w;
  for (int l = 0; l < c.num_layers; ++l) {
    GatedBlockWeights b;
    b.norm_att_weight = Random(d, 0.3f);
    for (float& v : b.norm_att_weight) v += 1.0f;
    b.norm_att_bias = Random(d, 0.1f);
    b.qkv_weight = Random(3 * d * d, 0.4f);
    b.qkv_bias = Random(3 * d, 0.1f);
    b.att_out_weight = Random(d * d, 0.4f);
    b.att_out_bias = Random(d, 0.1f);
    b.norm_ff_weight = Random(d, 0.3f);
    b.norm_ff_bias = Random(d, 0.1f);
    b.ff1_weight = Random(f * d, 0.4f);
    b.ff1_bias = Random(f, 0.1f);
    b.ff2_weight = Random(d * f, 0.4f);
    b.ff2_bias = Random(d, 0.1f);
    w.blocks.push_back(b);
  }
  if (c.arbitrator == ArbitratorKind::kFeature) {
    w.feature_arbitrator = FeatureArbitratorWeights{
        Random(h * 3 * d, 0.4f), Random(h, 0.1f),
        Random(static_cast<std::size_t>(c.NumGates()) * h, 0.5f),
        Random(static_cast<std::size_t>(c.NumGates()), 0.2f)};
  }
  if (c.arbitrator == ArbitratorKind::kBlock) {
    for (int l = 0; l < c.num_layers; ++l) {
      w.block_arbitrators.push_back(BlockArbitratorWeights{
          Random(h * d, 0.4f), Random(h, 0.1f), Random(2 * h, 0.5f),
          Random(2, 0.2f)});
    }
  }
  w.norm_out_weight = Vec(d, 1.0f);
  w.norm_out_bias = Vec(d, 0.0f);
  w.out_weight = Random(5 * d, 0.4f);
  w.out_bias = Random(5, 0.1f);
  return w;
}

std::vector<double> LayerNorm(const double* x, int d, const Vec& g,
                              const Vec& b) {
  double mean = 0, var = 0;
  for (int c = 0; c < d; ++c) mean += x[c];
  mean /= d;
  for (int c = 0; c < d; ++c) var += (x[c] - mean) * (x[c] - mean);
  const double inv = 1.0 / std::sqrt(var / d + 1e-5);
  std::vector<double> y(static_cast<std::size_t>(d));
  for (int c = 0; c < d; ++c) {
    y[static_cast<std::size_t>(c)] = (x[c] - mean) * inv * g[static_cast<std::size_t>(c)] +
                                     b[static_cast<std::size_t>(c)];
  }
  return y;
}

// y = W x + b for W (rows x cols).
std::vector<double> Affine(const Vec& w, const Vec& b, const double* x,
                           int rows, int cols) {
  std::vector<double> y(static_cast<std::size_t>(rows));
  for (int r = 0; r < rows; ++r) {
    double s = b[static_cast<std::size_t>(r)];
    for (int c = 0; c < cols; ++c) {
      s += static_cast<double>(w[static_cast<std::size_t>(r * cols + c)]) * x[c];
    }
    y[static_cast<std::size_t>(r)] = s;
  }
  return y;
}

// The whole utterance at once with given gates (T x 2L), float64.
std::vector<double> Naive(const GatedEncoderConfig& c,
                          const GatedEncoderWeights& w, const Vec& frames,
                          int frames_n, const std::vector<std::uint8_t>& gates) {
  const int d = c.d_model, heads = c.num_heads, dh = d / heads, g = c.NumGates();
  const auto T = static_cast<std::size_t>(frames_n);
  std::vector<double> x(frames.begin(), frames.end());
  for (int l = 0; l < c.num_layers; ++l) {
    const GatedBlockWeights& b = w.blocks[static_cast<std::size_t>(l)];
    const auto att_on = [&](std::size_t t) { return gates[t * static_cast<std::size_t>(g) + 2 * static_cast<std::size_t>(l)] != 0; };
    std::vector<std::vector<double>> qkv(T);
    for (std::size_t t = 0; t < T; ++t) {
      const auto n = LayerNorm(&x[t * static_cast<std::size_t>(d)], d, b.norm_att_weight, b.norm_att_bias);
      qkv[t] = Affine(b.qkv_weight, b.qkv_bias, n.data(), 3 * d, d);
    }
    std::vector<double> next = x;
    for (std::size_t t = 0; t < T; ++t) {
      if (!att_on(t)) continue;
      std::vector<double> o(static_cast<std::size_t>(d), 0.0);
      for (int h = 0; h < heads; ++h) {
        std::vector<double> p(T, 0.0);
        double peak = -1e300, sum = 0;
        for (std::size_t s = 0; s <= t; ++s) {
          if (!att_on(s) || t - s > static_cast<std::size_t>(c.left_context)) continue;
          double dot = 0;
          for (int k = 0; k < dh; ++k) dot += qkv[t][static_cast<std::size_t>(h * dh + k)] * qkv[s][static_cast<std::size_t>(d + h * dh + k)];
          p[s] = dot / std::sqrt(static_cast<double>(dh));
          peak = std::max(peak, p[s]);
        }
        for (std::size_t s = 0; s <= t; ++s) {
          if (!att_on(s) || t - s > static_cast<std::size_t>(c.left_context)) { p[s] = 0; continue; }
          p[s] = std::exp(p[s] - peak);
          sum += p[s];
        }
        for (std::size_t s = 0; s <= t; ++s) {
          for (int k = 0; k < dh; ++k) o[static_cast<std::size_t>(h * dh + k)] += p[s] / sum * qkv[s][static_cast<std::size_t>(2 * d + h * dh + k)];
        }
      }
      const auto y = Affine(b.att_out_weight, b.att_out_bias, o.data(), d, d);
      for (int k = 0; k < d; ++k) next[t * static_cast<std::size_t>(d) + static_cast<std::size_t>(k)] += y[static_cast<std::size_t>(k)];
    }
    x = next;
    for (std::size_t t = 0; t < T; ++t) {
      if (!gates[t * static_cast<std::size_t>(g) + 2 * static_cast<std::size_t>(l) + 1]) continue;
      const auto n = LayerNorm(&x[t * static_cast<std::size_t>(d)], d, b.norm_ff_weight, b.norm_ff_bias);
      auto hdn = Affine(b.ff1_weight, b.ff1_bias, n.data(), c.ff_dim, d);
      for (double& v : hdn) v = std::max(v, 0.0);
      const auto y = Affine(b.ff2_weight, b.ff2_bias, hdn.data(), d, c.ff_dim);
      for (int k = 0; k < d; ++k) x[t * static_cast<std::size_t>(d) + static_cast<std::size_t>(k)] += y[static_cast<std::size_t>(k)];
    }
  }
  std::vector<double> out;
  for (std::size_t t = 0; t < T; ++t) {
    const auto n = LayerNorm(&x[t * static_cast<std::size_t>(d)], d, w.norm_out_weight, w.norm_out_bias);
    const auto y = Affine(w.out_weight, w.out_bias, n.data(), c.joiner_dim, d);
    out.insert(out.end(), y.begin(), y.end());
  }
  return out;
}

struct Run {
  Vec out, probs;
  std::vector<std::uint8_t> gates;
  std::vector<std::int64_t> attention_rows, ff_rows;
  std::int64_t block_macs = 0;
};

// Runs `frames` through a fresh state in calls of the given sizes.
Run Stream(const GatedEncoder& enc, const Vec& frames, int n,
           const std::vector<int>& splits, GateMode mode, float threshold,
           std::vector<std::uint8_t> forced = {}) {
  const auto& c = enc.config();
  const auto g = static_cast<std::size_t>(c.NumGates());
  Run r;
  r.out.resize(static_cast<std::size_t>(n * c.joiner_dim));
  r.probs.resize(static_cast<std::size_t>(n) * g);
  r.gates = forced.empty() ? std::vector<std::uint8_t>(static_cast<std::size_t>(n) * g) : forced;
  r.attention_rows.assign(static_cast<std::size_t>(c.num_layers), 0);
  r.ff_rows.assign(static_cast<std::size_t>(c.num_layers), 0);
  GatedEncoderState state = enc.InitialState();
  int at = 0;
  for (int size : splits) {
    EncoderCounters counters;
    enc.Forward(frames.data() + at * c.d_model, size, &state, mode, threshold,
                r.out.data() + at * c.joiner_dim,
                r.probs.data() + static_cast<std::size_t>(at) * g,
                r.gates.data() + static_cast<std::size_t>(at) * g, &counters);
    for (std::size_t l = 0; l < r.attention_rows.size(); ++l) {
      r.attention_rows[l] += counters.attention_rows[l];
      r.ff_rows[l] += counters.ff_rows[l];
    }
    r.block_macs += counters.block_macs;
    at += size;
  }
  CHECK(at == n);
  return r;
}

double MaxDiff(const Vec& a, const std::vector<double>& b) {
  double m = 0;
  for (std::size_t i = 0; i < a.size(); ++i) m = std::max(m, std::abs(a[i] - b[i]));
  return m;
}

void TestForcedGatesMatchNaiveForAnySplit(ArbitratorKind kind) {
  const GatedEncoderConfig c = Config(kind);
  const GatedEncoderWeights w = Weights(c);
  const GatedEncoder enc(c, w);
  const int n = 23;
  const Vec frames = Random(static_cast<std::size_t>(n * c.d_model), 1.0f);
  std::vector<std::uint8_t> gates(static_cast<std::size_t>(n * c.NumGates()));
  std::bernoulli_distribution on(0.5);
  for (auto& v : gates) v = on(g_rng);
  const auto expected = Naive(c, w, frames, n, gates);
  for (const std::vector<int>& splits :
       {std::vector<int>{23}, std::vector<int>{1, 2, 3, 4, 4, 4, 5},
        std::vector<int>{2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 1}}) {
    const Run r = Stream(enc, frames, n, splits, GateMode::kForced, 0.5f, gates);
    CHECK(MaxDiff(r.out, expected) < 1e-4);
    for (int l = 0; l < c.num_layers; ++l) {
      std::int64_t att = 0, ff = 0;
      for (int t = 0; t < n; ++t) {
        att += gates[static_cast<std::size_t>(t * c.NumGates() + 2 * l)];
        ff += gates[static_cast<std::size_t>(t * c.NumGates() + 2 * l + 1)];
      }
      // Skipped parts do no work: GEMM rows are exactly the on frames.
      CHECK(r.attention_rows[static_cast<std::size_t>(l)] == att);
      CHECK(r.ff_rows[static_cast<std::size_t>(l)] == ff);
    }
  }
}

void TestGatedDecisionsFollowProbabilitiesAndDenseIsAllOn() {
  for (ArbitratorKind kind : {ArbitratorKind::kFeature, ArbitratorKind::kBlock}) {
    const GatedEncoderConfig c = Config(kind);
    const GatedEncoderWeights w = Weights(c);
    const GatedEncoder enc(c, w);
    const int n = 17;
    const Vec frames = Random(static_cast<std::size_t>(n * c.d_model), 1.0f);
    const Run gated = Stream(enc, frames, n, {5, 5, 7}, GateMode::kGated, 0.5f);
    std::size_t on = 0;
    for (std::size_t i = 0; i < gated.gates.size(); ++i) {
      CHECK(gated.gates[i] == (gated.probs[i] > 0.5f));
      on += gated.gates[i];
    }
    CHECK(on > 0 && on < gated.gates.size());  // the random arbitrator mixes
    // Same decisions forced give the same output.
    const Run forced = Stream(enc, frames, n, {17}, GateMode::kForced, 0.5f, gated.gates);
    CHECK(MaxDiff(forced.out, std::vector<double>(gated.out.begin(), gated.out.end())) < 1e-5);
    const Run dense = Stream(enc, frames, n, {3, 14}, GateMode::kDense, 0.5f);
    const std::vector<std::uint8_t> all(gated.gates.size(), 1);
    CHECK(dense.gates == all);
    CHECK(MaxDiff(dense.out, Naive(c, w, frames, n, all)) < 1e-4);
    CHECK(dense.block_macs > gated.block_macs);
  }
}

void TestBadInputIsRefusedAndLeavesStateUntouched() {
  const GatedEncoderConfig c = Config(ArbitratorKind::kFeature);
  const GatedEncoder enc(c, Weights(c));
  GatedEncoderState state = enc.InitialState();
  Vec frames = Random(static_cast<std::size_t>(2 * c.d_model), 1.0f);
  Vec out(2 * 5), probs(2 * 4);
  std::vector<std::uint8_t> gates(2 * 4);
  EncoderCounters counters;
  CHECK(Throws([&] {
    enc.Forward(frames.data(), 2, &state, GateMode::kGated, 1.5f, out.data(), probs.data(), gates.data(), &counters);
  }));
  frames[3] = std::numeric_limits<float>::quiet_NaN();
  CHECK(Throws([&] {
    enc.Forward(frames.data(), 2, &state, GateMode::kGated, 0.5f, out.data(), probs.data(), gates.data(), &counters);
  }) && state.frames == 0);
  GatedEncoderState foreign = GatedEncoder(Config(ArbitratorKind::kNone), Weights(Config(ArbitratorKind::kNone))).InitialState();
  foreign.caches.pop_back();
  CHECK(Throws([&] { enc.Reset(&foreign); }));
  GatedEncoderWeights missing = Weights(c);
  missing.feature_arbitrator.reset();
  CHECK(Throws([&] { GatedEncoder bad(c, missing); }));
  GatedEncoderConfig huge_cache = c;
  huge_cache.left_context = 1 << 20;  // each size is in range, the cache they make is not
  huge_cache.num_layers = 1 << 10;
  CHECK(Throws([&] { huge_cache.Validate(); }));
  GatedEncoderConfig huge_tiles = c;
  huge_tiles.max_rows = 1 << 20;
  huge_tiles.ff_dim = 1 << 10;
  CHECK(Throws([&] { huge_tiles.Validate(); }));
}

}  // namespace

int main() {
  return RunTests({
      {"ForcedGatesMatchNaiveForAnySplit(none)",
       [] { TestForcedGatesMatchNaiveForAnySplit(ArbitratorKind::kNone); }},
      {"ForcedGatesMatchNaiveForAnySplit(feature)",
       [] { TestForcedGatesMatchNaiveForAnySplit(ArbitratorKind::kFeature); }},
      {"ForcedGatesMatchNaiveForAnySplit(block)",
       [] { TestForcedGatesMatchNaiveForAnySplit(ArbitratorKind::kBlock); }},
      {"GatedDecisionsFollowProbabilitiesAndDenseIsAllOn", TestGatedDecisionsFollowProbabilitiesAndDenseIsAllOn},
      {"BadInputIsRefusedAndLeavesStateUntouched", TestBadInputIsRefusedAndLeavesStateUntouched},
  });
}
