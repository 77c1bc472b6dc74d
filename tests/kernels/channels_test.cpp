// pad_channels / slice_channels: exact on the CPU, and the CUDA ops equal the CPU's bit for bit
// (copies and zeros) for every float dtype, on fresh random data with poisoned outputs.
#include <gtest/gtest.h>

#include "kernels/channels.h"
#include "tests/kernels/test_util.h"

namespace lockstep {
namespace {

TEST(Channels, PadThenSliceOnTheCpu) {
  Context ctx(Device::cpu());
  const std::vector<float> v = test::random_floats(5 * 7 * 3, 1);
  OwnedTensor x = test::host_tensor({5, 7, 3}, v);
  OwnedTensor wide(Device::cpu(), {5, 7, 8}, DType::f32);
  fill_bytes(ctx, wide, 0xFF);
  pad_channels(ctx, x, wide);
  const float* w = wide.data<float>();
  for (int64_t r = 0; r < 35; ++r)
    for (int c = 0; c < 8; ++c) ASSERT_EQ(w[r * 8 + c], c < 3 ? v[size_t(r * 3 + c)] : 0.f) << r << "," << c;
  OwnedTensor back(Device::cpu(), {5, 7, 3}, DType::f32);
  fill_bytes(ctx, back, 0xFF);
  slice_channels(ctx, wide, back);
  EXPECT_EQ(test::host_values(back), v);
}

// No channels at all padded to 4: every row of dst is zeros (the rows come from the leading
// dimensions, as the CUDA kernel's do from dst's size).
TEST(Channels, PaddingZeroChannelsWritesZeroRows) {
  Context ctx(Device::cpu());
  OwnedTensor empty(Device::cpu(), {2, 3, 0}, DType::f32), wide(Device::cpu(), {2, 3, 4}, DType::f32);
  fill_bytes(ctx, wide, 0xFF);
  pad_channels(ctx, empty, wide);
  EXPECT_EQ(test::host_values(wide), std::vector<float>(24, 0.0f));
}

TEST(Channels, ShapesThatDoNotFitAreRefused) {
  Context ctx(Device::cpu());
  OwnedTensor a(Device::cpu(), {4, 3}, DType::f32), b(Device::cpu(), {5, 8}, DType::f32),
      c(Device::cpu(), {4, 2}, DType::f32);
  EXPECT_THROW(pad_channels(ctx, a, b), Error);  // leading dimensions differ
  EXPECT_THROW(pad_channels(ctx, a, c), Error);  // 3 channels into 2
  EXPECT_THROW(slice_channels(ctx, c, a), Error);
}

TEST(Channels, CudaMatchesTheCpu) {
  LS_REQUIRE_GPU();
  Context host(Device::cpu());
  Context ctx(Device::cuda(0));
  for (DType dt : {DType::f32, DType::bf16, DType::f16}) {
    const std::vector<float> v = test::rounded(test::random_floats(64 * 9 * 3, 7), dt);
    OwnedTensor x = test::device_tensor(ctx, {64, 9, 3}, v, dt);
    OwnedTensor wide(ctx.device(), {64, 9, 4}, dt);
    fill_bytes(ctx, wide, 0xFF);
    pad_channels(ctx, x, wide);
    OwnedTensor xc = test::host_tensor({64, 9, 3}, v), wc(Device::cpu(), {64, 9, 4}, DType::f32);
    pad_channels(host, xc, wc);
    EXPECT_EQ(test::to_host_f32(ctx, wide), test::host_values(wc)) << dtype_name(dt);
    OwnedTensor back(ctx.device(), {64, 9, 3}, dt);
    fill_bytes(ctx, back, 0xFF);
    slice_channels(ctx, wide, back);
    EXPECT_EQ(test::to_host_f32(ctx, back), v) << dtype_name(dt);
  }
}

}  // namespace
}  // namespace lockstep
