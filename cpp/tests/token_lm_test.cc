// TokenLm against a back-off walk worked by hand, and the tables it refuses.
#include <cmath>
#include <cstdint>
#include <vector>

#include "check.h"
#include "token_lm.h"

namespace framegate {
namespace {

using testing::Throws;

// Pieces 0, 1, 2; <s> = 3, </s> = 4; keys in base 5.
constexpr std::int32_t kVocab = 3;
constexpr std::int64_t kBase = 5;

std::vector<NgramOrder> Tables() {
  NgramOrder uni{{0, 1, 3, 4}, {-1.0f, -2.0f, -99.0f, -3.0f}, {-0.5f, -0.25f, -0.75f, 0.0f}};
  // (<s> 0), (0 1), (0 2): keys 3*5+0 = 15, 0*5+1 = 1, 0*5+2 = 2
  NgramOrder bi{{1, 2, 15}, {-0.1f, -0.2f, -0.3f}, {-0.125f, 0.0f, -0.0625f}};
  // (<s> 0 1): key 15*5+1 = 76
  NgramOrder tri{{76}, {-0.01f}, {}};
  return {uni, bi, tri};
}

void CheckScores(const TokenLm& lm, std::vector<std::int32_t> context, const std::vector<float>& expected) {
  std::vector<float> out(static_cast<std::size_t>(lm.base()));
  lm.Scores(context.data(), context.size(), out.data());
  for (std::size_t i = 0; i < expected.size(); ++i) CHECK(out[i] == expected[i]);
}

void ScoresWalkTheBackOffChain() {
  const TokenLm lm(Tables(), kVocab);
  CHECK(lm.order() == 3 && lm.base() == kBase);
  // No context: unigrams; piece 2 is never named, so it gets the least likely piece's -3 (not <s>'s -99).
  CheckScores(lm, {}, {-1.0f, -2.0f, -3.0f, -99.0f, -3.0f});
  // After piece 1: its back-off -0.25 on every unigram, no bigram continues it.
  CheckScores(lm, {1}, {-1.25f, -2.25f, -3.25f, -99.25f, -3.25f});
  // After 0: back-off -0.5, then its bigrams overwrite pieces 1 and 2.
  CheckScores(lm, {0}, {-1.5f, -0.1f, -0.2f, -99.5f, -3.5f});
  // After <s> 0: 0's row, then (<s> 0)'s back-off -0.0625 and its trigram (<s> 0 1).
  CheckScores(lm, {3, 0}, {-1.5f - 0.0625f, -0.01f, -0.2f - 0.0625f, -99.5f - 0.0625f, -3.5f - 0.0625f});
  // Only the last order - 1 ids count.
  CheckScores(lm, {1, 1, 3, 0}, {-1.5f - 0.0625f, -0.01f, -0.2f - 0.0625f, -99.5f - 0.0625f, -3.5f - 0.0625f});
  // An unseen suffix stops the walk: (2 0) is unknown after 0's row.
  CheckScores(lm, {2, 0}, {-1.5f, -0.1f, -0.2f, -99.5f, -3.5f});
}

void RefusesBadTablesAndContexts() {
  auto tables = Tables();
  tables[1].keys = {2, 1, 15};
  CHECK(Throws<std::invalid_argument>([&] { (void)TokenLm(tables, kVocab); }));
  tables = Tables();
  tables[2].backoff = {0.0f};  // the highest order has no back-off column
  CHECK(Throws<std::invalid_argument>([&] { (void)TokenLm(tables, kVocab); }));
  tables = Tables();
  tables[0].keys = {0, 1, 3, 5};  // 5 codes no id
  CHECK(Throws<std::invalid_argument>([&] { (void)TokenLm(tables, kVocab); }));
  tables = Tables();
  tables[1].backoff[0] = std::nanf("");
  CHECK(Throws<std::invalid_argument>([&] { (void)TokenLm(tables, kVocab); }, "finite"));
  CHECK(Throws<std::invalid_argument>([&] { (void)TokenLm(std::vector<NgramOrder>(30, NgramOrder{}), kVocab); }));
  CHECK(Throws<std::invalid_argument>([&] { (void)TokenLm({}, kVocab); }));
  const TokenLm lm(Tables(), kVocab);
  std::vector<float> out(static_cast<std::size_t>(lm.base()));
  const std::int32_t bad[] = {0, 5};
  CHECK(Throws<std::invalid_argument>([&] { lm.Scores(bad, 2, out.data()); }));
  const std::int32_t negative[] = {-1};
  CHECK(Throws<std::invalid_argument>([&] { lm.Scores(negative, 1, out.data()); }));
}

}  // namespace
}  // namespace framegate

int main() {
  return framegate::testing::RunTests({
      {"ScoresWalkTheBackOffChain", framegate::ScoresWalkTheBackOffChain},
      {"RefusesBadTablesAndContexts", framegate::RefusesBadTablesAndContexts},
  });
}
