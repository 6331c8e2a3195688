// GlobalCnn: ConvRNN-T's global CNN run incrementally over a stream of frames.
//
// The network (weights shared by every stream): `num_blocks` residual blocks
// on `channels`-wide frames; block b with dilation d = 2^b computes
//   n_t = LayerNorm(x_t) * g + e       (over channels, eps 1e-5, per frame)
//   u_t = relu(W1 n_t + b1)                                  (hidden)
//   v_t = relu(k0 * u_{t-2d} + k1 * u_{t-d} + k2 * u_t + bd)  (depthwise)
//   w_t = W2 v_t + b2                                        (channels)
//   s_t = mean(w_0..w_t)  or  EMA: s_0 = w_0, s_t = a s_{t-1} + (1-a) w_t
//   y_t = x_t + w_t * sigmoid(S2 relu(S1 s_t + c1) + c2)
// with u before the utterance's first frame taken as zero (causal padding).
//
// GlobalCnnState is one stream's memory: per block the last 2d depthwise
// inputs (a ring) and the squeeze accumulator (a float64 running sum, or the
// float64 EMA value), plus the frame count. Its size is fixed by the config:
// each frame costs the same work however long the stream has run, and the
// float64 sum keeps the mean exact to float32 precision over days of frames.
// Forward() on any split of a stream into calls gives the same output as one
// call over the whole stream.
#ifndef FRAMEGATE_CPP_GLOBAL_CNN_STATE_H_
#define FRAMEGATE_CPP_GLOBAL_CNN_STATE_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace framegate {

enum class SqueezeMode { kCumulative, kEma };

struct GlobalCnnConfig {
  int channels = 0;    // width of the frames in and out
  int hidden = 0;      // width inside a block (depthwise channels)
  int se_hidden = 0;   // squeeze-and-excitation bottleneck
  int num_blocks = 0;  // block b has dilation 2^b
  SqueezeMode squeeze = SqueezeMode::kCumulative;
  double ema_decay = 0.99;  // a in (0, 1); used by kEma only

  // Throws std::invalid_argument naming the offending field.
  void Validate() const;
  std::string ToString() const;
  int Dilation(int block) const { return 1 << block; }
};

// One block's weights, row-major, as torch stores them (see the header
// comment for the formula): norm_weight and norm_bias (channels: g and e),
// pw1_weight (hidden x channels), dw_weight
// (hidden x 3, tap 0 oldest), pw2_weight (channels x hidden), se1_weight
// (se_hidden x channels), se2_weight (channels x se_hidden).
struct GlobalCnnBlockWeights {
  std::vector<float> norm_weight, norm_bias;
  std::vector<float> pw1_weight, pw1_bias;
  std::vector<float> dw_weight, dw_bias;
  std::vector<float> pw2_weight, pw2_bias;
  std::vector<float> se1_weight, se1_bias;
  std::vector<float> se2_weight, se2_bias;
};

// One stream's state; create it with GlobalCnn::InitialState().
struct GlobalCnnState {
  struct Block {
    std::vector<float> history;   // 2d x hidden ring of past depthwise inputs
    std::size_t oldest = 0;       // ring row holding u_{t-2d}
    std::vector<double> squeeze;  // channels: running sum or EMA value
  };
  std::vector<Block> blocks;
  std::int64_t frames = 0;  // frames seen since the utterance began
};

class GlobalCnn {
 public:
  // Validates the config and every weight's size and finiteness
  // (std::invalid_argument naming block and tensor).
  GlobalCnn(const GlobalCnnConfig& config,
            std::vector<GlobalCnnBlockWeights> blocks);

  // The state at the start of an utterance (zero history, empty squeeze).
  GlobalCnnState InitialState() const;
  // Returns `state` to InitialState() without reallocating.
  void Reset(GlobalCnnState* state) const;

  // Runs `num_frames` row-major frames (num_frames x channels) through the
  // network, continuing the stream in `state`, and writes the outputs to
  // `out` (num_frames x channels; must not overlap `frames`; both may be
  // null when num_frames is 0). Throws
  // std::invalid_argument, leaving `state` untouched, if a frame is not
  // finite or `state` belongs to another config.
  void Forward(const float* frames, std::size_t num_frames,
               GlobalCnnState* state, float* out) const;

  const GlobalCnnConfig& config() const { return config_; }

 private:
  void CheckState(const GlobalCnnState& state) const;
  // Runs up to kTileFrames frames; `act` (n x channels) is updated in place.
  void ForwardTile(float* act, int n, GlobalCnnState* state) const;

  GlobalCnnConfig config_;
  std::vector<GlobalCnnBlockWeights> blocks_;
};

}  // namespace framegate

#endif  // FRAMEGATE_CPP_GLOBAL_CNN_STATE_H_
