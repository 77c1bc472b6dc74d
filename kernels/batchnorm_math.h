// Batch-norm arithmetic shared by the CPU and CUDA backends, so that the CPU tests cover the
// GPU kernels' per-element math: the normalize + affine + residual + ReLU element, the ReLU
// gradient mask, the backward element, the statistics finalization with the running-stat
// update, and the Welford / Chan moment updates the CUDA reductions use (the CPU backend sums
// in double with two passes instead; the tests check that the float Welford/Chan path agrees).
// The argument checks run once, in the dispatcher (kernels/batchnorm.cpp).
//
// Backward is written per channel with mean_g = sum(g) / M and mean_gx = sum(g * xhat) / M:
//   dx = gamma * invstd * (g - mean_g - xhat * mean_gx)
// which is gamma * invstd / M * (M * g - dbeta - xhat * dgamma) without the large M * g term.
#pragma once

#include <cmath>
#include <cstdint>

#include "kernels/half.h"
#include "kernels/tensor.h"

namespace lockstep::bn {

LS_HD float sqrt_of(float v) { return sqrtf(v); }
LS_HD double sqrt_of(double v) { return sqrt(v); }

// y = relu?(gamma * (x - mean) * invstd + beta + residual). NaN propagates through the ReLU.
LS_HD float forward_element(float x, float mean, float invstd, float gamma, float beta,
                            float residual, bool relu) {
  float z = gamma * ((x - mean) * invstd) + beta + residual;
  return (relu && z < 0.f) ? 0.f : z;
}

// Inference normalizes with the running variance: invstd = 1 / sqrt(var + eps).
LS_HD float invstd_of(float var, float eps) { return 1.f / sqrtf(var + eps); }

// The gradient reaching z (and the residual): dy masked by the ReLU, read from the output's sign
// (or from z itself: the same mask, as z > 0 exactly when relu(z) > 0).
LS_HD float relu_grad(float dy, float y, bool relu) { return (relu && !(y > 0.f)) ? 0.f : dy; }

// Where the ReLU mask comes from in a backward pass. from_x: z recomputed from x, the saved
// statistics, gamma and beta (no residual was added), so the output y need not be read: the CUDA
// kernels' choice for a BN + ReLU without residual, one tensor less to stream.
enum class ReluMask { none, from_y, from_x };

// The gradient reaching z under `mask`; y is read only with from_y (pass 0 otherwise).
LS_HD float masked_grad(ReluMask mask, float dy, float x, float y, float mean, float invstd, float gamma,
                        float beta) {
  if (mask == ReluMask::none) return dy;
  const float sign_source = mask == ReluMask::from_x ? forward_element(x, mean, invstd, gamma, beta, 0.f, false) : y;
  return relu_grad(dy, sign_source, true);
}

LS_HD float xhat_of(float x, float mean, float invstd) { return (x - mean) * invstd; }

// Per-channel backward coefficients from dbeta = sum g and dgamma = sum g * xhat over M rows.
struct BackwardCoef {
  float scale;    // gamma * invstd
  float mean_g;   // dbeta / M
  float mean_gx;  // dgamma / M
};
LS_HD BackwardCoef backward_coef(float gamma, float invstd, float dbeta, float dgamma, int64_t m) {
  float inv_m = 1.f / static_cast<float>(m);
  return {gamma * invstd, dbeta * inv_m, dgamma * inv_m};
}
LS_HD float backward_element(float g, float xhat, BackwardCoef k) {
  return k.scale * (g - k.mean_g - xhat * k.mean_gx);
}

// From the batch mean and the sum of squared deviations m2 over m >= 1 rows: the saved
// (mean, invstd) and the running statistics updated as PyTorch does, with the unbiased variance
// m2 / (m - 1) (m2 / m when m == 1). T is double on the CPU, float on the GPU.
template <typename T>
LS_HD void finalize_stats(T mean, T m2, int64_t m, float eps, float momentum, float* save_mean,
                          float* save_invstd, float* running_mean, float* running_var) {
  if (m2 < T(0)) m2 = T(0);  // never negative in exact arithmetic; a NaN stays NaN
  T var = m2 / static_cast<T>(m);
  T unbiased = m > 1 ? m2 / static_cast<T>(m - 1) : var;
  *save_mean = static_cast<float>(mean);
  *save_invstd = static_cast<float>(T(1) / sqrt_of(var + static_cast<T>(eps)));
  T mom = static_cast<T>(momentum);
  *running_mean = static_cast<float>((T(1) - mom) * static_cast<T>(*running_mean) + mom * mean);
  *running_var = static_cast<float>((T(1) - mom) * static_cast<T>(*running_var) + mom * unbiased);
}

// Running moments of a sequence: count n, mean, and m2 = sum of squared deviations from the
// mean. Welford's update for one value, Chan's merge for two partials; both are stable for data
// whose mean is large against its spread (no E[x^2] - E[x]^2 cancellation).
struct Moments {
  float n = 0.f;
  float mean = 0.f;
  float m2 = 0.f;
};
LS_HD void welford_add(Moments& a, float x) {
  a.n += 1.f;
  float delta = x - a.mean;
  a.mean += delta / a.n;
  a.m2 += delta * (x - a.mean);
}
LS_HD void chan_merge(Moments& a, const Moments& b) {
  if (b.n == 0.f) return;
  if (a.n == 0.f) {
    a = b;
    return;
  }
  float n = a.n + b.n;
  float wb = b.n / n;
  float delta = b.mean - a.mean;
  a.mean += delta * wb;
  a.m2 += b.m2 + delta * delta * a.n * wb;
  a.n = n;
}

// Rows per channel, M = N * H * W.
inline int64_t rows_of(const Shape& x) { return x[0] * x[1] * x[2]; }

}  // namespace lockstep::bn
