// Tests of cast and scale_and_check_finite (the ops live in kernels/cpu/cast.cpp and
// kernels/cuda/cast.cu): CPU round trips and every dtype pair against test::rounded(), CUDA
// against CPU bit for bit on values that overflow f16, fall into subnormals or are NaN, and the
// loss-scaling flag on both backends.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "kernels/cast.h"
#include "kernels/copy.h"
#include "tests/kernels/test_util.h"

namespace lockstep {
namespace {

const DType kFloatTypes[] = {DType::f32, DType::bf16, DType::f16};

// Random values over many magnitudes, then the special cases: f16 overflow, subnormals of f16
// and f32, rounding ties, signed zeros, infinities and NaNs of both signs.
std::vector<float> cast_inputs(int64_t n, uint32_t seed) {
  std::vector<float> v = test::random_floats(n, seed, -1.f, 1.f);
  std::mt19937 gen(seed + 1);
  std::uniform_int_distribution<int> exp(-30, 20);
  for (auto& x : v) x = std::ldexp(x, exp(gen));
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const std::vector<float> specials = {
      0.f, -0.f, 1.f, -1.f, 65504.f, 65519.f, 65520.f, -65520.f, 1e5f, -7e4f, 3.4e38f, -3.4e38f,
      1e-5f, 6e-8f, std::ldexp(1.f, -24), std::ldexp(1.f, -25), std::ldexp(1.5f, -25), std::ldexp(1.f, -14),
      1e-40f, -1e-40f, 1e-45f, std::ldexp(1.f, -126), 1.f + 1.f / 256, 1.f + 3.f / 256,
      1.f + std::ldexp(1.f, -11), INFINITY, -INFINITY, nan, -nan};
  for (size_t i = 0; i < specials.size() && i < v.size(); ++i) v[i * 3 % v.size()] = specials[i];
  return v;
}

// The element bit patterns of a tensor of any float dtype on any device, widened to u32.
std::vector<uint32_t> raw_bits(Context& ctx, const Tensor& t) {
  OwnedTensor h(Device::cpu(), t.shape(), t.dtype());
  copy(ctx, t, h);
  std::vector<uint32_t> bits(static_cast<size_t>(t.numel()));
  for (int64_t i = 0; i < t.numel(); ++i) {
    if (t.dtype() == DType::f32) std::memcpy(&bits[i], static_cast<const char*>(h.view().raw()) + 4 * i, 4);
    else bits[i] = static_cast<const uint16_t*>(h.view().raw())[i];
  }
  return bits;
}

bool is_nan_bits(uint32_t b, DType dt) {
  if (dt == DType::f32) return (b & 0x7fffffffu) > 0x7f800000u;
  if (dt == DType::bf16) return (b & 0x7fffu) > 0x7f80u;
  return (b & 0x7fffu) > 0x7c00u;
}

// Bit-identical, except that any NaN matches any NaN: NaN payloads are not specified (the
// hardware conversions return a canonical NaN, the host code keeps the payload).
void expect_same_bits(const std::vector<uint32_t>& got, const std::vector<uint32_t>& want, DType dt,
                      const std::vector<float>& inputs) {
  ASSERT_EQ(got.size(), want.size());
  int bad = 0;
  for (size_t i = 0; i < got.size() && bad < 8; ++i) {
    const bool ok = (is_nan_bits(got[i], dt) && is_nan_bits(want[i], dt)) || got[i] == want[i];
    if (!ok) {
      ++bad;
      ADD_FAILURE() << "element " << i << " (input " << inputs[i] << "): got 0x" << std::hex << got[i]
                    << " want 0x" << want[i] << std::dec;
    }
  }
}

// f32 values -> a host tensor of dtype dt (rounded by the CPU cast).
OwnedTensor host_of(const std::vector<float>& v, DType dt) {
  Context host(Device::cpu());
  OwnedTensor f = test::host_tensor({static_cast<int64_t>(v.size())}, v);
  OwnedTensor t(Device::cpu(), f.shape(), dt);
  cast(host, f, t);
  return t;
}

std::vector<uint32_t> f32_bits_of(const std::vector<float>& v) {
  std::vector<uint32_t> b(v.size());
  for (size_t i = 0; i < v.size(); ++i) b[i] = f32_bits(v[i]);
  return b;
}

TEST(CastCpu, RoundTripsEqualRounded) {
  Context ctx(Device::cpu());
  const int64_t n = 10007;
  const std::vector<float> v = cast_inputs(n, 3);
  for (DType mid : {DType::bf16, DType::f16}) {
    SCOPED_TRACE(std::string(dtype_name(mid)));
    OwnedTensor src = test::host_tensor({n}, v), half(Device::cpu(), {n}, mid), back(Device::cpu(), {n}, DType::f32);
    test::poison(ctx, half);
    test::poison(ctx, back);
    cast(ctx, src, half);
    cast(ctx, half, back);
    expect_same_bits(f32_bits_of(test::host_values(back)), f32_bits_of(test::rounded(v, mid)), DType::f32, v);
  }
}

TEST(CastCpu, KnownValues) {
  Context ctx(Device::cpu());
  // 65520 overflows f16; 1e-40 is 0 in f16 but a bf16 subnormal; 1 + 2^-8 is exact in f16 and a
  // tie in bf16 (to even: 1.0); -0 keeps its sign.
  OwnedTensor src = test::host_tensor({4}, {65520.f, 1e-40f, 1.f + 1.f / 256, -0.f});
  OwnedTensor h(Device::cpu(), {4}, DType::f16), b(Device::cpu(), {4}, DType::bf16);
  cast(ctx, src, h);
  cast(ctx, src, b);
  EXPECT_EQ(raw_bits(ctx, h), (std::vector<uint32_t>{0x7c00u, 0x0000u, 0x3c04u, 0x8000u}));
  EXPECT_EQ(raw_bits(ctx, b), (std::vector<uint32_t>{0x4780u, 0x0001u, 0x3f80u, 0x8000u}));
}

TEST(CastCpu, EveryPairEqualsRoundingThroughF32) {
  Context ctx(Device::cpu());
  const int64_t n = 4099;
  const std::vector<float> v = cast_inputs(n, 11);
  for (DType s : kFloatTypes)
    for (DType d : kFloatTypes) {
      SCOPED_TRACE(std::string(dtype_name(s)) + " -> " + std::string(dtype_name(d)));
      OwnedTensor src = host_of(v, s), dst(Device::cpu(), {n}, d);
      test::poison(ctx, dst);
      cast(ctx, src, dst);
      // The model: round to s, then from those values to d.
      const std::vector<uint32_t> want = raw_bits(ctx, host_of(test::rounded(test::rounded(v, s), d), d));
      expect_same_bits(raw_bits(ctx, dst), want, d, v);
    }
}

TEST(CastCpu, ArgumentErrors) {
  Context ctx(Device::cpu());
  OwnedTensor a(Device::cpu(), {4}, DType::f32), b(Device::cpu(), {5}, DType::bf16);
  OwnedTensor c(Device::cpu(), {4}, DType::i32), flag(Device::cpu(), {1}, DType::i32);
  OwnedTensor flag2(Device::cpu(), {2}, DType::i32), flag_f(Device::cpu(), {1}, DType::f32);
  EXPECT_THROW(cast(ctx, a, b), Error);
  EXPECT_THROW(cast(ctx, a, c), Error);
  EXPECT_THROW(scale_and_check_finite(ctx, a, 2.f, flag2), Error);
  EXPECT_THROW(scale_and_check_finite(ctx, a, 2.f, flag_f), Error);
  EXPECT_THROW(scale_and_check_finite(ctx, c, 2.f, flag), Error);
}

OwnedTensor flag_tensor(Context& ctx, int32_t value) {
  OwnedTensor h(Device::cpu(), {1}, DType::i32);
  *h.data<int32_t>() = value;
  OwnedTensor d(ctx.device(), {1}, DType::i32);
  copy(ctx, h, d);
  return d;
}

int32_t flag_value(Context& ctx, const Tensor& t) {
  OwnedTensor h(Device::cpu(), {1}, DType::i32);
  copy(ctx, t, h);
  return *h.data<int32_t>();
}

// Runs scale_and_check_finite on ctx for `v` with a flag starting at `start`; returns the
// scaled values and the flag.
std::pair<std::vector<float>, int32_t> scale_check(Context& ctx, const std::vector<float>& v, float scale,
                                                   int32_t start) {
  const int64_t n = static_cast<int64_t>(v.size());
  OwnedTensor x = test::device_tensor(ctx, {n}, v);
  OwnedTensor flag = flag_tensor(ctx, start);
  scale_and_check_finite(ctx, x, scale, flag);
  return {test::to_host_f32(ctx, x), flag_value(ctx, flag)};
}

void check_scale_and_flag(Context& ctx) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  for (int64_t n : {1, 7, 100003}) {
    SCOPED_TRACE(n);
    std::vector<float> v = test::random_floats(n, static_cast<uint32_t>(n), -100.f, 100.f);
    std::vector<float> scaled = v;
    for (auto& x : scaled) x *= 0.125f;  // a power of two: exact
    // Finite: scaled, flag untouched (0 stays 0, a stale 5 stays 5).
    auto [out, flag] = scale_check(ctx, v, 0.125f, 0);
    EXPECT_EQ(out, scaled);
    EXPECT_EQ(flag, 0);
    EXPECT_EQ(scale_check(ctx, v, 0.125f, 5).second, 5);
    // One Inf or one NaN, first, in the middle or last: flag set, the finite rest still scaled.
    for (float bad : {INFINITY, -INFINITY, nan}) {
      for (int64_t at : {int64_t{0}, n / 2, n - 1}) {
        std::vector<float> w = v;
        w[at] = bad;
        auto [o, f] = scale_check(ctx, w, 0.125f, 0);
        EXPECT_EQ(f, 1) << "bad value " << bad << " at " << at;
        EXPECT_FALSE(std::isfinite(o[at]));
        for (int64_t i = 0; i < n; ++i)
          if (i != at) {
            ASSERT_EQ(o[i], scaled[i]) << i;
          }
      }
    }
  }
}

TEST(CastCpu, ScaleAndCheckFinite) {
  Context ctx(Device::cpu());
  check_scale_and_flag(ctx);
}

TEST(CastCuda, EveryPairMatchesCpuBitForBit) {
  LS_REQUIRE_GPU();
  Context cpu(Device::cpu());
  Context gpu(Device::cuda(0));
  for (int64_t n : {1, 33, 1000003}) {
    const std::vector<float> v = cast_inputs(n, static_cast<uint32_t>(n) + 5);
    for (DType s : kFloatTypes)
      for (DType d : kFloatTypes) {
        SCOPED_TRACE(std::to_string(n) + " " + std::string(dtype_name(s)) + " -> " + std::string(dtype_name(d)));
        OwnedTensor src_c = host_of(v, s), dst_c(Device::cpu(), {n}, d);
        cast(cpu, src_c, dst_c);
        OwnedTensor src_g(gpu.device(), {n}, s), dst_g(gpu.device(), {n}, d);
        copy(gpu, src_c, src_g);
        test::poison(gpu, dst_g);
        cast(gpu, src_g, dst_g);
        expect_same_bits(raw_bits(gpu, dst_g), raw_bits(cpu, dst_c), d, v);
      }
  }
}

TEST(CastCuda, ScaleAndCheckFinite) {
  LS_REQUIRE_GPU();
  Context gpu(Device::cuda(0));
  check_scale_and_flag(gpu);
}

TEST(CastCuda, ArgumentErrors) {
  LS_REQUIRE_GPU();
  Context gpu(Device::cuda(0));
  OwnedTensor a(gpu.device(), {4}, DType::f32), host(Device::cpu(), {4}, DType::bf16);
  OwnedTensor flag_host(Device::cpu(), {1}, DType::i32);
  EXPECT_THROW(cast(gpu, a, host), Error);
  EXPECT_THROW(scale_and_check_finite(gpu, a, 2.f, flag_host), Error);
}

}  // namespace
}  // namespace lockstep
