// A back-off n-gram over token pieces, scored for a whole vocabulary at once.
//
// The beam search asks, every encoder frame and for every hypothesis, the
// log-probability of each piece it could emit next. Walking the back-off chain
// gives that vector: start from the unigrams and, for each longer suffix of the
// context the model knows, add its back-off weight and overwrite the pieces seen
// after it. Each order is a sorted array of integer-coded n-grams (ids as digits
// in base vocab + 2: the pieces, <s>, </s>); where each n-gram's continuations
// lie in the next order's table is found once, at construction, so scoring a
// context costs one binary search per order. Immutable after construction, so
// one instance serves every stream and thread.
#ifndef FRAMEGATE_CPP_TOKEN_LM_H_
#define FRAMEGATE_CPP_TOKEN_LM_H_

#include <cstddef>
#include <cstdint>
#include <vector>

namespace framegate {

// One order's table: keys strictly increasing; logp and backoff natural logs,
// backoff empty for the highest order (it backs off to nothing).
struct NgramOrder {
  std::vector<std::int64_t> keys;
  std::vector<float> logp;
  std::vector<float> backoff;
};

class TokenLm {
 public:
  // `orders[n - 1]` holds the n-grams. Throws std::invalid_argument when the
  // tables are inconsistent (lengths, order of keys, ids outside 0..vocab+1, a
  // score that is not finite, an order so high its keys overflow, or no
  // unigram naming a piece).
  TokenLm(std::vector<NgramOrder> orders, std::int32_t vocab_size);

  std::int32_t vocab_size() const { return vocab_size_; }
  // The tables as given (for saving the model again).
  const std::vector<NgramOrder>& orders() const { return orders_; }
  std::int32_t order() const { return static_cast<std::int32_t>(orders_.size()); }
  // Ids scored: the pieces, then <s> and </s>.
  std::int32_t base() const { return vocab_size_ + 2; }

  // Writes base() natural-log probabilities of every id after `context`
  // (context[0] is the oldest id; only the last order() - 1 count). Throws
  // std::invalid_argument for an id outside 0..base() - 1.
  void Scores(const std::int32_t* context, std::size_t length, float* out) const;

 private:
  // Row of `key` in order n's table, or -1.
  std::int64_t Find(std::size_t n, std::int64_t key) const;

  std::vector<NgramOrder> orders_;
  std::int32_t vocab_size_;
  std::vector<float> unigrams_;  // base() entries; pieces the model never names get its least likely
  // children_[n - 1][2 * row], [2 * row + 1]: the continuations of order n's
  // row `row` in order n + 1's table, as [begin, end) (tables hold < 2^32 rows).
  std::vector<std::vector<std::uint32_t>> children_;
};

}  // namespace framegate

#endif  // FRAMEGATE_CPP_TOKEN_LM_H_
