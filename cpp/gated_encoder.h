// GatedEncoder: a gated Transformer encoder's blocks run per chunk over the
// front end's frames (the front end itself runs in ONNX Runtime).
//
// Per call, in tiles of at most max_rows frames: the feature arbitrator (if
// any) decides every gate of the tile first; then block by block the block
// arbitrator (if any) decides that block's two gates from the block input,
// and the block runs only its on parts (gated_block.h); finally LayerNorm and
// the output projection to joiner_dim. Modes:
//   kGated   decisions are sigmoid(logit) > threshold (the compute dial);
//   kDense   every part on, no arbitrator runs (the dense reference, same
//            code path);
//   kForced  the caller's decisions; arbitrators still run so their
//            probabilities are reported (tests compare with torch this way).
// GatedEncoderState is one stream's memory: per block its key/value ring,
// the feature arbitrator's last kernel - 1 frames, the frame count, and
// scratch. Its size is fixed by the config; any split of a stream into calls
// gives the same output as one call.
#ifndef FRAMEGATE_CPP_GATED_ENCODER_H_
#define FRAMEGATE_CPP_GATED_ENCODER_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "arbitrator.h"
#include "gated_block.h"

namespace framegate {

enum class ArbitratorKind { kNone, kFeature, kBlock };
enum class GateMode { kGated, kDense, kForced };

// What one stream may allocate for its key/value cache, and for its scratch rows (floats each).
inline constexpr std::int64_t kMaxStreamFloats = std::int64_t{1} << 28;

struct GatedEncoderConfig {
  int d_model = 0;
  int num_heads = 0;
  int ff_dim = 0;
  int num_layers = 0;
  int left_context = 0;
  int joiner_dim = 0;
  int max_rows = 16;  // frames per tile
  ArbitratorKind arbitrator = ArbitratorKind::kNone;
  int arbitrator_kernel = 1;  // kFeature only
  int arbitrator_hidden = 1;  // kFeature and kBlock

  void Validate() const;  // also bounds the stream's memory by kMaxStreamFloats
  std::string ToString() const;
  int NumGates() const { return 2 * num_layers; }
  GatedBlockConfig BlockConfig() const;
};

struct GatedEncoderWeights {
  std::vector<GatedBlockWeights> blocks;
  std::optional<FeatureArbitratorWeights> feature_arbitrator;
  std::vector<BlockArbitratorWeights> block_arbitrators;  // one per block
  std::vector<float> norm_out_weight, norm_out_bias;      // d_model
  std::vector<float> out_weight, out_bias;  // joiner_dim x d_model, joiner_dim
};

struct GatedEncoderState {
  std::vector<KeyValueCache> caches;
  std::vector<float> arbitrator_history;  // (kernel - 1) x d_model
  std::int64_t frames = 0;
  BlockWorkspace ws;
  std::vector<float> arbitrator_scratch, x, layer_probs;
  std::vector<std::uint8_t> layer_gates;
};

// What one Forward() did, for telemetry and for the tests that check that
// skipped parts do no work.
struct EncoderCounters {
  std::vector<std::int64_t> attention_rows, ff_rows;  // per layer
  std::int64_t frames = 0;
  std::int64_t arbitrator_macs = 0;
  std::int64_t block_macs = 0;   // attention and feed-forward GEMMs
  std::int64_t output_macs = 0;  // the final projection
};

class GatedEncoder {
 public:
  GatedEncoder(const GatedEncoderConfig& config, GatedEncoderWeights weights);

  GatedEncoderState InitialState() const;
  void Reset(GatedEncoderState* state) const;

  // frames: n x d_model front-end frames continuing `state`; out: n x
  // joiner_dim; probs: n x num_gates arbitrator probabilities (1 in kDense);
  // gates: n x num_gates decisions, read in kForced, written otherwise.
  // Throws std::invalid_argument (state untouched) on a non-finite frame, a
  // threshold outside [0, 1], or a state of another encoder.
  void Forward(const float* frames, int n, GatedEncoderState* state,
               GateMode mode, float threshold, float* out, float* probs,
               std::uint8_t* gates, EncoderCounters* counters) const;

  const GatedEncoderConfig& config() const { return config_; }

 private:
  void CheckState(const GatedEncoderState& state) const;
  void ForwardTile(const float* frames, int n, GatedEncoderState* state,
                   GateMode mode, float threshold, float* out, float* probs,
                   std::uint8_t* gates, EncoderCounters* counters) const;

  GatedEncoderConfig config_;
  std::vector<GatedBlock> blocks_;
  std::optional<FeatureArbitrator> feature_arbitrator_;
  std::vector<BlockArbitrator> block_arbitrators_;
  std::vector<float> norm_out_weight_, norm_out_bias_, out_weight_, out_bias_;
};

}  // namespace framegate

#endif  // FRAMEGATE_CPP_GATED_ENCODER_H_
