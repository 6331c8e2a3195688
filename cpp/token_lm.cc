#include "token_lm.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>
#include <utility>

namespace framegate {
namespace {

std::string OrderName(std::size_t n) { return std::to_string(n) + "-grams"; }

}  // namespace

TokenLm::TokenLm(std::vector<NgramOrder> orders, std::int32_t vocab_size)
    : orders_(std::move(orders)), vocab_size_(vocab_size) {
  if (vocab_size_ < 1) throw std::invalid_argument("TokenLm: vocab_size must be >= 1");
  if (orders_.empty()) throw std::invalid_argument("TokenLm: no n-gram orders");
  const auto radix = static_cast<std::int64_t>(base());
  std::int64_t limit = 1;  // base ** n, the key range of order n
  for (std::size_t n = 1; n <= orders_.size(); ++n) {
    if (limit > std::numeric_limits<std::int64_t>::max() / radix) {
      throw std::invalid_argument("TokenLm: order " + std::to_string(orders_.size()) +
                                  " is too high for " + std::to_string(vocab_size_) + " pieces");
    }
    limit *= radix;
    const NgramOrder& table = orders_[n - 1];
    const bool highest = n == orders_.size();
    if (table.keys.size() > std::numeric_limits<std::uint32_t>::max()) {
      throw std::invalid_argument("TokenLm: " + OrderName(n) + ": more than 2^32 - 1 rows");
    }
    if (table.logp.size() != table.keys.size() ||
        table.backoff.size() != (highest ? std::size_t{0} : table.keys.size())) {
      throw std::invalid_argument("TokenLm: " + OrderName(n) + ": keys, logp and backoff lengths disagree");
    }
    const auto finite = [](float x) { return std::isfinite(x); };
    if (!std::all_of(table.logp.begin(), table.logp.end(), finite) ||
        !std::all_of(table.backoff.begin(), table.backoff.end(), finite)) {
      throw std::invalid_argument("TokenLm: " + OrderName(n) + ": log-probabilities and back-offs must be finite");
    }
    for (std::size_t i = 0; i < table.keys.size(); ++i) {
      if (table.keys[i] < 0 || table.keys[i] >= limit || (i && table.keys[i] <= table.keys[i - 1])) {
        throw std::invalid_argument("TokenLm: " + OrderName(n) +
                                    ": keys must increase strictly and code ids below vocab_size + 2");
      }
    }
  }
  const NgramOrder& unigrams = orders_[0];
  const std::int64_t bos = vocab_size_;
  float floor = std::numeric_limits<float>::infinity();
  for (std::size_t i = 0; i < unigrams.keys.size(); ++i) {
    if (unigrams.keys[i] != bos) floor = std::min(floor, unigrams.logp[i]);  // <s>'s -99 is no probability
  }
  if (floor == std::numeric_limits<float>::infinity()) throw std::invalid_argument("TokenLm: no unigrams");
  unigrams_.assign(static_cast<std::size_t>(radix), floor);
  for (std::size_t i = 0; i < unigrams.keys.size(); ++i) {
    unigrams_[static_cast<std::size_t>(unigrams.keys[i])] = unigrams.logp[i];
  }
  for (std::size_t n = 1; n < orders_.size(); ++n) {
    const auto& parents = orders_[n - 1].keys;
    const auto& next = orders_[n].keys;
    std::vector<std::uint32_t> ranges(2 * parents.size());
    for (std::size_t row = 0; row < parents.size(); ++row) {
      const std::int64_t first = parents[row] * radix;
      ranges[2 * row] = static_cast<std::uint32_t>(std::lower_bound(next.begin(), next.end(), first) - next.begin());
      ranges[2 * row + 1] =
          static_cast<std::uint32_t>(std::lower_bound(next.begin(), next.end(), first + radix) - next.begin());
    }
    children_.push_back(std::move(ranges));
  }
}

std::int64_t TokenLm::Find(std::size_t n, std::int64_t key) const {
  const auto& keys = orders_[n - 1].keys;
  const auto it = std::lower_bound(keys.begin(), keys.end(), key);
  return it != keys.end() && *it == key ? it - keys.begin() : -1;
}

void TokenLm::Scores(const std::int32_t* context, std::size_t length, float* out) const {
  const std::int32_t ids = base();
  for (std::size_t i = 0; i < length; ++i) {
    if (context[i] < 0 || context[i] >= ids) {
      throw std::invalid_argument("TokenLm: context id " + std::to_string(context[i]) + " is outside 0.." +
                                  std::to_string(ids - 1));
    }
  }
  std::copy(unigrams_.begin(), unigrams_.end(), out);
  const std::size_t longest = std::min(length, orders_.size() - 1);
  for (std::size_t k = 1; k <= longest; ++k) {
    std::int64_t key = 0;
    for (std::size_t i = length - k; i < length; ++i) key = key * ids + context[i];
    const std::int64_t row = Find(k, key);
    if (row < 0) break;  // a context the model never saw has no longer known suffix either
    const float backoff = orders_[k - 1].backoff[static_cast<std::size_t>(row)];
    for (std::int32_t i = 0; i < ids; ++i) out[i] += backoff;
    const NgramOrder& next = orders_[k];
    const auto& range = children_[k - 1];
    const std::int64_t first = key * ids;
    const auto at = 2 * static_cast<std::size_t>(row);
    for (std::size_t j = range[at]; j < range[at + 1]; ++j) {
      out[static_cast<std::size_t>(next.keys[j] - first)] = next.logp[j];
    }
  }
}

}  // namespace framegate
