// Shared test helpers for kernels/: random host data, device round trips, poisoning, error
// norms, the GPU skip, a central finite-difference gradient checker, and misaligned copies
// (the CUDA kernels' scalar paths).
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <deque>
#include <functional>
#include <random>
#include <vector>

#include "kernels/cast.h"
#include "kernels/context.h"
#include "kernels/copy.h"
#include "kernels/half.h"
#include "kernels/memory.h"

namespace lockstep::test {

// Skips the test, with the reason, where no usable GPU is present.
#define LS_REQUIRE_GPU()                                                     \
  do {                                                                       \
    if (!::lockstep::gpu_status().available)                                 \
      GTEST_SKIP() << "needs a GPU: " << ::lockstep::gpu_status().reason;    \
  } while (0)

inline std::vector<float> random_floats(int64_t n, uint32_t seed, float lo = -1.f, float hi = 1.f) {
  std::mt19937 gen(seed);
  std::uniform_real_distribution<float> d(lo, hi);
  std::vector<float> v(static_cast<size_t>(n));
  for (auto& x : v) x = d(gen);
  return v;
}

// Small integers: GEMM and conv results on them are exact in fp32 (and in bf16 inputs).
inline std::vector<float> random_small_ints(int64_t n, uint32_t seed, int lo = -3, int hi = 3) {
  std::mt19937 gen(seed);
  std::uniform_int_distribution<int> d(lo, hi);
  std::vector<float> v(static_cast<size_t>(n));
  for (auto& x : v) x = static_cast<float>(d(gen));
  return v;
}

// Rounds every value to what `dt` can hold, so a CPU reference sees the GPU's inputs exactly.
inline std::vector<float> rounded(std::vector<float> v, DType dt) {
  for (auto& x : v) {
    if (dt == DType::bf16) x = f32_from_bf16(bf16_from_f32(x));
    if (dt == DType::f16) x = f32_from_f16(f16_from_f32(x));
  }
  return v;
}

inline OwnedTensor host_tensor(Shape shape, const std::vector<float>& values) {
  OwnedTensor t(Device::cpu(), shape, DType::f32);
  EXPECT_EQ(static_cast<int64_t>(values.size()), shape.numel());
  std::copy(values.begin(), values.end(), t.data<float>());
  return t;
}

inline std::vector<float> host_values(const Tensor& t) {
  const float* p = t.data<float>();
  return std::vector<float>(p, p + t.numel());
}

// A tensor of dtype `dt` on ctx's device holding `values` (rounded to dt).
inline OwnedTensor device_tensor(Context& ctx, Shape shape, const std::vector<float>& values,
                                 DType dt = DType::f32) {
  Context host(Device::cpu());
  OwnedTensor f(Device::cpu(), shape, DType::f32);
  std::copy(values.begin(), values.end(), f.data<float>());
  OwnedTensor h(Device::cpu(), shape, dt);
  cast(host, f, h);
  OwnedTensor d(ctx.device(), shape, dt);
  copy(ctx, h, d);
  return d;
}

// Any float tensor on any device -> host f32 values.
inline std::vector<float> to_host_f32(Context& ctx, const Tensor& t) {
  Context host(Device::cpu());
  OwnedTensor h(Device::cpu(), t.shape(), t.dtype());
  copy(ctx, t, h);
  OwnedTensor f(Device::cpu(), t.shape(), DType::f32);
  cast(host, h, f);
  return host_values(f);
}

// Fills with 0xFF bytes: NaN in every float dtype, so an element an op forgot to write fails.
inline void poison(Context& ctx, Tensor& t) { fill_bytes(ctx, t, 0xFF); }

// ||out - ref|| / ||ref|| (||out - ref|| when ref is zero); infinity if out has a NaN or Inf.
inline double rel_error(const std::vector<float>& out, const std::vector<float>& ref) {
  EXPECT_EQ(out.size(), ref.size());
  double num = 0, den = 0;
  for (size_t i = 0; i < out.size() && i < ref.size(); ++i) {
    if (!std::isfinite(out[i])) return INFINITY;
    double d = static_cast<double>(out[i]) - ref[i];
    num += d * d;
    den += static_cast<double>(ref[i]) * ref[i];
  }
  return den > 0 ? std::sqrt(num / den) : std::sqrt(num);
}

// Tolerances of the issue: fp32 (tf32 off) and the 16-bit types.
inline double tolerance(DType dt) { return dt == DType::f32 ? 1e-4 : 1e-2; }

struct GradCheckOptions {
  float eps = 1e-2f;        // central-difference step
  double tol = 1e-2;        // |fd - analytic| <= tol * max(1, |fd|)
  int max_checks = 256;     // elements checked, spread evenly over x
};

// Compares `analytic` (dL/dx from backward) with central differences of `loss` (which recomputes
// the forward from the current contents of x, in double) for up to max_checks elements of x.
inline void expect_gradient(const std::function<double()>& loss, float* x, int64_t n,
                            const std::vector<float>& analytic, const char* what,
                            GradCheckOptions o = {}) {
  ASSERT_EQ(static_cast<int64_t>(analytic.size()), n) << what;
  int64_t step = std::max<int64_t>(1, n / o.max_checks);
  int failures = 0;
  for (int64_t i = 0; i < n && failures < 5; i += step) {
    float saved = x[i];
    x[i] = saved + o.eps;
    double lp = loss();
    x[i] = saved - o.eps;
    double lm = loss();
    x[i] = saved;
    double fd = (lp - lm) / (2.0 * o.eps);
    double err = std::fabs(fd - analytic[i]);
    if (err > o.tol * std::max(1.0, std::fabs(fd))) {
      ++failures;
      ADD_FAILURE() << what << "[" << i << "]: analytic " << analytic[i] << " vs finite difference " << fd;
    }
  }
}

// sum_i w_i y_i in double: the scalar whose gradient with respect to y is w.
inline double weighted_sum(const std::vector<float>& y, const std::vector<float>& w) {
  double s = 0;
  for (size_t i = 0; i < y.size(); ++i) s += static_cast<double>(y[i]) * w[i];
  return s;
}

// A copy of t one element past its 16-byte aligned start: the CUDA kernels take their scalar
// path on it whatever the channel count.
struct Shifted {
  OwnedTensor buf;
  Tensor view;
};
// place(t) is t, or with misalign its shifted copy (kept alive as long as the Placer).
class Placer {
 public:
  Placer(Context& ctx, bool misalign) : ctx_(ctx), misalign_(misalign) {}
  Tensor& operator()(Tensor& t) {
    if (!misalign_) return t;
    Shifted& m = keep_.emplace_back(Shifted{OwnedTensor(t.device(), {t.numel() + 1}, t.dtype()), {}});
    m.view = m.buf.view().slice(1, t.numel()).reshape(t.shape());
    copy(ctx_, t, m.view);
    return m.view;
  }

 private:
  Context& ctx_;
  bool misalign_;
  std::deque<Shifted> keep_;  // references to its elements stay valid as it grows
};

}  // namespace lockstep::test
