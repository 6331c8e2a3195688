// Row-major single-precision GEMM for the kernels' dense products.
//
//   C (m x n) = alpha * op(A) * op(B) + beta * C,  op(X) = X or X^T
//
// with A, B, C row-major and leading dimensions lda, ldb, ldc in elements.
// Backed by a CBLAS when CMake found one (scipy-openblas32's prefixed
// symbols, or a system cblas.h such as Debian's OpenBLAS for cross builds);
// otherwise a plain loop, so the kernels still build on a board without BLAS.
//
// Products of at most FRAMEGATE_GEMV_MAX_ROWS rows of op(A) (a streaming
// chunk's few frames, fewer still once gated) run as one BLAS matrix-vector
// product per row: OpenBLAS's sgemm packs the whole weight matrix on every
// call, which at 1-4 rows costs more than the multiply-adds. Measured on the
// recipe-size gated encoder (benchmarks/README.md, "ARM"): under
// qemu-aarch64 with Debian's OpenBLAS 0.3.21, sgemm took 2.6 instructions per
// MAC at 1-frame chunks, 0.79 at 4, 0.49 at 16; per-row sgemv cut the 4-frame
// chunks' instructions by 12 % dense and 33 % gated, and x86 wall time with
// scipy-openblas32 went down too. Define FRAMEGATE_GEMV_MAX_ROWS=0 to
// compare on a board (memory traffic there is not what qemu counts).
// The rows share panels of B (64 KiB each) rather than each reading all of
// B: a dense 4-frame chunk of that encoder, x86, 3 alternating runs each,
// took 2.25/2.41/2.44 ms against 2.84/2.47/3.10 ms row by row.
#ifndef FRAMEGATE_CPP_GEMM_H_
#define FRAMEGATE_CPP_GEMM_H_

#include <algorithm>
#include <cstddef>
#include <vector>

#if defined(FRAMEGATE_BLAS_SCIPY_OPENBLAS) || defined(FRAMEGATE_BLAS_CBLAS)
#include <cblas.h>
#endif

#ifndef FRAMEGATE_GEMV_MAX_ROWS
#define FRAMEGATE_GEMV_MAX_ROWS 4
#endif

// Bytes of B one panel of the small-row path holds (see Sgemm).
#ifndef FRAMEGATE_GEMV_PANEL_BYTES
#define FRAMEGATE_GEMV_PANEL_BYTES (64 * 1024)
#endif

namespace framegate {

#if defined(FRAMEGATE_BLAS_SCIPY_OPENBLAS) || defined(FRAMEGATE_BLAS_CBLAS)
// c (1 x n) = alpha * a (1 x k) * op(B) + beta * c, through the BLAS's sgemv.
inline void SgemvRow(bool trans_b, int n, int k, float alpha, const float* a,
                     const float* b, int ldb, float beta, float* c) {
  if (beta == 0.0f) std::fill(c, c + n, 0.0f);  // c may hold anything
  // op(B) = B^T (B is n x k): c = B a; op(B) = B (k x n): c = B^T a.
#if defined(FRAMEGATE_BLAS_SCIPY_OPENBLAS)
  scipy_cblas_sgemv(CblasRowMajor, trans_b ? CblasNoTrans : CblasTrans,
                    trans_b ? n : k, trans_b ? k : n, alpha, b, ldb, a, 1,
                    beta, c, 1);
#else
  cblas_sgemv(CblasRowMajor, trans_b ? CblasNoTrans : CblasTrans,
              trans_b ? n : k, trans_b ? k : n, alpha, b, ldb, a, 1, beta, c,
              1);
#endif
}
#endif

inline void Sgemm(bool trans_a, bool trans_b, int m, int n, int k, float alpha,
                  const float* a, int lda, const float* b, int ldb, float beta,
                  float* c, int ldc) {
#if defined(FRAMEGATE_BLAS_SCIPY_OPENBLAS) || defined(FRAMEGATE_BLAS_CBLAS)
  if (!trans_a && m <= FRAMEGATE_GEMV_MAX_ROWS) {
    // The rows share one pass over B: B is cut into panels of output columns
    // small enough to stay in cache, and every row's sgemv runs on a panel
    // before the next is read. Row by row over the whole of B, a weight matrix
    // larger than the cache came from memory once per row.
    const int panel = m == 1 ? n
                             : std::max(1, static_cast<int>(FRAMEGATE_GEMV_PANEL_BYTES /
                                                            (sizeof(float) * static_cast<std::size_t>(std::max(k, 1)))));
    for (int j = 0; j < n; j += panel) {
      const int cols = std::min(panel, n - j);
      const float* panel_b = trans_b ? b + static_cast<std::ptrdiff_t>(j) * ldb : b + j;
      for (int i = 0; i < m; ++i) {
        SgemvRow(trans_b, cols, k, alpha, a + static_cast<std::ptrdiff_t>(i) * lda,
                 panel_b, ldb, beta, c + static_cast<std::ptrdiff_t>(i) * ldc + j);
      }
    }
    return;
  }
#endif
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
