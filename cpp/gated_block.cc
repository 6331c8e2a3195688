#include "gated_block.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <sstream>
#include <stdexcept>
#include <utility>

#include "arbitrator.h"
#include "gemm.h"
#include "layer_norm.h"

namespace framegate {
namespace {

// Rows and windows must stay far inside int for the GEMM's dimensions.
constexpr int kMaxSize = 1 << 20;

std::size_t Size(int a) { return static_cast<std::size_t>(a); }
std::ptrdiff_t Off(std::size_t row, int width) {
  return static_cast<std::ptrdiff_t>(row) * width;
}


// x[rows[j]] += out[j] + bias: the scatter back onto the residual stream.
void ScatterAdd(const float* out, const std::vector<int>& rows, int d,
                const std::vector<float>& bias, float* x) {
  for (std::size_t j = 0; j < rows.size(); ++j) {
    float* dst = x + Off(Size(rows[j]), d);
    const float* src = out + Off(j, d);
    for (int c = 0; c < d; ++c) dst[c] += src[c] + bias[Size(c)];
  }
}

void CollectRows(const std::uint8_t* on, int n, std::vector<int>* rows) {
  rows->clear();
  for (int t = 0; t < n; ++t) {
    if (on[t]) rows->push_back(t);
  }
}

}  // namespace

void GatherLayerNorm(const float* x, int d, const std::vector<int>& rows,
                     const std::vector<float>& weight,
                     const std::vector<float>& bias, float* out) {
  for (std::size_t j = 0; j < rows.size(); ++j) {
    LayerNormRow(x + Off(Size(rows[j]), d), d, weight, bias, out + Off(j, d));
  }
}

void GatedBlockConfig::Validate() const {
  const std::pair<const char*, int> sizes[] = {{"d_model", d_model},
                                               {"num_heads", num_heads},
                                               {"ff_dim", ff_dim},
                                               {"max_rows", max_rows}};
  for (const auto& [name, value] : sizes) {
    if (value < 1 || value > kMaxSize) {
      throw std::invalid_argument(std::string("GatedBlockConfig.") + name +
                                  " must be in [1, " +
                                  std::to_string(kMaxSize) + "], got " +
                                  std::to_string(value));
    }
  }
  if (left_context < 0 || left_context > kMaxSize) {
    throw std::invalid_argument(
        "GatedBlockConfig.left_context must be in [0, " +
        std::to_string(kMaxSize) + "], got " + std::to_string(left_context));
  }
  if (d_model % num_heads != 0) {
    throw std::invalid_argument("GatedBlockConfig.d_model " +
                                std::to_string(d_model) +
                                " is not a multiple of num_heads " +
                                std::to_string(num_heads));
  }
}

std::string GatedBlockConfig::ToString() const {
  std::ostringstream os;
  os << "GatedBlockConfig(d_model=" << d_model << ", num_heads=" << num_heads
     << ", ff_dim=" << ff_dim << ", left_context=" << left_context
     << ", max_rows=" << max_rows << ")";
  return os.str();
}

GatedBlock::GatedBlock(const GatedBlockConfig& config,
                       GatedBlockWeights weights)
    : config_(config), w_(std::move(weights)) {
  config_.Validate();
  const std::size_t d = Size(config_.d_model), f = Size(config_.ff_dim);
  CheckWeights(w_.norm_att_weight, d, "norm_att_weight");
  CheckWeights(w_.norm_att_bias, d, "norm_att_bias");
  CheckWeights(w_.qkv_weight, 3 * d * d, "qkv_weight");
  CheckWeights(w_.qkv_bias, 3 * d, "qkv_bias");
  CheckWeights(w_.att_out_weight, d * d, "att_out_weight");
  CheckWeights(w_.att_out_bias, d, "att_out_bias");
  CheckWeights(w_.norm_ff_weight, d, "norm_ff_weight");
  CheckWeights(w_.norm_ff_bias, d, "norm_ff_bias");
  CheckWeights(w_.ff1_weight, f * d, "ff1_weight");
  CheckWeights(w_.ff1_bias, f, "ff1_bias");
  CheckWeights(w_.ff2_weight, d * f, "ff2_weight");
  CheckWeights(w_.ff2_bias, d, "ff2_bias");
}

KeyValueCache GatedBlock::InitialCache() const {
  KeyValueCache cache;
  const std::size_t cap = Size(config_.Capacity());
  cache.keys.assign(2 * cap * Size(config_.d_model), 0.0f);
  cache.values.assign(2 * cap * Size(config_.d_model), 0.0f);
  cache.times.assign(cap, 0);
  return cache;
}

void GatedBlock::Reset(KeyValueCache* cache) const {
  CheckCache(*cache);
  std::fill(cache->keys.begin(), cache->keys.end(), 0.0f);
  std::fill(cache->values.begin(), cache->values.end(), 0.0f);
  std::fill(cache->times.begin(), cache->times.end(), 0);
  cache->count = 0;
}

void GatedBlock::CheckCache(const KeyValueCache& cache) const {
  const std::size_t cap = Size(config_.Capacity());
  const std::size_t rows = 2 * cap * Size(config_.d_model);
  if (cache.keys.size() != rows || cache.values.size() != rows ||
      cache.times.size() != cap || cache.count < 0) {
    throw std::invalid_argument(
        "key/value cache does not belong to a block with " +
        config_.ToString());
  }
}

void GatedBlock::Forward(float* x, int n, std::int64_t t0,
                         const std::uint8_t* att_on,
                         const std::uint8_t* ff_on, KeyValueCache* cache,
                         BlockWorkspace* ws, BlockCounters* counters) const {
  if (n < 0 || n > config_.max_rows) {
    throw std::invalid_argument("GatedBlock::Forward: " + std::to_string(n) +
                                " frames, at most max_rows=" +
                                std::to_string(config_.max_rows));
  }
  CheckCache(*cache);
  if (cache->count > 0) {
    const std::size_t cap = Size(config_.Capacity());
    const auto last = static_cast<std::size_t>((cache->count - 1) %
                                               static_cast<std::int64_t>(cap));
    if (cache->times[last] >= t0) {
      throw std::invalid_argument(
          "GatedBlock::Forward: frame time " + std::to_string(t0) +
          " does not continue the cache (last key at " +
          std::to_string(cache->times[last]) + ")");
    }
  }
  CollectRows(att_on, n, &ws->rows);
  if (!ws->rows.empty()) Attention(x, t0, cache, ws, counters);
  CollectRows(ff_on, n, &ws->rows);
  if (!ws->rows.empty()) FeedForward(x, ws, counters);
}

void GatedBlock::Attention(float* x, std::int64_t t0,
                           KeyValueCache* cache, BlockWorkspace* ws,
                           BlockCounters* counters) const {
  const int d = config_.d_model, heads = config_.num_heads;
  const int dh = d / heads, d3 = 3 * d;
  const std::vector<int>& rows = ws->rows;
  const int m = static_cast<int>(rows.size());
  const auto cap = static_cast<std::int64_t>(config_.Capacity());

  ws->gathered.resize(Size(m) * Size(d));
  GatherLayerNorm(x, d, rows, w_.norm_att_weight, w_.norm_att_bias,
                  ws->gathered.data());
  ws->qkv.resize(Size(m) * Size(d3));
  Sgemm(false, true, m, d3, d, 1.0f, ws->gathered.data(), d,
        w_.qkv_weight.data(), d, 0.0f, ws->qkv.data(), d3);
  AddBias(ws->qkv.data(), m, d3, w_.qkv_bias, false);

  // The on frames become keys, in time order (full-skip: off frames never).
  const std::size_t row_bytes = Size(d) * sizeof(float);
  for (int j = 0; j < m; ++j) {
    const auto pos = static_cast<std::size_t>(cache->count % cap);
    const float* q_row = ws->qkv.data() + Off(Size(j), d3);
    for (const std::size_t slot : {pos, pos + static_cast<std::size_t>(cap)}) {
      std::memcpy(cache->keys.data() + Off(slot, d), q_row + d, row_bytes);
      std::memcpy(cache->values.data() + Off(slot, d), q_row + 2 * d,
                  row_bytes);
    }
    cache->times[pos] = t0 + rows[Size(j)];
    ++cache->count;
  }

  // Keys any query of this call may see: times >= first query - left_context.
  // They are at most left_context + max_rows = capacity entries.
  const std::int64_t t_min =
      t0 + rows.front() - static_cast<std::int64_t>(config_.left_context);
  std::int64_t first = std::max<std::int64_t>(0, cache->count - cap);
  while (cache->times[static_cast<std::size_t>(first % cap)] < t_min) ++first;
  const int keys = static_cast<int>(cache->count - first);
  const auto base = static_cast<std::size_t>(first % cap);
  ws->key_times.resize(Size(keys));
  for (int e = 0; e < keys; ++e) {
    ws->key_times[Size(e)] =
        cache->times[static_cast<std::size_t>((first + e) % cap)];
  }
  const float* key_rows = cache->keys.data() + Off(base, d);
  const float* value_rows = cache->values.data() + Off(base, d);

  ws->scores.resize(Size(m) * Size(keys));
  ws->heads.resize(Size(m) * Size(d));
  const float scale = 1.0f / std::sqrt(static_cast<float>(dh));
  for (int h = 0; h < heads; ++h) {
    Sgemm(false, true, m, keys, dh, scale, ws->qkv.data() + h * dh, d3,
          key_rows + h * dh, d, 0.0f, ws->scores.data(), keys);
    for (int j = 0; j < m; ++j) {
      float* s = ws->scores.data() + Off(Size(j), keys);
      const std::int64_t tq = t0 + rows[Size(j)];
      const std::int64_t lo = tq - config_.left_context;
      float peak = -std::numeric_limits<float>::infinity();
      for (int e = 0; e < keys; ++e) {
        const std::int64_t tk = ws->key_times[Size(e)];
        if (tk >= lo && tk <= tq) peak = std::max(peak, s[e]);
      }
      float sum = 0.0f;
      for (int e = 0; e < keys; ++e) {
        const std::int64_t tk = ws->key_times[Size(e)];
        s[e] = (tk >= lo && tk <= tq) ? std::exp(s[e] - peak) : 0.0f;
        sum += s[e];
      }
      const float inv = 1.0f / sum;  // >= 1 term: the query is its own key
      for (int e = 0; e < keys; ++e) s[e] *= inv;
    }
    Sgemm(false, false, m, dh, keys, 1.0f, ws->scores.data(), keys,
          value_rows + h * dh, d, 0.0f, ws->heads.data() + h * dh, d);
  }
  ws->out.resize(Size(m) * Size(d));
  Sgemm(false, true, m, d, d, 1.0f, ws->heads.data(), d,
        w_.att_out_weight.data(), d, 0.0f, ws->out.data(), d);
  ScatterAdd(ws->out.data(), rows, d, w_.att_out_bias, x);

  counters->attention_rows += m;
  counters->macs += static_cast<std::int64_t>(m) * d *
                    (4LL * d + 2LL * static_cast<std::int64_t>(keys));
}

void GatedBlock::FeedForward(float* x, BlockWorkspace* ws,
                             BlockCounters* counters) const {
  const int d = config_.d_model, f = config_.ff_dim;
  const std::vector<int>& rows = ws->rows;
  const int m = static_cast<int>(rows.size());
  ws->gathered.resize(Size(m) * Size(d));
  GatherLayerNorm(x, d, rows, w_.norm_ff_weight, w_.norm_ff_bias,
                  ws->gathered.data());
  ws->hidden.resize(Size(m) * Size(f));
  Sgemm(false, true, m, f, d, 1.0f, ws->gathered.data(), d,
        w_.ff1_weight.data(), d, 0.0f, ws->hidden.data(), f);
  AddBias(ws->hidden.data(), m, f, w_.ff1_bias, true);
  ws->out.resize(Size(m) * Size(d));
  Sgemm(false, true, m, d, f, 1.0f, ws->hidden.data(), f,
        w_.ff2_weight.data(), f, 0.0f, ws->out.data(), d);
  ScatterAdd(ws->out.data(), rows, d, w_.ff2_bias, x);
  counters->ff_rows += m;
  counters->macs += 2LL * m * d * f;
}

}  // namespace framegate
