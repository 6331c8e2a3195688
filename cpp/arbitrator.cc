#include "arbitrator.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <stdexcept>
#include <utility>

#include "gemm.h"

namespace framegate {
namespace {

std::size_t Size(int a) { return static_cast<std::size_t>(a); }


void CheckSizes(std::initializer_list<std::pair<const char*, int>> sizes,
                const char* where) {
  for (const auto& [name, value] : sizes) {
    if (value < 1) {
      throw std::invalid_argument(std::string(where) + ": " + name +
                                  " must be >= 1, got " +
                                  std::to_string(value));
    }
  }
}

}  // namespace

void CheckWeights(const std::vector<float>& t, std::size_t expected,
                  const std::string& what) {
  if (t.size() != expected) {
    throw std::invalid_argument(what + ": " + std::to_string(t.size()) +
                                " values, expected " +
                                std::to_string(expected));
  }
  for (float v : t) {
    if (!std::isfinite(v)) {
      throw std::invalid_argument(what + ": holds a non-finite value");
    }
  }
}

void Sigmoid(float* values, std::size_t count) {
  for (std::size_t i = 0; i < count; ++i) {
    values[i] = 1.0f / (1.0f + std::exp(-values[i]));
  }
}

FeatureArbitrator::FeatureArbitrator(int d_model, int num_gates, int kernel,
                                     int hidden,
                                     FeatureArbitratorWeights weights)
    : d_model_(d_model),
      num_gates_(num_gates),
      kernel_(kernel),
      hidden_(hidden),
      w_(std::move(weights)) {
  CheckSizes({{"d_model", d_model}, {"num_gates", num_gates},
              {"kernel", kernel}, {"hidden", hidden}},
             "FeatureArbitrator");
  CheckWeights(w_.conv_weight, Size(hidden) * Size(kernel) * Size(d_model),
               "feature arbitrator conv_weight");
  CheckWeights(w_.conv_bias, Size(hidden), "feature arbitrator conv_bias");
  CheckWeights(w_.out_weight, Size(num_gates) * Size(hidden),
               "feature arbitrator out_weight");
  CheckWeights(w_.out_bias, Size(num_gates), "feature arbitrator out_bias");
}

std::size_t FeatureArbitrator::HistorySize() const {
  return Size(kernel_ - 1) * Size(d_model_);
}

std::int64_t FeatureArbitrator::Probabilities(const float* frames, int n,
                                              std::vector<float>* history,
                                              std::vector<float>* scratch,
                                              float* probs) const {
  if (n <= 0) return 0;
  const std::size_t d = Size(d_model_), k = Size(kernel_);
  const std::size_t rows = k - 1 + Size(n);
  const std::size_t span = k * d;  // one frame's concatenated input
  // scratch: [history; frames] (rows x d), then the im2col matrix
  // (n x span), then the hidden activations (n x hidden).
  scratch->resize(rows * d + Size(n) * span + Size(n) * Size(hidden_));
  float* linear = scratch->data();
  float* cols = linear + rows * d;
  float* hidden = cols + Size(n) * span;
  std::copy(history->begin(), history->end(), linear);
  std::memcpy(linear + history->size(), frames, Size(n) * d * sizeof(float));
  for (std::size_t t = 0; t < Size(n); ++t) {
    std::memcpy(cols + t * span, linear + t * d, span * sizeof(float));
  }
  Sgemm(false, true, n, hidden_, static_cast<int>(span), 1.0f, cols,
        static_cast<int>(span), w_.conv_weight.data(), static_cast<int>(span),
        0.0f, hidden, hidden_);
  AddBias(hidden, n, hidden_, w_.conv_bias, true);
  Sgemm(false, true, n, num_gates_, hidden_, 1.0f, hidden, hidden_,
        w_.out_weight.data(), hidden_, 0.0f, probs, num_gates_);
  AddBias(probs, n, num_gates_, w_.out_bias, false);
  Sigmoid(probs, Size(n) * Size(num_gates_));
  std::copy(linear + Size(n) * d, linear + rows * d, history->begin());
  return static_cast<std::int64_t>(n) *
         (static_cast<std::int64_t>(span) * hidden_ +
          static_cast<std::int64_t>(hidden_) * num_gates_);
}

BlockArbitrator::BlockArbitrator(int d_model, int hidden,
                                 BlockArbitratorWeights weights)
    : d_model_(d_model), hidden_(hidden), w_(std::move(weights)) {
  CheckSizes({{"d_model", d_model}, {"hidden", hidden}}, "BlockArbitrator");
  CheckWeights(w_.hidden_weight, Size(hidden) * Size(d_model),
               "block arbitrator hidden_weight");
  CheckWeights(w_.hidden_bias, Size(hidden), "block arbitrator hidden_bias");
  CheckWeights(w_.out_weight, 2 * Size(hidden), "block arbitrator out_weight");
  CheckWeights(w_.out_bias, 2, "block arbitrator out_bias");
}

std::int64_t BlockArbitrator::Probabilities(const float* x, int n,
                                            std::vector<float>* scratch,
                                            float* probs) const {
  if (n <= 0) return 0;
  scratch->resize(Size(n) * Size(hidden_));
  float* hidden = scratch->data();
  Sgemm(false, true, n, hidden_, d_model_, 1.0f, x, d_model_,
        w_.hidden_weight.data(), d_model_, 0.0f, hidden, hidden_);
  AddBias(hidden, n, hidden_, w_.hidden_bias, true);
  Sgemm(false, true, n, 2, hidden_, 1.0f, hidden, hidden_, w_.out_weight.data(),
        hidden_, 0.0f, probs, 2);
  AddBias(probs, n, 2, w_.out_bias, false);
  Sigmoid(probs, 2 * Size(n));
  return static_cast<std::int64_t>(n) *
         (static_cast<std::int64_t>(d_model_) * hidden_ + 2LL * hidden_);
}

}  // namespace framegate
