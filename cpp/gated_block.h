// GatedBlock: one pre-LayerNorm Transformer block whose attention and
// feed-forward parts run only for the frames whose gate is on.
//
//   x_t += att_on(t) ? Wo * MHA(LN1(x))_t + bo : 0
//   x_t += ff_on(t)  ? W2 * relu(W1 * LN2(x_t) + b1) + b2 : 0
//
// Attention is causal over a bounded left context: query t attends to the
// on keys with times in [t - left_context, t] (itself included). Skip rule
// FULL-SKIP (as the training graph in export/models/gated_transformer.py):
// a frame whose attention is off computes no query, key, value or output and
// never becomes a key. The on frames' rows are gathered (LayerNorm fused into
// the gather), run through one GEMM per product, and scattered back onto the
// residual stream; an off part costs no GEMM row and no copy.
//
// KeyValueCache is one stream's memory for one block: the keys and values of
// the last on frames in time order, in a ring of capacity left_context +
// max_rows entries. Every entry is written twice (at p and p + capacity) so
// any run of consecutive entries is contiguous and the score and value
// products are single GEMMs over the window, whatever the ring position.
#ifndef FRAMEGATE_CPP_GATED_BLOCK_H_
#define FRAMEGATE_CPP_GATED_BLOCK_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace framegate {

struct GatedBlockConfig {
  int d_model = 0;
  int num_heads = 0;
  int ff_dim = 0;
  int left_context = 0;  // frames a query looks back (>= 0)
  int max_rows = 0;      // frames per Forward() call at most

  // Throws std::invalid_argument naming the offending field.
  void Validate() const;
  std::string ToString() const;
  int Capacity() const { return left_context + max_rows; }
};

// Row-major, as torch stores them: qkv_weight (3 d x d; query, key, value
// rows), att_out_weight (d x d), ff1_weight (ff x d), ff2_weight (d x ff).
struct GatedBlockWeights {
  std::vector<float> norm_att_weight, norm_att_bias;
  std::vector<float> qkv_weight, qkv_bias;
  std::vector<float> att_out_weight, att_out_bias;
  std::vector<float> norm_ff_weight, norm_ff_bias;
  std::vector<float> ff1_weight, ff1_bias;
  std::vector<float> ff2_weight, ff2_bias;
};

struct KeyValueCache {
  std::vector<float> keys, values;  // 2 * capacity x d_model
  std::vector<std::int64_t> times;  // capacity: the frame time of each entry
  std::int64_t count = 0;           // entries ever written
};

// Scratch reused from call to call (one per stream, so no allocation per
// chunk once warm).
struct BlockWorkspace {
  std::vector<int> rows;
  std::vector<std::int64_t> key_times;
  std::vector<float> gathered, qkv, scores, heads, hidden, out;
};

// What one Forward() did: GEMM rows per part and the MACs of its GEMMs.
struct BlockCounters {
  std::int64_t attention_rows = 0;  // frames whose attention ran
  std::int64_t ff_rows = 0;         // frames whose feed-forward ran
  std::int64_t macs = 0;            // multiply-accumulates in GEMMs
};

class GatedBlock {
 public:
  // Validates the config and every weight's size and finiteness.
  GatedBlock(const GatedBlockConfig& config, GatedBlockWeights weights);

  KeyValueCache InitialCache() const;
  void Reset(KeyValueCache* cache) const;
  // Throws std::invalid_argument if `cache` was not made by this block.
  void CheckCache(const KeyValueCache& cache) const;

  // x: n x d_model residual stream of frames at times t0 .. t0 + n - 1,
  // updated in place; att_on / ff_on: n flags (0 = off). n <= max_rows;
  // times must continue the cache's stream.
  void Forward(float* x, int n, std::int64_t t0, const std::uint8_t* att_on,
               const std::uint8_t* ff_on, KeyValueCache* cache,
               BlockWorkspace* ws, BlockCounters* counters) const;

  const GatedBlockConfig& config() const { return config_; }

 private:
  void Attention(float* x, std::int64_t t0, KeyValueCache* cache,
                 BlockWorkspace* ws, BlockCounters* counters) const;
  void FeedForward(float* x, BlockWorkspace* ws,
                   BlockCounters* counters) const;

  GatedBlockConfig config_;
  GatedBlockWeights w_;
};

// LayerNorm of rows `rows` of x (d wide) into consecutive rows of `out`.
void GatherLayerNorm(const float* x, int d, const std::vector<int>& rows,
                     const std::vector<float>& weight,
                     const std::vector<float>& bias, float* out);

}  // namespace framegate

#endif  // FRAMEGATE_CPP_GATED_BLOCK_H_
