// pad_channels / slice_channels and space-to-depth: exact on the CPU, and the CUDA ops equal the
// CPU's bit for bit (copies and zeros) for every float dtype, on fresh random data with poisoned
// outputs. A stride-2 convolution equals the stride-1 one over the rearranged input and weight.
#include <gtest/gtest.h>

#include "kernels/channels.h"
#include "kernels/conv.h"
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

// dst[n][b][e][(p * 2 + q) * C + c] = src[n][2b + p - pad][2e + q - pad][c], zero outside src and
// in the channels past 4C; and the gather back restores src.
TEST(SpaceToDepth, RearrangesAndGathersBackOnTheCpu) {
  Context ctx(Device::cpu());
  const int64_t n = 2, h = 5, w = 7, c = 3;
  const std::vector<float> v = test::random_floats(n * h * w * c, 3);
  OwnedTensor x = test::host_tensor({n, h, w, c}, v);
  for (int pad = 0; pad <= 4; ++pad) {
    const int64_t hb = (h - 1 + pad) / 2 + 2, wb = (w - 1 + pad) / 2 + 1, cd = 16;  // one spare block row
    OwnedTensor xs(Device::cpu(), {n, hb, wb, cd}, DType::f32);
    fill_bytes(ctx, xs, 0xFF);
    space_to_depth2(ctx, x, pad, xs);
    const float* d = xs.data<float>();
    for (int64_t i = 0; i < n; ++i)
      for (int64_t b = 0; b < hb; ++b)
        for (int64_t e = 0; e < wb; ++e)
          for (int64_t k = 0; k < cd; ++k) {
            float want = 0.f;
            const int64_t phase = k / c, y = 2 * b + phase / 2 - pad, xx = 2 * e + phase % 2 - pad;
            if (k < 4 * c && y >= 0 && y < h && xx >= 0 && xx < w) want = v[size_t(((i * h + y) * w + xx) * c + k % c)];
            ASSERT_EQ(d[((i * hb + b) * wb + e) * cd + k], want) << "pad " << pad << " at " << i << "," << b << "," << e
                                                                 << "," << k;
          }
    OwnedTensor back(Device::cpu(), {n, h, w, c}, DType::f32);
    fill_bytes(ctx, back, 0xFF);
    depth_to_space2(ctx, xs, pad, back);
    EXPECT_EQ(test::host_values(back), v) << "pad " << pad;
  }
}

TEST(SpaceToDepth, ShapesThatDoNotFitAreRefused) {
  Context ctx(Device::cpu());
  OwnedTensor x(Device::cpu(), {1, 4, 4, 3}, DType::f32), narrow(Device::cpu(), {1, 2, 2, 8}, DType::f32),
      small(Device::cpu(), {1, 2, 2, 12}, DType::f32), other_n(Device::cpu(), {2, 3, 3, 12}, DType::f32);
  EXPECT_THROW(space_to_depth2(ctx, x, 0, narrow), Error);   // 12 channels into 8
  EXPECT_THROW(space_to_depth2(ctx, x, 0, other_n), Error);  // batch 1 into 2
  EXPECT_THROW(space_to_depth2(ctx, x, -1, small), Error);
  EXPECT_THROW(depth_to_space2(ctx, small, 1, x), Error);    // row 3 shifted by 1 is block 2 of 2
  EXPECT_NO_THROW(depth_to_space2(ctx, small, 0, x));
}

// The stem's trick: a stride-2 convolution (kernel R, padding P) is the stride-1, unpadded one of
// kernel (R + a + 1) / 2 over space_to_depth2(x, P + a) and space_to_depth2(w, a), a = P % 2; and
// its weight gradient is depth_to_space2 of the rearranged one. Exact on small integers (every sum
// is exact in fp32, whatever the order), odd and even sizes, odd and even kernels.
TEST(SpaceToDepth, AStrideTwoConvolutionIsAStrideOneConvolutionOverFourTimesTheChannels) {
  Context ctx(Device::cpu());
  struct Case { int h, w, r, pad; };
  for (const Case& t : {Case{9, 11, 7, 3}, Case{10, 10, 7, 3}, Case{8, 7, 3, 1}, Case{9, 9, 5, 2}, Case{6, 5, 1, 0},
                        Case{12, 12, 4, 1}}) {
    ConvShape plain;
    plain.n = 2, plain.h = t.h, plain.w = t.w, plain.c = 3, plain.k = 5, plain.r = plain.s = t.r;
    plain.stride_h = plain.stride_w = 2, plain.pad_h = plain.pad_w = t.pad;
    const int a = t.pad % 2, rb = (t.r + a + 1) / 2;
    ConvShape s2d;
    s2d.n = 2, s2d.h = plain.out_h() + rb - 1, s2d.w = plain.out_w() + rb - 1, s2d.c = 16, s2d.k = 5;
    s2d.r = s2d.s = rb;
    ASSERT_EQ(s2d.y_shape(), plain.y_shape());
    const ConvPlan pp = plan_conv2d(ctx, plain, DType::f32), ps = plan_conv2d(ctx, s2d, DType::f32);

    OwnedTensor x = test::host_tensor(plain.x_shape(), test::random_small_ints(plain.x_shape().numel(), 11));
    OwnedTensor w = test::host_tensor(plain.w_shape(), test::random_small_ints(plain.w_shape().numel(), 12));
    OwnedTensor dy = test::host_tensor(plain.y_shape(), test::random_small_ints(plain.y_shape().numel(), 13));
    OwnedTensor xs(Device::cpu(), s2d.x_shape(), DType::f32), ws(Device::cpu(), s2d.w_shape(), DType::f32);
    space_to_depth2(ctx, x, t.pad + a, xs);
    space_to_depth2(ctx, w, a, ws);

    OwnedTensor y(Device::cpu(), plain.y_shape(), DType::f32), ys(Device::cpu(), plain.y_shape(), DType::f32);
    conv2d_forward(ctx, pp, x, w, y);
    conv2d_forward(ctx, ps, xs, ws, ys);
    EXPECT_EQ(test::host_values(ys), test::host_values(y)) << plain.str();

    OwnedTensor dw(Device::cpu(), plain.w_shape(), DType::f32), dws(Device::cpu(), s2d.w_shape(), DType::f32),
        dw_back(Device::cpu(), plain.w_shape(), DType::f32);
    conv2d_backward_filter(ctx, pp, x, dy, dw);
    conv2d_backward_filter(ctx, ps, xs, dy, dws);
    depth_to_space2(ctx, dws, a, dw_back);
    EXPECT_EQ(test::host_values(dw_back), test::host_values(dw)) << plain.str();
  }
}

TEST(SpaceToDepth, CudaMatchesTheCpu) {
  LS_REQUIRE_GPU();
  Context host(Device::cpu());
  Context ctx(Device::cuda(0));
  for (DType dt : {DType::f32, DType::bf16, DType::f16}) {
    const Shape plain{4, 15, 13, 3}, rearranged{4, 11, 10, 16};
    const std::vector<float> v = test::rounded(test::random_floats(plain.numel(), 8), dt);
    OwnedTensor x = test::device_tensor(ctx, plain, v, dt), xc = test::host_tensor(plain, v);
    OwnedTensor xs(ctx.device(), rearranged, dt), xsc(Device::cpu(), rearranged, DType::f32);
    fill_bytes(ctx, xs, 0xFF);
    space_to_depth2(ctx, x, 3, xs);
    space_to_depth2(host, xc, 3, xsc);
    EXPECT_EQ(test::to_host_f32(ctx, xs), test::host_values(xsc)) << dtype_name(dt);
    OwnedTensor back(ctx.device(), plain, dt);
    fill_bytes(ctx, back, 0xFF);
    depth_to_space2(ctx, xs, 3, back);
    EXPECT_EQ(test::to_host_f32(ctx, back), v) << dtype_name(dt);
  }
}

}  // namespace
}  // namespace lockstep
