// LayerNorm of one row, as torch.nn.LayerNorm computes it (biased variance,
// eps inside the square root), with the mean and variance accumulated in
// float64 so that long float32 rows of large values keep their precision.
// Shared by the gated Transformer blocks and the global CNN's pre-norm.
#ifndef FRAMEGATE_CPP_LAYER_NORM_H_
#define FRAMEGATE_CPP_LAYER_NORM_H_

#include <cmath>
#include <cstddef>
#include <vector>

namespace framegate {

constexpr double kLayerNormEps = 1e-5;  // torch.nn.LayerNorm's default

// dst[0..d) = (src - mean) / sqrt(var + eps) * weight + bias; weight and bias
// hold at least d values (callers validate them once, at construction).
inline void LayerNormRow(const float* src, int d, const std::vector<float>& weight,
                         const std::vector<float>& bias, float* dst) {
  double mean = 0.0;
  for (int c = 0; c < d; ++c) mean += src[c];
  mean /= d;
  double var = 0.0;
  for (int c = 0; c < d; ++c) {
    const double dev = src[c] - mean;
    var += dev * dev;
  }
  const double inv = 1.0 / std::sqrt(var / d + kLayerNormEps);
  for (int c = 0; c < d; ++c) {
    const auto k = static_cast<std::size_t>(c);
    dst[c] = static_cast<float>((src[c] - mean) * inv) * weight[k] + bias[k];
  }
}

}  // namespace framegate

#endif  // FRAMEGATE_CPP_LAYER_NORM_H_
