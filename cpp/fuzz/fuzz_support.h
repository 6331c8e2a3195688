// What the libFuzzer harnesses of the numeric kernels share: a contract
// check that aborts (so libFuzzer records the input), config integers, and
// tensor values that stay cheap to describe. A harness does not spend one input byte per weight:
// a PRNG seeded by the input fills each tensor with values in [-scale, scale],
// then the input "pokes" a few chosen elements with edge values (NaN,
// infinities, huge, denormal, -0), which is where kernels break.
#ifndef FRAMEGATE_CPP_FUZZ_FUZZ_SUPPORT_H_
#define FRAMEGATE_CPP_FUZZ_FUZZ_SUPPORT_H_

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <random>
#include <vector>

#include <fuzzer/FuzzedDataProvider.h>

namespace framegate::fuzz {

inline void Require(bool condition) {
  if (!condition) std::abort();
}

// Values no larger than this keep every kernel's arithmetic far from float
// overflow at the harnesses' sizes, so their outputs are finite and the
// "streaming equals one call" property is exact.
inline constexpr float kTameBound = 8.0f;

inline constexpr float kEdgeValues[] = {
    std::numeric_limits<float>::quiet_NaN(),
    std::numeric_limits<float>::infinity(),
    -std::numeric_limits<float>::infinity(),
    -0.0f,
    std::numeric_limits<float>::max(),
    std::numeric_limits<float>::lowest(),
    1e30f,
    -1e30f,
    std::numeric_limits<float>::min(),
    std::numeric_limits<float>::denorm_min(),
    1e-30f,
    kTameBound,
    -kTameBound,
    0.0f,
    1.0f,
    -1.0f};

class ValueSource {
 public:
  explicit ValueSource(FuzzedDataProvider& data)
      : data_(data), rng_(data.ConsumeIntegral<std::uint32_t>()) {
    constexpr float kScales[] = {0.5f, 0.1f, 1.0f, 2.0f, 4.0f};
    scale_ = kScales[data.ConsumeIntegralInRange<std::size_t>(0, 4)];
  }

  // `n` values in [-scale, scale], up to two of them replaced by the input's
  // choice of edge value.
  std::vector<float> Fill(std::size_t n) {
    std::vector<float> v(n);
    for (float& x : v) {
      x = scale_ * (2.0f * static_cast<float>(rng_() - rng_.min()) /
                        static_cast<float>(rng_.max() - rng_.min()) -
                    1.0f);
    }
    const int pokes = data_.ConsumeIntegralInRange<int>(0, 2);
    for (int p = 0; p < pokes && n > 0; ++p) {
      const auto at = data_.ConsumeIntegralInRange<std::size_t>(0, n - 1);
      v[at] = data_.PickValueInArray(kEdgeValues);
    }
    return v;
  }

 private:
  FuzzedDataProvider& data_;
  std::minstd_rand rng_;
  float scale_ = 1.0f;
};

// Any int half of the time, else one near the small valid ranges (so that a
// config validation harness also reaches the configs it accepts).
inline int ConfigInt(FuzzedDataProvider& data) {
  return data.ConsumeBool() ? data.ConsumeIntegral<int>() : data.ConsumeIntegralInRange<int>(-1, 9);
}

inline bool AllFinite(const std::vector<float>& v) {
  for (float x : v) {
    if (!std::isfinite(x)) return false;
  }
  return true;
}

// Finite and within kTameBound.
inline bool Tame(const std::vector<float>& v) {
  for (float x : v) {
    if (!(std::fabs(x) <= kTameBound)) return false;
  }
  return true;
}

// Equal element by element, NaN matching NaN (and -0 matching +0).
inline bool SameValues(const std::vector<float>& a, const std::vector<float>& b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (!(a[i] == b[i] || (std::isnan(a[i]) && std::isnan(b[i])))) return false;
  }
  return true;
}

}  // namespace framegate::fuzz

#endif  // FRAMEGATE_CPP_FUZZ_FUZZ_SUPPORT_H_
