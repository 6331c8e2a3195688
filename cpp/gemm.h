// Row-major single-precision GEMM for the kernels' dense products.
//
//   C (m x n) = alpha * op(A) * op(B) + beta * C,  op(X) = X or X^T
//
// with A, B, C row-major and leading dimensions lda, ldb, ldc in elements.
// Backed by a CBLAS when CMake found one (scipy-openblas32's prefixed
// symbols, or a system cblas.h such as Debian's OpenBLAS for cross builds);
// otherwise a plain loop, so the kernels still build on a board without BLAS.
#ifndef FRAMEGATE_CPP_GEMM_H_
#define FRAMEGATE_CPP_GEMM_H_

#include <algorithm>
#include <cstddef>
#include <vector>

#if defined(FRAMEGATE_BLAS_SCIPY_OPENBLAS) || defined(FRAMEGATE_BLAS_CBLAS)
#include <cblas.h>
#endif

namespace framegate {

inline void Sgemm(bool trans_a, bool trans_b, int m, int n, int k, float alpha,
                  const float* a, int lda, const float* b, int ldb, float beta,
                  float* c, int ldc) {
#if defined(FRAMEGATE_BLAS_SCIPY_OPENBLAS)
  scipy_cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans,
                    trans_b ? CblasTrans : CblasNoTrans, m, n, k, alpha, a, lda,
                    b, ldb, beta, c, ldc);
#elif defined(FRAMEGATE_BLAS_CBLAS)
  cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans,
              trans_b ? CblasTrans : CblasNoTrans, m, n, k, alpha, a, lda, b,
              ldb, beta, c, ldc);
#else
  const auto at = [&](int i, int p) {
    return trans_a ? a[static_cast<std::ptrdiff_t>(p) * lda + i]
                   : a[static_cast<std::ptrdiff_t>(i) * lda + p];
  };
  const auto bt = [&](int p, int j) {
    return trans_b ? b[static_cast<std::ptrdiff_t>(j) * ldb + p]
                   : b[static_cast<std::ptrdiff_t>(p) * ldb + j];
  };
  for (int i = 0; i < m; ++i) {
    for (int j = 0; j < n; ++j) {
      float sum = 0.0f;
      for (int p = 0; p < k; ++p) sum += at(i, p) * bt(p, j);
      float& out = c[static_cast<std::ptrdiff_t>(i) * ldc + j];
      out = alpha * sum + (beta == 0.0f ? 0.0f : beta * out);
    }
  }
#endif
}

// out (n x cols) = out + bias per row, then max(., 0) if `relu`: the epilogue of a
// GEMM with a bias, shared by every kernel that follows Sgemm with one.
inline void AddBias(float* out, int n, int cols, const std::vector<float>& bias,
                    bool relu) {
  for (int t = 0; t < n; ++t) {
    float* row = out + static_cast<std::ptrdiff_t>(t) * cols;
    for (int j = 0; j < cols; ++j) {
      const float v = row[j] + bias[static_cast<std::size_t>(j)];
      row[j] = relu ? std::max(v, 0.0f) : v;
    }
  }
}

// Threads the BLAS may use for one GEMM, process-wide (scipy-openblas32
// only: elsewhere the BLAS's own setting applies and GemmThreads() is 0).
// Benchmarks pin it so C++ and ONNX Runtime are compared on equal threads.
inline void SetGemmThreads(int threads) {
#if defined(FRAMEGATE_BLAS_SCIPY_OPENBLAS)
  scipy_openblas_set_num_threads(threads);
#else
  (void)threads;
#endif
}

inline int GemmThreads() {
#if defined(FRAMEGATE_BLAS_SCIPY_OPENBLAS)
  return scipy_openblas_get_num_threads();
#else
  return 0;
#endif
}

}  // namespace framegate

#endif  // FRAMEGATE_CPP_GEMM_H_
