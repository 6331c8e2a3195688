// libFuzzer harness for the Python-free TokenLm kernel.
//
// Build and run as the other harnesses (see feature_window_fuzz.cc):
//   build/fuzz/token_lm_fuzz -max_total_time=60 cpp/fuzz/regressions/token_lm
//
// Each input is decoded into n-gram tables (a vocabulary of 1-8 pieces, orders 1-4,
// keys mostly valid but sometimes out of order, out of range or of the wrong
// count, scores with edge values) and contexts (ids sometimes outside the
// vocabulary). The constructor must accept or throw std::invalid_argument and
// nothing else; so must Scores. Every accepted scoring is compared bit for bit
// with an independent oracle: the same back-off walk over linear scans of the
// tables. Any violation aborts, so libFuzzer records the input.
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <vector>

#include <fuzzer/FuzzedDataProvider.h>

#include "fuzz_support.h"
#include "token_lm.h"

namespace {

using framegate::NgramOrder;
using framegate::TokenLm;
using framegate::fuzz::Require;
using framegate::fuzz::SameValues;
using framegate::fuzz::ValueSource;

// Keys of one order: mostly the strictly increasing codes of random n-grams.
std::vector<std::int64_t> Keys(FuzzedDataProvider& data, std::int64_t limit) {
  const auto count = data.ConsumeIntegralInRange<std::size_t>(0, 12);
  std::vector<std::int64_t> keys;
  if (data.ConsumeBool()) {  // arbitrary: refused unless by chance valid
    for (std::size_t i = 0; i < count; ++i) keys.push_back(data.ConsumeIntegral<std::int64_t>());
    return keys;
  }
  std::int64_t key = data.ConsumeIntegralInRange<std::int64_t>(-1, 3);
  for (std::size_t i = 0; i < count && key < limit; ++i) {
    keys.push_back(key);
    key += data.ConsumeIntegralInRange<std::int64_t>(1, 4);
  }
  return keys;
}

// The oracle: the back-off walk with linear scans.
std::vector<float> Expected(const std::vector<NgramOrder>& orders, std::int64_t base,
                            const std::vector<std::int32_t>& context) {
  float floor = 0.0f;
  bool named = false;
  for (std::size_t i = 0; i < orders[0].keys.size(); ++i) {
    if (orders[0].keys[i] != base - 2 && (!named || orders[0].logp[i] < floor)) {
      floor = orders[0].logp[i];
      named = true;
    }
  }
  std::vector<float> out(static_cast<std::size_t>(base), floor);
  for (std::size_t i = 0; i < orders[0].keys.size(); ++i) {
    out[static_cast<std::size_t>(orders[0].keys[i])] = orders[0].logp[i];
  }
  const std::size_t longest = std::min(context.size(), orders.size() - 1);
  for (std::size_t k = 1; k <= longest; ++k) {
    std::int64_t key = 0;
    for (std::size_t i = context.size() - k; i < context.size(); ++i) key = key * base + context[i];
    std::size_t row = 0;
    while (row < orders[k - 1].keys.size() && orders[k - 1].keys[row] != key) ++row;
    if (row == orders[k - 1].keys.size()) break;
    for (float& x : out) x += orders[k - 1].backoff[row];
    for (std::size_t j = 0; j < orders[k].keys.size(); ++j) {
      if (orders[k].keys[j] / base == key) out[static_cast<std::size_t>(orders[k].keys[j] % base)] = orders[k].logp[j];
    }
  }
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* bytes, std::size_t size) {
  FuzzedDataProvider data(bytes, size);
  const auto vocab = data.ConsumeIntegralInRange<std::int32_t>(1, 8);
  const auto num_orders = data.ConsumeIntegralInRange<std::size_t>(1, 4);
  const std::int64_t base = vocab + 2;
  ValueSource values(data);
  std::vector<NgramOrder> orders;
  std::int64_t limit = 1;
  for (std::size_t n = 1; n <= num_orders; ++n) {
    limit *= base;
    NgramOrder order;
    order.keys = Keys(data, limit);
    order.logp = values.Fill(order.keys.size());
    const bool highest = n == num_orders;
    std::size_t backoffs = highest ? 0 : order.keys.size();
    if (data.ConsumeIntegralInRange<int>(0, 15) == 0) backoffs = data.ConsumeIntegralInRange<std::size_t>(0, 13);
    order.backoff = values.Fill(backoffs);
    orders.push_back(order);
  }
  const std::vector<NgramOrder> given = orders;
  try {
    const TokenLm lm(std::move(orders), vocab);
    Require(lm.base() == base && lm.order() == static_cast<std::int32_t>(num_orders));
    while (data.remaining_bytes() > 0) {
      std::vector<std::int32_t> context(data.ConsumeIntegralInRange<std::size_t>(0, 5));
      bool valid = true;
      for (auto& id : context) {
        id = data.ConsumeIntegralInRange<int>(0, 15) == 0 ? data.ConsumeIntegral<std::int32_t>()
                                                           : data.ConsumeIntegralInRange<std::int32_t>(0, vocab + 1);
        valid = valid && id >= 0 && id < base;
      }
      std::vector<float> out(static_cast<std::size_t>(base));
      try {
        lm.Scores(context.data(), context.size(), out.data());
        Require(valid);
        Require(SameValues(out, Expected(given, base, context)));
      } catch (const std::invalid_argument&) {
        Require(!valid);
      }
    }
  } catch (const std::invalid_argument&) {
    // refused tables: the documented answer to inconsistent input
  }
  return 0;
}
