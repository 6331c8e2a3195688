#include "global_cnn_state.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <sstream>
#include <stdexcept>
#include <utility>

#include "gemm.h"
#include "layer_norm.h"

namespace framegate {
namespace {

constexpr int kTaps = 3;
// Frames per GEMM: large enough to amortize, small enough that scratch stays
// a few hundred kB whatever one Forward() call brings.
constexpr int kTileFrames = 64;
// Dilation 2^b must fit comfortably in an int.
constexpr int kMaxBlocks = 16;

void CheckTensor(const std::vector<float>& t, std::size_t expected, int block,
                 const char* name) {
  if (t.size() != expected) {
    throw std::invalid_argument("GlobalCnn block " + std::to_string(block) +
                                " " + name + ": " + std::to_string(t.size()) +
                                " values, expected " +
                                std::to_string(expected));
  }
  for (float v : t) {
    if (!std::isfinite(v)) {
      throw std::invalid_argument("GlobalCnn block " + std::to_string(block) +
                                  " " + name + ": holds a non-finite value");
    }
  }
}

}  // namespace

void GlobalCnnConfig::Validate() const {
  const std::pair<const char*, int> sizes[] = {{"channels", channels},
                                               {"hidden", hidden},
                                               {"se_hidden", se_hidden},
                                               {"num_blocks", num_blocks}};
  for (const auto& [name, value] : sizes) {
    if (value < 1) {
      throw std::invalid_argument(std::string("GlobalCnnConfig.") + name +
                                  " must be >= 1, got " +
                                  std::to_string(value));
    }
  }
  if (num_blocks > kMaxBlocks) {
    throw std::invalid_argument("GlobalCnnConfig.num_blocks must be <= " +
                                std::to_string(kMaxBlocks) + ", got " +
                                std::to_string(num_blocks));
  }
  if (squeeze != SqueezeMode::kCumulative && squeeze != SqueezeMode::kEma) {
    throw std::invalid_argument("GlobalCnnConfig.squeeze is not a SqueezeMode");
  }
  if (!(ema_decay > 0.0 && ema_decay < 1.0)) {
    throw std::invalid_argument("GlobalCnnConfig.ema_decay must be in (0, 1), got " +
                                std::to_string(ema_decay));
  }
}

std::string GlobalCnnConfig::ToString() const {
  std::ostringstream os;
  os << "GlobalCnnConfig(channels=" << channels << ", hidden=" << hidden
     << ", se_hidden=" << se_hidden << ", num_blocks=" << num_blocks
     << ", squeeze=" << (squeeze == SqueezeMode::kEma ? "ema" : "cumulative")
     << ", ema_decay=" << ema_decay << ")";
  return os.str();
}

GlobalCnn::GlobalCnn(const GlobalCnnConfig& config,
                     std::vector<GlobalCnnBlockWeights> blocks)
    : config_(config), blocks_(std::move(blocks)) {
  config_.Validate();
  if (blocks_.size() != static_cast<std::size_t>(config_.num_blocks)) {
    throw std::invalid_argument(
        "GlobalCnn: " + std::to_string(blocks_.size()) +
        " blocks of weights, config says num_blocks=" +
        std::to_string(config_.num_blocks));
  }
  const auto c = static_cast<std::size_t>(config_.channels);
  const auto h = static_cast<std::size_t>(config_.hidden);
  const auto s = static_cast<std::size_t>(config_.se_hidden);
  for (std::size_t b = 0; b < blocks_.size(); ++b) {
    const GlobalCnnBlockWeights& w = blocks_[b];
    const int i = static_cast<int>(b);
    CheckTensor(w.norm_weight, c, i, "norm_weight");
    CheckTensor(w.norm_bias, c, i, "norm_bias");
    CheckTensor(w.pw1_weight, h * c, i, "pw1_weight");
    CheckTensor(w.pw1_bias, h, i, "pw1_bias");
    CheckTensor(w.dw_weight, h * kTaps, i, "dw_weight");
    CheckTensor(w.dw_bias, h, i, "dw_bias");
    CheckTensor(w.pw2_weight, c * h, i, "pw2_weight");
    CheckTensor(w.pw2_bias, c, i, "pw2_bias");
    CheckTensor(w.se1_weight, s * c, i, "se1_weight");
    CheckTensor(w.se1_bias, s, i, "se1_bias");
    CheckTensor(w.se2_weight, c * s, i, "se2_weight");
    CheckTensor(w.se2_bias, c, i, "se2_bias");
  }
}

GlobalCnnState GlobalCnn::InitialState() const {
  GlobalCnnState state;
  state.blocks.resize(static_cast<std::size_t>(config_.num_blocks));
  for (int b = 0; b < config_.num_blocks; ++b) {
    GlobalCnnState::Block& block = state.blocks[static_cast<std::size_t>(b)];
    block.history.assign(static_cast<std::size_t>(2 * config_.Dilation(b)) *
                             static_cast<std::size_t>(config_.hidden),
                         0.0f);
    block.squeeze.assign(static_cast<std::size_t>(config_.channels), 0.0);
  }
  return state;
}

void GlobalCnn::Reset(GlobalCnnState* state) const {
  CheckState(*state);
  for (GlobalCnnState::Block& block : state->blocks) {
    std::fill(block.history.begin(), block.history.end(), 0.0f);
    std::fill(block.squeeze.begin(), block.squeeze.end(), 0.0);
    block.oldest = 0;
  }
  state->frames = 0;
}

void GlobalCnn::CheckState(const GlobalCnnState& state) const {
  bool ok = state.blocks.size() == static_cast<std::size_t>(config_.num_blocks) &&
            state.frames >= 0;
  for (std::size_t b = 0; ok && b < state.blocks.size(); ++b) {
    const GlobalCnnState::Block& block = state.blocks[b];
    const auto rows = static_cast<std::size_t>(2 * config_.Dilation(static_cast<int>(b)));
    ok = block.history.size() == rows * static_cast<std::size_t>(config_.hidden) &&
         block.oldest < rows &&
         block.squeeze.size() == static_cast<std::size_t>(config_.channels);
  }
  if (!ok) {
    throw std::invalid_argument(
        "GlobalCnn: the state does not belong to this network (" +
        config_.ToString() + "); create it with InitialState()");
  }
}

void GlobalCnn::Forward(const float* frames, std::size_t num_frames,
                        GlobalCnnState* state, float* out) const {
  CheckState(*state);
  if (num_frames == 0) return;  // frames and out may then be null
  const auto c = static_cast<std::size_t>(config_.channels);
  for (std::size_t i = 0; i < num_frames * c; ++i) {
    if (!std::isfinite(frames[i])) {
      throw std::invalid_argument("GlobalCnn: input frame " +
                                  std::to_string(i / c) + ", channel " +
                                  std::to_string(i % c) + " is not finite");
    }
  }
  std::memcpy(out, frames, num_frames * c * sizeof(float));
  for (std::size_t start = 0; start < num_frames; start += kTileFrames) {
    const auto n = static_cast<int>(
        std::min<std::size_t>(kTileFrames, num_frames - start));
    ForwardTile(out + start * c, n, state);
  }
}

void GlobalCnn::ForwardTile(float* act, int n, GlobalCnnState* state) const {
  const int c = config_.channels;
  const int h = config_.hidden;
  const int s = config_.se_hidden;
  const bool ema = config_.squeeze == SqueezeMode::kEma;
  const double decay = config_.ema_decay;
  const auto rows = [](int frames, int cols) {
    return static_cast<std::size_t>(frames) * static_cast<std::size_t>(cols);
  };
  std::vector<float> normed(rows(n, c)), u(rows(n, h)), v(rows(n, h)), w(rows(n, c)),
      squeezed(rows(n, c)), gate_hidden(rows(n, s)), gate(rows(n, c));

  for (int b = 0; b < config_.num_blocks; ++b) {
    const GlobalCnnBlockWeights& wt = blocks_[static_cast<std::size_t>(b)];
    GlobalCnnState::Block& st = state->blocks[static_cast<std::size_t>(b)];
    const int d = config_.Dilation(b);
    const std::size_t ring = static_cast<std::size_t>(2 * d);

    for (int t = 0; t < n; ++t) {
      LayerNormRow(act + rows(t, c), c, wt.norm_weight, wt.norm_bias, normed.data() + rows(t, c));
    }
    Sgemm(false, true, n, h, c, 1.0f, normed.data(), c, wt.pw1_weight.data(), c, 0.0f,
          u.data(), h);
    AddBias(u.data(), n, h, wt.pw1_bias, true);

    // Depthwise taps at t-2d (the ring's oldest row), t-d and t; the ring
    // holds u_{t-2d} .. u_{t-1} and takes u_t in place of the oldest.
    for (int t = 0; t < n; ++t) {
      const float* oldest = st.history.data() + st.oldest * static_cast<std::size_t>(h);
      const float* middle =
          st.history.data() + ((st.oldest + static_cast<std::size_t>(d)) % ring) *
                                  static_cast<std::size_t>(h);
      float* u_t = u.data() + rows(t, h);
      float* v_t = v.data() + rows(t, h);
      for (int j = 0; j < h; ++j) {
        const float* k = wt.dw_weight.data() + rows(j, kTaps);
        const float sum = k[0] * oldest[j] + k[1] * middle[j] + k[2] * u_t[j] +
                          wt.dw_bias[static_cast<std::size_t>(j)];
        v_t[j] = std::max(sum, 0.0f);
      }
      std::memcpy(st.history.data() + st.oldest * static_cast<std::size_t>(h),
                  u_t, static_cast<std::size_t>(h) * sizeof(float));
      st.oldest = (st.oldest + 1) % ring;
    }

    Sgemm(false, true, n, c, h, 1.0f, v.data(), h, wt.pw2_weight.data(), h,
          0.0f, w.data(), c);
    AddBias(w.data(), n, c, wt.pw2_bias, false);

    // The causal squeeze, accumulated in float64.
    for (int t = 0; t < n; ++t) {
      const float* w_t = w.data() + rows(t, c);
      float* s_t = squeezed.data() + rows(t, c);
      const std::int64_t seen = state->frames + t;  // frames before this one
      for (int j = 0; j < c; ++j) {
        double& acc = st.squeeze[static_cast<std::size_t>(j)];
        if (ema) {
          acc = seen == 0 ? w_t[j] : decay * acc + (1.0 - decay) * w_t[j];
          s_t[j] = static_cast<float>(acc);
        } else {
          acc += w_t[j];
          s_t[j] = static_cast<float>(acc / static_cast<double>(seen + 1));
        }
      }
    }

    Sgemm(false, true, n, s, c, 1.0f, squeezed.data(), c, wt.se1_weight.data(),
          c, 0.0f, gate_hidden.data(), s);
    AddBias(gate_hidden.data(), n, s, wt.se1_bias, true);
    Sgemm(false, true, n, c, s, 1.0f, gate_hidden.data(), s,
          wt.se2_weight.data(), s, 0.0f, gate.data(), c);
    AddBias(gate.data(), n, c, wt.se2_bias, false);

    for (std::size_t i = 0; i < rows(n, c); ++i) {
      act[i] += w[i] / (1.0f + std::exp(-gate[i]));
    }
  }
  state->frames += n;
}

}  // namespace framegate
