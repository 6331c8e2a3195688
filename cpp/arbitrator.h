// Arbitrators: the small networks that decide, per encoder frame, which
// parts of a gated Transformer encoder run (export/models/gated_transformer.py
// trains them).
//
// Both emit logits; a part is on when sigmoid(logit) > threshold.
//   FeatureArbitrator: a causal convolution over the front end's frames
//     (kernel taps, oldest first) -> ReLU -> Linear to 2 * num_layers logits
//     ordered [layer0 attention, layer0 feed-forward, layer1 attention, ...].
//     Its state is the last kernel - 1 input frames (zero at an utterance's
//     start, as the training graph pads). It runs before any block, so the
//     encoder knows every decision of a chunk up front.
//   BlockArbitrator: per block, Linear -> ReLU -> Linear to 2 logits on the
//     block's input frame; stateless.
// Products go through gemm.h. Weights are row-major as torch stores them,
// except the convolution's, which is (hidden, kernel, d_model): tap-major, so
// a frame's input is the contiguous concatenation of its kernel frames.
#ifndef FRAMEGATE_CPP_ARBITRATOR_H_
#define FRAMEGATE_CPP_ARBITRATOR_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace framegate {

struct FeatureArbitratorWeights {
  std::vector<float> conv_weight;  // hidden x (kernel * d_model), tap-major
  std::vector<float> conv_bias;    // hidden
  std::vector<float> out_weight;   // num_gates x hidden
  std::vector<float> out_bias;     // num_gates
};

struct BlockArbitratorWeights {
  std::vector<float> hidden_weight;  // hidden x d_model
  std::vector<float> hidden_bias;    // hidden
  std::vector<float> out_weight;     // 2 x hidden
  std::vector<float> out_bias;       // 2
};

// sigmoid(logits) in place, for `count` values.
void Sigmoid(float* values, std::size_t count);

class FeatureArbitrator {
 public:
  // Throws std::invalid_argument naming a wrong size or a non-finite weight.
  FeatureArbitrator(int d_model, int num_gates, int kernel, int hidden,
                    FeatureArbitratorWeights weights);

  // frames (n x d_model) continuing the stream whose last kernel - 1 frames
  // are `history` ((kernel - 1) x d_model, updated) -> probabilities
  // (n x num_gates). `scratch` is resized as needed. Returns the MACs done.
  std::int64_t Probabilities(const float* frames, int n,
                             std::vector<float>* history,
                             std::vector<float>* scratch, float* probs) const;

  int kernel() const { return kernel_; }
  int num_gates() const { return num_gates_; }
  std::size_t HistorySize() const;

 private:
  int d_model_, num_gates_, kernel_, hidden_;
  FeatureArbitratorWeights w_;
};

class BlockArbitrator {
 public:
  BlockArbitrator(int d_model, int hidden, BlockArbitratorWeights weights);

  // x (n x d_model) -> probabilities (n x 2): [attention, feed-forward].
  // Returns the MACs done.
  std::int64_t Probabilities(const float* x, int n, std::vector<float>* scratch,
                             float* probs) const;

 private:
  int d_model_, hidden_;
  BlockArbitratorWeights w_;
};

// Throws std::invalid_argument unless `t` has `expected` finite values.
void CheckWeights(const std::vector<float>& t, std::size_t expected,
                  const std::string& what);

}  // namespace framegate

#endif  // FRAMEGATE_CPP_ARBITRATOR_H_
