// Tests of kernels/ core: dtypes and half conversions, shapes, devices, memory, contexts,
// Philox, copies, and the CUDA check macros.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>

#include "kernels/context.h"
#include "kernels/copy.h"
#include "kernels/half.h"
#include "kernels/linear.h"
#include "kernels/memory.h"
#include "kernels/philox.h"
#include "tests/kernels/test_util.h"
#if LOCKSTEP_HAVE_CUDA
#include "kernels/cuda/check.h"
#endif

namespace lockstep {
namespace {

TEST(DType, SizesAndNames) {
  EXPECT_EQ(dtype_size(DType::f32), 4u);
  EXPECT_EQ(dtype_size(DType::bf16), 2u);
  EXPECT_EQ(dtype_size(DType::u8), 1u);
  EXPECT_EQ(dtype_name(DType::u32), "u32");
  EXPECT_EQ(parse_dtype("bf16"), DType::bf16);
  EXPECT_EQ(parse_dtype("fp16"), DType::f16);
  EXPECT_THROW(parse_dtype("fp8"), Error);
}

TEST(Half, Bf16KnownValues) {
  EXPECT_EQ(bf16_from_f32(1.0f), 0x3f80);
  EXPECT_EQ(bf16_from_f32(-2.0f), 0xc000);
  // 1 + 2^-8 is exactly halfway between bf16 1.0 and 1.0078125: ties go to even (1.0).
  EXPECT_EQ(bf16_from_f32(1.0f + 1.0f / 256), 0x3f80);
  EXPECT_EQ(bf16_from_f32(1.0f + 3.0f / 256), 0x3f82);
  EXPECT_TRUE(std::isnan(f32_from_bf16(bf16_from_f32(std::numeric_limits<float>::quiet_NaN()))));
  EXPECT_EQ(f32_from_bf16(bf16_from_f32(INFINITY)), INFINITY);
}

TEST(Half, F16KnownValues) {
  EXPECT_EQ(f16_from_f32(1.0f), 0x3c00);
  EXPECT_EQ(f16_from_f32(-2.0f), 0xc000);
  EXPECT_EQ(f16_from_f32(65504.0f), 0x7bff);
  EXPECT_EQ(f16_from_f32(65520.0f), 0x7c00);            // rounds up to Inf
  EXPECT_EQ(f16_from_f32(std::ldexp(1.0f, -24)), 0x0001);  // smallest subnormal
  EXPECT_EQ(f16_from_f32(std::ldexp(1.0f, -25)), 0x0000);  // halfway to it: ties to even (0)
  EXPECT_EQ(f16_from_f32(std::ldexp(1.5f, -25)), 0x0001);
  EXPECT_EQ(f16_from_f32(std::ldexp(1.0f, -14)), 0x0400);  // smallest normal
  EXPECT_EQ(f16_from_f32(1.0f + std::ldexp(1.0f, -11)), 0x3c00);  // tie to even
  EXPECT_EQ(f16_from_f32(1.0f + 3 * std::ldexp(1.0f, -11)), 0x3c02);
  EXPECT_TRUE(std::isnan(f32_from_f16(f16_from_f32(NAN))));
}

TEST(Half, F16RoundTripsEveryValue) {
  for (uint32_t h = 0; h < 0x10000; ++h) {
    float f = f32_from_f16(static_cast<uint16_t>(h));
    if (std::isnan(f)) continue;
    ASSERT_EQ(f16_from_f32(f), h) << "half bits " << h;
  }
}

TEST(Half, Bf16RoundTripsEveryValue) {
  for (uint32_t h = 0; h < 0x10000; ++h) {
    float f = f32_from_bf16(static_cast<uint16_t>(h));
    if (std::isnan(f)) continue;
    ASSERT_EQ(bf16_from_f32(f), h) << "bf16 bits " << h;
  }
}

TEST(Shape, NumelRankAndErrors) {
  Shape s{2, 3, 4, 5};
  EXPECT_EQ(s.rank(), 4);
  EXPECT_EQ(s.numel(), 120);
  EXPECT_EQ(s.str(), "(2, 3, 4, 5)");
  EXPECT_EQ(Shape{}.numel(), 1);
  EXPECT_THROW((Shape{1, -1}), Error);
  EXPECT_THROW(s[4], Error);
}

TEST(Device, Parse) {
  EXPECT_EQ(Device::parse("cpu"), Device::cpu());
  EXPECT_EQ(Device::parse("cuda"), Device::cuda(0));
  EXPECT_EQ(Device::parse("cuda:3"), Device::cuda(3));
  EXPECT_THROW(Device::parse("cuda:"), Error);
  EXPECT_THROW(Device::parse("tpu"), Error);
}

TEST(Device, GpuStatusGivesAReasonWhenAbsent) {
  const GpuStatus& s = gpu_status();
  if (s.available) {
    EXPECT_GT(s.count, 0);
    EXPECT_TRUE(s.reason.empty());
  } else {
    EXPECT_FALSE(s.reason.empty());
    EXPECT_THROW(Context(Device::cuda(0)), Error);
  }
}

TEST(Tensor, ViewsReshapeAndSlice) {
  OwnedTensor t(Device::cpu(), {2, 6}, DType::f32);
  for (int i = 0; i < 12; ++i) t.data<float>()[i] = static_cast<float>(i);
  Tensor r = t.view().reshape({3, 4});
  EXPECT_EQ(r.data<float>(), t.data<float>());
  Tensor s = t.view().slice(5, 3);
  EXPECT_EQ(s.data<float>()[0], 5.0f);
  EXPECT_THROW(t.view().reshape({5}), Error);
  EXPECT_THROW(t.view().slice(10, 3), Error);
  EXPECT_THROW(t.view().data<int32_t>(), Error);
}

TEST(Arena, MeasureThenAllocateAligned) {
  Arena measure;
  measure.alloc({3}, DType::f32);
  measure.alloc({10}, DType::u8);
  EXPECT_EQ(measure.used(), Arena::kAlign + 10);
  Arena arena(Device::cpu(), measure.used());
  Tensor a = arena.alloc({3}, DType::f32);
  Tensor b = arena.alloc({10}, DType::u8);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(b.raw()) % Arena::kAlign, 0u);
  EXPECT_EQ(static_cast<char*>(b.raw()) - static_cast<char*>(a.raw()), static_cast<ptrdiff_t>(Arena::kAlign));
  EXPECT_THROW(arena.alloc({1}, DType::u8), Error);
}

TEST(Context, WorkspaceGrowsAndRngOffsetsAreDisjoint) {
  Context ctx(Device::cpu(), 42);
  EXPECT_EQ(ctx.workspace_bytes(), 0u);
  ctx.reserve_workspace(1000);
  EXPECT_GE(ctx.workspace_bytes(), 1000u);
  ctx.reserve_workspace(10);
  EXPECT_GE(ctx.workspace_bytes(), 1000u);
  EXPECT_EQ(ctx.take_rng_offset(5), 0u);
  EXPECT_EQ(ctx.take_rng_offset(5), 5u);
  EXPECT_THROW(ctx.cuda(), Error);
}

TEST(Philox, KnownAnswer) {
  // Random123's known-answer vector for philox4x32_10 with zero counter and key.
  Philox4 r = philox4x32_10(0, 0);
  EXPECT_EQ(r.v[0], 0x6627e8d5u);
  EXPECT_EQ(r.v[1], 0xe169c58du);
  EXPECT_EQ(r.v[2], 0xbc57ac4cu);
  EXPECT_EQ(r.v[3], 0x9b00dbd8u);
  EXPECT_GT(philox_uniform(0), 0.0f);
  EXPECT_LE(philox_uniform(0xffffffffu), 1.0f);
}

TEST(Copy, HostToHostAndFill) {
  Context ctx(Device::cpu());
  OwnedTensor a = test::host_tensor({4}, {1, 2, 3, 4});
  OwnedTensor b(Device::cpu(), {4}, DType::f32);
  copy(ctx, a, b);
  EXPECT_EQ(test::host_values(b), (std::vector<float>{1, 2, 3, 4}));
  test::poison(ctx, b);
  for (float v : test::host_values(b)) EXPECT_TRUE(std::isnan(v));
  OwnedTensor c(Device::cpu(), {5}, DType::f32);
  EXPECT_THROW(copy(ctx, a, c), Error);
}

TEST(Copy, HostDeviceRoundTrip) {
  LS_REQUIRE_GPU();
  Context ctx(Device::cuda(0));
  std::vector<float> v = test::random_floats(1001, 7);
  OwnedTensor d = test::device_tensor(ctx, {1001}, v);
  EXPECT_EQ(test::to_host_f32(ctx, d), v);
  test::poison(ctx, d);
  for (float x : test::to_host_f32(ctx, d)) EXPECT_TRUE(std::isnan(x));
}

// Parameter-server shards use streams-only contexts: copies and our own kernels work there, and
// an op that needs a library handle says which context lacks it instead of passing cuBLAS a null.
TEST(Context, StreamsOnlyCudaContextCopiesAndRefusesLibraryOps) {
  LS_REQUIRE_GPU();
  Context ctx(Device::cuda(0), 0, ContextLibraries::streams);
  std::vector<float> v = test::random_floats(300, 11);
  OwnedTensor d = test::device_tensor(ctx, {300}, v);
  EXPECT_EQ(test::to_host_f32(ctx, d), v);
  OwnedTensor x = test::device_tensor(ctx, {2, 3}, test::random_floats(6, 12));
  OwnedTensor w = test::device_tensor(ctx, {4, 3}, test::random_floats(12, 13));
  OwnedTensor y(Device::cuda(0), {2, 4}, DType::f32);
  try {
    Tensor yv = y.view();
    linear_forward(ctx, x, w, nullptr, yv);
    FAIL() << "a streams-only context ran a cuBLAS op";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("streams only"), std::string::npos) << e.what();
  }
}

#if LOCKSTEP_HAVE_CUDA
TEST(CudaCheck, ThrowsWithLibraryStatementAndLocation) {
  try {
    CUDA_CHECK(cudaErrorInvalidValue);
    FAIL() << "CUDA_CHECK did not throw";
  } catch (const Error& e) {
    std::string m = e.what();
    EXPECT_NE(m.find("CUDA error 1"), std::string::npos) << m;
    EXPECT_NE(m.find("cudaErrorInvalidValue"), std::string::npos) << m;
    EXPECT_NE(m.find("core_test.cpp"), std::string::npos) << m;
  }
  EXPECT_THROW(CUDNN_CHECK(CUDNN_STATUS_BAD_PARAM), Error);
  EXPECT_THROW(CUBLAS_CHECK(CUBLAS_STATUS_INVALID_VALUE), Error);
  try {
    NCCL_CHECK(ncclInvalidArgument);
    FAIL() << "NCCL_CHECK did not throw";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("NCCL error 4"), std::string::npos) << e.what();
  }
}
#endif

}  // namespace
}  // namespace lockstep
