#include "gated_encoder.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <sstream>
#include <stdexcept>
#include <utility>

#include "gemm.h"

namespace framegate {
namespace {

std::size_t Size(int a) { return static_cast<std::size_t>(a); }

const char* KindName(ArbitratorKind kind) {
  switch (kind) {
    case ArbitratorKind::kNone:
      return "none";
    case ArbitratorKind::kFeature:
      return "feature";
    case ArbitratorKind::kBlock:
      return "block";
  }
  return "?";
}

}  // namespace

void GatedEncoderConfig::Validate() const {
  BlockConfig().Validate();
  const std::pair<const char*, int> sizes[] = {
      {"num_layers", num_layers},
      {"joiner_dim", joiner_dim},
      {"arbitrator_kernel", arbitrator_kernel},
      {"arbitrator_hidden", arbitrator_hidden}};
  for (const auto& [name, value] : sizes) {
    if (value < 1 || value > (1 << 20)) {
      throw std::invalid_argument(std::string("GatedEncoderConfig.") + name +
                                  " must be in [1, 2^20], got " +
                                  std::to_string(value));
    }
  }
  if (arbitrator != ArbitratorKind::kNone &&
      arbitrator != ArbitratorKind::kFeature &&
      arbitrator != ArbitratorKind::kBlock) {
    throw std::invalid_argument(
        "GatedEncoderConfig.arbitrator is not an ArbitratorKind");
  }
  // The weights are as big as the file that holds them, but left_context and max_rows size
  // the key/value cache and the scratch rows alone: bound what one stream may allocate.
  const std::int64_t cache = 2LL * num_layers * left_context * d_model;
  const std::int64_t scratch = static_cast<std::int64_t>(max_rows) * std::max(ff_dim, 3 * d_model);
  if (cache > kMaxStreamFloats || scratch > kMaxStreamFloats) {
    throw std::invalid_argument(
        "GatedEncoderConfig: the key/value cache (" + std::to_string(cache) +
        " floats) and the scratch rows (" + std::to_string(scratch) +
        " floats) must each be at most 2^28 floats (1 GiB); lower left_context or max_rows");
  }
}

std::string GatedEncoderConfig::ToString() const {
  std::ostringstream os;
  os << "GatedEncoderConfig(d_model=" << d_model << ", num_heads=" << num_heads
     << ", ff_dim=" << ff_dim << ", num_layers=" << num_layers
     << ", left_context=" << left_context << ", joiner_dim=" << joiner_dim
     << ", max_rows=" << max_rows << ", arbitrator=" << KindName(arbitrator)
     << ", arbitrator_kernel=" << arbitrator_kernel
     << ", arbitrator_hidden=" << arbitrator_hidden << ")";
  return os.str();
}

GatedBlockConfig GatedEncoderConfig::BlockConfig() const {
  GatedBlockConfig c;
  c.d_model = d_model;
  c.num_heads = num_heads;
  c.ff_dim = ff_dim;
  c.left_context = left_context;
  c.max_rows = max_rows;
  return c;
}

GatedEncoder::GatedEncoder(const GatedEncoderConfig& config,
                           GatedEncoderWeights weights)
    : config_(config) {
  config_.Validate();
  if (weights.blocks.size() != Size(config_.num_layers)) {
    throw std::invalid_argument(
        "GatedEncoder: " + std::to_string(weights.blocks.size()) +
        " blocks of weights, config says num_layers=" +
        std::to_string(config_.num_layers));
  }
  for (GatedBlockWeights& w : weights.blocks) {
    blocks_.emplace_back(config_.BlockConfig(), std::move(w));
  }
  const bool feature = config_.arbitrator == ArbitratorKind::kFeature;
  if (feature != weights.feature_arbitrator.has_value()) {
    throw std::invalid_argument(std::string("GatedEncoder: feature arbitrator "
                                            "weights ") +
                                (feature ? "missing" : "given, but the "
                                                       "config's arbitrator "
                                                       "is not 'feature'"));
  }
  if (feature) {
    feature_arbitrator_.emplace(config_.d_model, config_.NumGates(),
                                config_.arbitrator_kernel,
                                config_.arbitrator_hidden,
                                std::move(*weights.feature_arbitrator));
  }
  const std::size_t want_block =
      config_.arbitrator == ArbitratorKind::kBlock ? Size(config_.num_layers)
                                                   : 0;
  if (weights.block_arbitrators.size() != want_block) {
    throw std::invalid_argument(
        "GatedEncoder: " + std::to_string(weights.block_arbitrators.size()) +
        " block arbitrators, expected " + std::to_string(want_block));
  }
  for (BlockArbitratorWeights& w : weights.block_arbitrators) {
    block_arbitrators_.emplace_back(config_.d_model, config_.arbitrator_hidden,
                                    std::move(w));
  }
  const std::size_t d = Size(config_.d_model), j = Size(config_.joiner_dim);
  CheckWeights(weights.norm_out_weight, d, "norm_out_weight");
  CheckWeights(weights.norm_out_bias, d, "norm_out_bias");
  CheckWeights(weights.out_weight, j * d, "out_weight");
  CheckWeights(weights.out_bias, j, "out_bias");
  norm_out_weight_ = std::move(weights.norm_out_weight);
  norm_out_bias_ = std::move(weights.norm_out_bias);
  out_weight_ = std::move(weights.out_weight);
  out_bias_ = std::move(weights.out_bias);
}

GatedEncoderState GatedEncoder::InitialState() const {
  GatedEncoderState state;
  for (const GatedBlock& block : blocks_) {
    state.caches.push_back(block.InitialCache());
  }
  if (feature_arbitrator_) {
    state.arbitrator_history.assign(feature_arbitrator_->HistorySize(), 0.0f);
  }
  return state;
}

void GatedEncoder::Reset(GatedEncoderState* state) const {
  CheckState(*state);
  for (std::size_t l = 0; l < blocks_.size(); ++l) {
    blocks_[l].Reset(&state->caches[l]);
  }
  std::fill(state->arbitrator_history.begin(), state->arbitrator_history.end(),
            0.0f);
  state->frames = 0;
}

void GatedEncoder::CheckState(const GatedEncoderState& state) const {
  const std::size_t history =
      feature_arbitrator_ ? feature_arbitrator_->HistorySize() : 0;
  if (state.caches.size() != blocks_.size() ||
      state.arbitrator_history.size() != history || state.frames < 0) {
    throw std::invalid_argument("state does not belong to a GatedEncoder with " +
                                config_.ToString());
  }
  for (std::size_t l = 0; l < blocks_.size(); ++l) {
    blocks_[l].CheckCache(state.caches[l]);
  }
}

void GatedEncoder::Forward(const float* frames, int n,
                           GatedEncoderState* state, GateMode mode,
                           float threshold, float* out, float* probs,
                           std::uint8_t* gates,
                           EncoderCounters* counters) const {
  if (n < 0) throw std::invalid_argument("GatedEncoder: negative frame count");
  if (mode != GateMode::kGated && mode != GateMode::kDense &&
      mode != GateMode::kForced) {
    throw std::invalid_argument("GatedEncoder: mode is not a GateMode");
  }
  if (!(threshold >= 0.0f && threshold <= 1.0f)) {
    throw std::invalid_argument("GatedEncoder: threshold must be in [0, 1], got " +
                                std::to_string(threshold));
  }
  CheckState(*state);
  const std::size_t values = Size(n) * Size(config_.d_model);
  for (std::size_t i = 0; i < values; ++i) {
    if (!std::isfinite(frames[i])) {
      throw std::invalid_argument("GatedEncoder: frame " +
                                  std::to_string(i / Size(config_.d_model)) +
                                  " holds a non-finite value");
    }
  }
  counters->attention_rows.assign(Size(config_.num_layers), 0);
  counters->ff_rows.assign(Size(config_.num_layers), 0);
  counters->frames = n;
  counters->arbitrator_macs = counters->block_macs = counters->output_macs = 0;
  const int g = config_.NumGates();
  for (int start = 0; start < n; start += config_.max_rows) {
    const int rows = std::min(config_.max_rows, n - start);
    ForwardTile(frames + static_cast<std::ptrdiff_t>(start) * config_.d_model,
                rows, state, mode, threshold,
                out + static_cast<std::ptrdiff_t>(start) * config_.joiner_dim,
                probs + static_cast<std::ptrdiff_t>(start) * g,
                gates + static_cast<std::ptrdiff_t>(start) * g, counters);
  }
}

void GatedEncoder::ForwardTile(const float* frames, int n,
                               GatedEncoderState* state, GateMode mode,
                               float threshold, float* out, float* probs,
                               std::uint8_t* gates,
                               EncoderCounters* counters) const {
  const int d = config_.d_model, g = config_.NumGates();
  const std::size_t cells = Size(n) * Size(g);
  const bool no_arbitrator = config_.arbitrator == ArbitratorKind::kNone;
  if (mode == GateMode::kDense || (no_arbitrator && mode == GateMode::kGated)) {
    std::fill(probs, probs + cells, 1.0f);  // no arbitrator: every part on
    std::fill(gates, gates + cells, std::uint8_t{1});
  } else if (no_arbitrator) {
    std::fill(probs, probs + cells, 1.0f);
  } else if (feature_arbitrator_) {
    counters->arbitrator_macs += feature_arbitrator_->Probabilities(
        frames, n, &state->arbitrator_history, &state->arbitrator_scratch,
        probs);
    if (mode == GateMode::kGated) {
      for (std::size_t c = 0; c < cells; ++c) gates[c] = probs[c] > threshold;
    }
  }
  state->x.assign(frames, frames + Size(n) * Size(d));
  state->layer_gates.resize(2 * Size(n));
  state->layer_probs.resize(2 * Size(n));
  for (std::size_t l = 0; l < blocks_.size(); ++l) {
    if (mode != GateMode::kDense && !block_arbitrators_.empty()) {
      counters->arbitrator_macs += block_arbitrators_[l].Probabilities(
          state->x.data(), n, &state->arbitrator_scratch,
          state->layer_probs.data());
      for (std::size_t t = 0; t < Size(n); ++t) {
        for (std::size_t k = 0; k < 2; ++k) {
          const std::size_t cell = t * Size(g) + 2 * l + k;
          probs[cell] = state->layer_probs[2 * t + k];
          if (mode == GateMode::kGated) gates[cell] = probs[cell] > threshold;
        }
      }
    }
    for (std::size_t t = 0; t < Size(n); ++t) {
      state->layer_gates[t] = gates[t * Size(g) + 2 * l];
      state->layer_gates[Size(n) + t] = gates[t * Size(g) + 2 * l + 1];
    }
    BlockCounters bc;
    blocks_[l].Forward(state->x.data(), n, state->frames,
                       state->layer_gates.data(),
                       state->layer_gates.data() + n, &state->caches[l],
                       &state->ws, &bc);
    counters->attention_rows[l] += bc.attention_rows;
    counters->ff_rows[l] += bc.ff_rows;
    counters->block_macs += bc.macs;
  }
  std::vector<int>& all = state->ws.rows;
  all.resize(Size(n));
  for (int t = 0; t < n; ++t) all[Size(t)] = t;
  state->ws.gathered.resize(Size(n) * Size(d));
  GatherLayerNorm(state->x.data(), d, all, norm_out_weight_, norm_out_bias_,
                  state->ws.gathered.data());
  Sgemm(false, true, n, config_.joiner_dim, d, 1.0f, state->ws.gathered.data(),
        d, out_weight_.data(), d, 0.0f, out, config_.joiner_dim);
  for (int t = 0; t < n; ++t) {
    float* row = out + static_cast<std::ptrdiff_t>(t) * config_.joiner_dim;
    for (int j = 0; j < config_.joiner_dim; ++j) row[j] += out_bias_[Size(j)];
  }
  counters->output_macs += static_cast<std::int64_t>(n) * d * config_.joiner_dim;
  state->frames += n;
}

}  // namespace framegate
