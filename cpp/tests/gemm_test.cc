// Python-free test of gemm.h: every path of Sgemm (the small-row path, whose
// rows share panels of B, and the BLAS sgemm above it) against a float64
// reference, for both layouts of B, with panels that split B unevenly,
// strided operands, and beta = 0 over garbage.
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <random>
#include <vector>

#include "check.h"
#include "gemm.h"

namespace {

using framegate::testing::RunTests;

struct Case {
  bool trans_b;
  int m, n, k;
};

void CheckCase(const Case& c, float beta) {
  std::mt19937 rng(static_cast<unsigned>(c.m * 131 + c.n * 7 + c.k + (c.trans_b ? 1 : 0)));
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  const int lda = c.k + 3, ldc = c.n + 5;
  const int ldb = (c.trans_b ? c.k : c.n) + 2;  // B is n x k (trans_b) or k x n, row-major
  const int b_rows = c.trans_b ? c.n : c.k;
  std::vector<float> a(static_cast<std::size_t>(c.m) * lda), b(static_cast<std::size_t>(b_rows) * ldb);
  std::vector<float> out(static_cast<std::size_t>(c.m) * ldc);
  for (float& v : a) v = u(rng);
  for (float& v : b) v = u(rng);
  for (float& v : out) v = beta == 0.0f ? std::nanf("") : u(rng);
  const std::vector<float> before = out;
  framegate::Sgemm(false, c.trans_b, c.m, c.n, c.k, 0.5f, a.data(), lda, b.data(), ldb, beta, out.data(), ldc);
  double worst = 0.0;
  for (int i = 0; i < c.m; ++i) {
    for (int j = 0; j < c.n; ++j) {
      double sum = 0.0;
      for (int p = 0; p < c.k; ++p) {
        const float bv = c.trans_b ? b[static_cast<std::size_t>(j) * ldb + p] : b[static_cast<std::size_t>(p) * ldb + j];
        sum += static_cast<double>(a[static_cast<std::size_t>(i) * lda + p]) * bv;
      }
      const std::size_t at = static_cast<std::size_t>(i) * ldc + j;
      const double want = 0.5 * sum + (beta == 0.0f ? 0.0 : beta * static_cast<double>(before[at]));
      worst = std::max(worst, std::fabs(want - out[at]));
    }
    for (int j = c.n; j < ldc; ++j) {  // padding beyond n is never written
      const std::size_t at = static_cast<std::size_t>(i) * ldc + j;
      CHECK(std::isnan(before[at]) ? std::isnan(out[at]) : out[at] == before[at]);
    }
  }
  CHECK(worst < 1e-4 * std::sqrt(static_cast<double>(c.k)));
}

void SmallRowsShareUnevenPanels() {
  // k = 300 floats a column: a 64 KiB panel holds 54 columns, so n = 200 is
  // 3 panels and a remainder of 38; m = 1 takes B whole.
  for (bool trans_b : {true, false}) {
    for (int m = 1; m <= FRAMEGATE_GEMV_MAX_ROWS; ++m) {
      for (float beta : {0.0f, 1.0f}) CheckCase({trans_b, m, 200, 300}, beta);
      CheckCase({trans_b, m, 1024, 256}, 0.0f);  // the recipe's feed-forward shape
      CheckCase({trans_b, m, 3, 5}, 0.0f);       // one panel
    }
  }
}

void LargerProductsUseSgemm() {
  for (bool trans_b : {true, false}) {
    CheckCase({trans_b, FRAMEGATE_GEMV_MAX_ROWS + 1, 200, 300}, 0.0f);
    CheckCase({trans_b, 16, 64, 33}, 1.0f);
  }
}

}  // namespace

int main() {
  return RunTests({{"small rows share uneven panels of B", SmallRowsShareUnevenPanels},
                   {"larger products use sgemm", LargerProductsUseSgemm}});
}
