// CPU batch normalization over NHWC, f32: the oracle. The statistics take one pass: per chunk of
// rows, sums of x - shift (the chunk's first row) and its square, in f32 blocks of 32 rows into
// double, the chunks' moments merged in double; the element math is the shared
// kernels/batchnorm_math.h that the CUDA kernels use too. Forward's and backward's sums run over
// a fixed number of row chunks in parallel (the count depends on the shape alone), each into its
// own partial sums, merged in chunk order: the same bits whatever the thread count. The loops are
// built for AVX-512, AVX2 and the baseline (target_clones), the CPU picking at load time.
// The dispatcher (kernels/batchnorm.cpp) has checked args, devices, dtypes and shapes; only f32
// and the workspace are checked here.
#include "kernels/batchnorm.h"

#include <algorithm>
#include <type_traits>

#include "kernels/args.h"
#include "kernels/batchnorm_math.h"

namespace lockstep::cpu {

// The element and sum loops, vectorized for the widest unit this CPU has (GCC picks at load time).
#if defined(__clang__)
#define LS_CLONES  // clang 14 (the fuzz build) cannot multiversion templates: baseline code there
#else
#define LS_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#endif
namespace {
constexpr int64_t kMaxSumChunks = 8;
constexpr int64_t kBlockRows = 32;

int64_t sum_chunks(const Shape& x) { return std::max<int64_t>(1, std::min<int64_t>(kMaxSumChunks, bn::rows_of(x))); }

// 2 * C doubles of sums, then 2 * C doubles per chunk of partial sums, then 2 * C floats per
// chunk of one block's sums.
size_t scratch_bytes(const Shape& x) {
  const auto c = static_cast<size_t>(x[3]), chunks = static_cast<size_t>(sum_chunks(x));
  return 2 * c * (1 + chunks) * sizeof(double) + 2 * c * chunks * sizeof(float);
}

// Adds two per-channel sums of rows [r0, r1) into the chunk's double partials s1 and s2,
// kBlockRows rows at a time in f32 (block holds 2 C floats): terms(r, c, t1, t2) sets row r's
// terms of channel c.
// kC > 0: the channel count as a constant (the loops unroll and keep their sums in registers:
// CIFAR nets' 16-64 channels make the per-row loop short); 0: c_n at run time.
template <int kC, typename Terms>
LS_CLONES void add_block_sums(int64_t r0, int64_t r1, int64_t channels, float* block, double* s1, double* s2,
                              Terms terms) {
  const int64_t c_n = kC > 0 ? kC : channels;
  float* b1 = block;
  float* b2 = block + c_n;
  for (int64_t b = r0; b < r1; b += kBlockRows) {
    std::fill(block, block + 2 * c_n, 0.f);
    for (int64_t r = b; r < std::min(r1, b + kBlockRows); ++r)
      for (int64_t c = 0; c < c_n; ++c) {
        float t1, t2;
        terms(r * c_n + c, c, t1, t2);
        b1[c] += t1;
        b2[c] += t2;
      }
    for (int64_t c = 0; c < c_n; ++c) {
      s1[c] += b1[c];
      s2[c] += b2[c];
    }
  }
}

// Backward's sums of g = relu_grad(dy) and g * xhat over rows [r0, r1).
template <bool kRelu, int kC>
void add_grad_sums(const float* px, const float* py, const float* pdy, const float* sm, const float* si, int64_t r0,
                   int64_t r1, int64_t channels, float* block, double* pg_sum, double* pgx_sum) {
  add_block_sums<kC>(r0, r1, channels, block, pg_sum, pgx_sum, [=](int64_t i, int64_t c, float& g, float& gx) {
    g = bn::relu_grad(pdy[i], kRelu ? py[i] : 0.f, kRelu);
    gx = g * bn::xhat_of(px[i], sm[c], si[c]);
  });
}

// Forward's sums of d = x - shift and d^2 over rows [r0, r1), shift: row r0 of x.
template <int kC>
void add_moments(const float* px, int64_t r0, int64_t r1, int64_t channels, float* block, double* s1, double* s2) {
  const float* shift = px + r0 * (kC > 0 ? kC : channels);
  add_block_sums<kC>(r0, r1, channels, block, s1, s2, [=](int64_t i, int64_t c, float& d, float& d2) {
    d = px[i] - shift[c];
    d2 = d * d;
  });
}

// Per-channel backward coefficients as separate arrays (unit-stride loads in the element loop).
struct CoefArrays {
  float* scale;
  float* mean_g;
  float* mean_gx;
};

// dx (and dresidual = g) of rows [r0, r1). dx may be dy itself: element i is read, then written,
// and no element is read after another is written, so the loop carries no dependence (ivdep).
template <bool kRelu, bool kResidual, int kC>
LS_CLONES void grad_elements(const float* px, const float* py, const float* pdy, const float* sm, const float* si,
                   const CoefArrays& k, int64_t r0, int64_t r1, int64_t channels, float* pdx, float* pdr) {
  const int64_t c_n = kC > 0 ? kC : channels;
  for (int64_t r = r0; r < r1; ++r) {
    const int64_t o = r * c_n;
#pragma GCC ivdep
    for (int64_t c = 0; c < c_n; ++c) {
      const float g = bn::relu_grad(pdy[o + c], kRelu ? py[o + c] : 0.f, kRelu);
      const float d = bn::backward_element(g, bn::xhat_of(px[o + c], sm[c], si[c]),
                                           bn::BackwardCoef{k.scale[c], k.mean_g[c], k.mean_gx[c]});
      if (kResidual) pdr[o + c] = g;
      pdx[o + c] = d;
    }
  }
}

// y = relu?(gamma * xhat + beta + residual?) over m rows, specialised per case so that the loop
// vectorizes. y may be x or the residual itself (each element is read, then written: ivdep).
template <bool kResidual, bool kRelu>
LS_CLONES void apply_rows_as(const float* px, const float* pr, const float* mean, const float* invstd, const float* pg,
                   const float* pb, int64_t m, int64_t c_n, float* py) {
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < m; ++r) {
    const int64_t o = r * c_n;
#pragma GCC ivdep
    for (int64_t c = 0; c < c_n; ++c)
      py[o + c] = bn::forward_element(px[o + c], mean[c], invstd[c], pg[c], pb[c], kResidual ? pr[o + c] : 0.f, kRelu);
  }
}
void apply_rows(const float* px, const float* pr, const float* mean, const float* invstd, const float* pg,
                const float* pb, bool relu, int64_t m, int64_t c_n, float* py) {
  if (pr && relu) apply_rows_as<true, true>(px, pr, mean, invstd, pg, pb, m, c_n, py);
  else if (pr) apply_rows_as<true, false>(px, pr, mean, invstd, pg, pb, m, c_n, py);
  else if (relu) apply_rows_as<false, true>(px, pr, mean, invstd, pg, pb, m, c_n, py);
  else apply_rows_as<false, false>(px, pr, mean, invstd, pg, pb, m, c_n, py);
}

double* scratch(const Context& ctx, const Shape& x, const char* op) {
  LS_CHECK(ctx.workspace_bytes() >= scratch_bytes(x),
           op << ": the context's workspace holds " << ctx.workspace_bytes() << " bytes, "
              << scratch_bytes(x) << " needed: make the plan with plan_batchnorm on this context");
  return static_cast<double*>(ctx.workspace());
}
// Calls f(std::integral_constant<int, C>) for the channel counts worth a constant, else with 0.
template <typename F>
void with_channels(int64_t c_n, F&& f) {
  switch (c_n) {
    case 16: return f(std::integral_constant<int, 16>{});
    case 32: return f(std::integral_constant<int, 32>{});
    case 64: return f(std::integral_constant<int, 64>{});
    default: return f(std::integral_constant<int, 0>{});
  }
}
}  // namespace

// The CPU runs its own kernels whatever `kernels` asks (cuDNN's are a CUDA choice).
BatchNormPlan plan_batchnorm(Context& ctx, const Shape& x, DType dtype, BatchNormKernels) {
  LS_CHECK(dtype == DType::f32, "plan_batchnorm: the CPU backend computes in f32, got " << dtype_name(dtype));
  BatchNormPlan plan;
  plan.x = x;
  plan.dtype = dtype;
  plan.kernels = BatchNormKernels::lockstep;
  plan.workspace_bytes = scratch_bytes(x);
  ctx.reserve_workspace(plan.workspace_bytes);
  return plan;
}

void batchnorm_forward_train(Context& ctx, const BatchNormPlan& plan, const BatchNormArgs& args,
                             const Tensor& x, const Tensor* residual, const Tensor& gamma,
                             const Tensor& beta, Tensor& running_mean, Tensor& running_var,
                             Tensor& save_mean, Tensor& save_invstd, Tensor& y) {
  const char* op = "batchnorm_forward_train";
  expect_cpu_f32({&x, &y}, op);
  const int64_t m = bn::rows_of(x.shape()), c_n = x.dim(3);
  double* mean = scratch(ctx, x.shape(), op);
  double* m2 = mean + c_n;
  const float* px = x.data<float>();

  // One pass over fixed row chunks in parallel: each chunk sums x - shift and its square (shift:
  // the chunk's first row, so the sums stay of the order of the spread) in f32 blocks into double
  // partials; the chunks' (count, mean, m2) merge in chunk order (Chan et al.): the same bits for
  // any thread count.
  const int64_t chunks = sum_chunks(x.shape()), per_chunk = (m + chunks - 1) / chunks;
  double* partial = m2 + c_n;  // chunk k: sums of d at [2k C, 2k C + C), of d^2 after
  float* blocks = reinterpret_cast<float*>(partial + 2 * chunks * c_n);  // chunk k's at 2k C
#pragma omp parallel for schedule(static)
  for (int64_t k = 0; k < chunks; ++k) {
    double* s1 = partial + 2 * k * c_n;
    std::fill(s1, s1 + 2 * c_n, 0.0);
    const int64_t r0 = std::min(m, k * per_chunk), r1 = std::min(m, (k + 1) * per_chunk);
    if (r0 < r1)
      with_channels(c_n, [&](auto kc) {
        add_moments<decltype(kc)::value>(px, r0, r1, c_n, blocks + 2 * k * c_n, s1, s1 + c_n);
      });
  }
  for (int64_t c = 0; c < c_n; ++c) {
    double n = 0, mu = 0, q = 0;
    for (int64_t k = 0; k < chunks; ++k) {
      const int64_t r0 = std::min(m, k * per_chunk), r1 = std::min(m, (k + 1) * per_chunk);
      if (r0 >= r1) continue;
      const double nk = double(r1 - r0), s1 = partial[2 * k * c_n + c], s2 = partial[2 * k * c_n + c_n + c];
      const double mean_k = px[r0 * c_n + c] + s1 / nk, m2_k = std::max(0.0, s2 - s1 * s1 / nk);
      const double total = n + nk, delta = mean_k - mu;
      mu += delta * nk / total;
      q += m2_k + delta * delta * n * nk / total;
      n = total;
    }
    mean[c] = mu;
    m2[c] = q;
  }
  float* sm = save_mean.data<float>();
  float* si = save_invstd.data<float>();
  float* rm = running_mean.data<float>();
  float* rv = running_var.data<float>();
  for (int64_t c = 0; c < c_n; ++c)
    bn::finalize_stats<double>(mean[c], m2[c], m, args.eps, args.momentum, &sm[c], &si[c], &rm[c], &rv[c]);

  const float* pg = gamma.data<float>();
  const float* pb = beta.data<float>();
  const float* pr = residual ? residual->data<float>() : nullptr;
  apply_rows(px, pr, sm, si, pg, pb, args.relu, m, c_n, y.data<float>());
}

void batchnorm_forward_infer(Context& ctx, const BatchNormPlan& plan, const BatchNormArgs& args,
                             const Tensor& x, const Tensor* residual, const Tensor& gamma,
                             const Tensor& beta, const Tensor& running_mean,
                             const Tensor& running_var, Tensor& y) {
  const char* op = "batchnorm_forward_infer";
  expect_cpu_f32({&x, &y}, op);
  const int64_t m = bn::rows_of(x.shape()), c_n = x.dim(3);
  const float* px = x.data<float>();
  const float* pg = gamma.data<float>();
  const float* pb = beta.data<float>();
  const float* rm = running_mean.data<float>();
  const float* rv = running_var.data<float>();
  const float* pr = residual ? residual->data<float>() : nullptr;
  // invstd from the running variance once per channel, in the scratch plan_batchnorm reserved.
  float* invstd = reinterpret_cast<float*>(scratch(ctx, x.shape(), op));
  for (int64_t c = 0; c < c_n; ++c) invstd[c] = bn::invstd_of(rv[c], args.eps);
  apply_rows(px, pr, rm, invstd, pg, pb, args.relu, m, c_n, y.data<float>());
}

void batchnorm_backward(Context& ctx, const BatchNormPlan& plan, const BatchNormArgs& args,
                        const Tensor& x, const Tensor& y, const Tensor& dy, const Tensor& gamma,
                        const Tensor&, const Tensor& save_mean, const Tensor& save_invstd, Tensor& dx,
                        Tensor* dresidual, Tensor& dgamma, Tensor& dbeta) {
  const char* op = "batchnorm_backward";
  expect_cpu_f32({&x, &dy, &dx}, op);
  const int64_t m = bn::rows_of(x.shape()), c_n = x.dim(3);
  double* sum_g = scratch(ctx, x.shape(), op);
  double* sum_gx = sum_g + c_n;
  const float* px = x.data<float>();
  const float* py = args.relu ? y.data<float>() : nullptr;  // y is read only for the ReLU mask
  const float* pdy = dy.data<float>();  // may alias dx: every element is read before it is written
  const float* sm = save_mean.data<float>();
  const float* si = save_invstd.data<float>();

  const int64_t chunks = sum_chunks(x.shape()), per_chunk = (m + chunks - 1) / chunks;
  double* partial = sum_gx + c_n;  // chunk k: g sums at [2k C, 2k C + C), g * xhat sums after
  float* blocks = reinterpret_cast<float*>(partial + 2 * chunks * c_n);  // chunk k's at 2k C
#pragma omp parallel for schedule(static)
  for (int64_t k = 0; k < chunks; ++k) {
    double* pg_sum = partial + 2 * k * c_n;
    double* pgx_sum = pg_sum + c_n;
    std::fill(pg_sum, pg_sum + 2 * c_n, 0.0);
    const int64_t r0 = std::min(m, k * per_chunk), r1 = std::min(m, (k + 1) * per_chunk);
    float* block = blocks + 2 * k * c_n;
    with_channels(c_n, [&](auto kc) {
      constexpr int C = decltype(kc)::value;
      if (py) add_grad_sums<true, C>(px, py, pdy, sm, si, r0, r1, c_n, block, pg_sum, pgx_sum);
      else add_grad_sums<false, C>(px, py, pdy, sm, si, r0, r1, c_n, block, pg_sum, pgx_sum);
    });
  }
  for (int64_t c = 0; c < c_n; ++c) sum_g[c] = sum_gx[c] = 0.0;
  for (int64_t k = 0; k < chunks; ++k)
    for (int64_t c = 0; c < c_n; ++c) {
      sum_g[c] += partial[2 * k * c_n + c];
      sum_gx[c] += partial[2 * k * c_n + c_n + c];
    }
  float* pdb = dbeta.data<float>();
  float* pdg = dgamma.data<float>();
  for (int64_t c = 0; c < c_n; ++c) {
    pdb[c] = static_cast<float>(sum_g[c]);
    pdg[c] = static_cast<float>(sum_gx[c]);
  }

  const float* pg = gamma.data<float>();
  float* pdx = dx.data<float>();
  float* pdr = dresidual ? dresidual->data<float>() : nullptr;
  // The per-channel coefficients once, in the partials' space (no longer needed; it holds at
  // least 4 C floats), so the element loop is plain arrays and vectorizes.
  float* coef_space = reinterpret_cast<float*>(partial);
  const CoefArrays coef{coef_space, coef_space + c_n, coef_space + 2 * c_n};
  for (int64_t c = 0; c < c_n; ++c) {
    const bn::BackwardCoef k = bn::backward_coef(pg[c], si[c], pdb[c], pdg[c], m);
    coef.scale[c] = k.scale, coef.mean_g[c] = k.mean_g, coef.mean_gx[c] = k.mean_gx;
  }
  // Rows in fixed chunks over the team; each chunk's loop specialised so it vectorizes.
  const int64_t row_chunks = std::max<int64_t>(1, std::min<int64_t>(64, m)), per = (m + row_chunks - 1) / row_chunks;
#pragma omp parallel for schedule(static)
  for (int64_t k = 0; k < row_chunks; ++k) {
    const int64_t r0 = std::min(m, k * per), r1 = std::min(m, (k + 1) * per);
    with_channels(c_n, [&](auto kc) {
      constexpr int C = decltype(kc)::value;
      if (py && pdr) grad_elements<true, true, C>(px, py, pdy, sm, si, coef, r0, r1, c_n, pdx, pdr);
      else if (py) grad_elements<true, false, C>(px, py, pdy, sm, si, coef, r0, r1, c_n, pdx, pdr);
      else if (pdr) grad_elements<false, true, C>(px, py, pdy, sm, si, coef, r0, r1, c_n, pdx, pdr);
      else grad_elements<false, false, C>(px, py, pdy, sm, si, coef, r0, r1, c_n, pdx, pdr);
    });
  }
}

}  // namespace lockstep::cpu
