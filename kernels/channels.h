// Rearranging NHWC tensors for the first convolution, whose 3 image channels cuDNN's tensor-core
// kernels handle poorly: padding the channel (last) dimension of an image or KRSC weight with zero
// channels to 4 or 8 and slicing the padded weight gradient back; or space-to-depth by 2, which
// turns a stride-2 convolution into a stride-1 one over 4x the channels. Exact on every backend:
// only copies and zeros.
#pragma once

#include "kernels/context.h"
#include "kernels/tensor.h"

namespace lockstep {

// dst (..., Cp) <- src (..., C) with channels C..Cp-1 zero; Cp >= C, the same leading dimensions
// and dtype.
void pad_channels(Context& ctx, const Tensor& src, Tensor& dst);
// dst (..., C) <- the first C channels of src (..., Cp); Cp >= C, the same leading dimensions
// and dtype.
void slice_channels(Context& ctx, const Tensor& src, Tensor& dst);

// Space-to-depth by 2, shifted by `pad` pixels: dst (N, Hb, Wb, Cd) <- src (N, H, W, C) with
//   dst[n][b][d][(p * 2 + q) * C + c] = src[n][2b + p - pad][2d + q - pad][c]
// where that pixel lies inside src and 0 where it does not; channels 4C..Cd-1 are zero (Cd >= 4C).
// Hb and Wb are dst's: any size, the pixels past src's edges read as zeros. A stride-2 convolution
// with kernel R and padding P is then a stride-1 one without padding, with kernel (R + a + 1) / 2
// (a = P % 2) over space_to_depth2(x, P + a) and the weight space_to_depth2(w, a) (KRSC is NHWC
// with N = K).
void space_to_depth2(Context& ctx, const Tensor& src, int pad, Tensor& dst);
// Its gather back: dst (N, H, W, C) <- src (N, Hb, Wb, Cd) with
//   dst[n][h][w][c] = src[n][(h + pad) / 2][(w + pad) / 2][(((h + pad) % 2) * 2 + (w + pad) % 2) * C + c].
// Every such position must lie inside src. Each element of dst comes from the one src element
// space_to_depth2 put it in, so this is also the gradient of space_to_depth2's input where the
// forward copied every src pixel once: the weight gradient of the rearranged convolution
// folded back.
void depth_to_space2(Context& ctx, const Tensor& src, int pad, Tensor& dst);

// The geometry both share, after checking the shapes (dims of the NHWC-like pair, the pad, Cd
// >= 4C, same N and dtype). For the backends.
struct SpaceToDepthShape {
  int64_t n = 0, h = 0, w = 0, c = 0;    // the plain tensor
  int64_t hb = 0, wb = 0, cd = 0;        // the rearranged one
  int pad = 0;
};
SpaceToDepthShape space_to_depth_shape(const Tensor& plain, const Tensor& rearranged, int pad, bool gather_back,
                                       const char* op);

// The row count and the two channel counts, after checking that src and dst agree but for the
// last dimension (narrow must not exceed wide). For the backends.
struct ChannelRows {
  int64_t rows = 0;
  int64_t narrow = 0, wide = 0;
};
ChannelRows channel_rows(const Tensor& narrow, const Tensor& wide, const char* op);

#define LS_CHANNELS_BACKEND_DECLS                                      \
  void pad_channels(Context&, const Tensor& src, Tensor& dst);          \
  void slice_channels(Context&, const Tensor& src, Tensor& dst);        \
  void space_to_depth2(Context&, const Tensor& src, int pad, Tensor& dst); \
  void depth_to_space2(Context&, const Tensor& src, int pad, Tensor& dst);
namespace cpu { LS_CHANNELS_BACKEND_DECLS }
namespace cuda { LS_CHANNELS_BACKEND_DECLS }
#undef LS_CHANNELS_BACKEND_DECLS

}  // namespace lockstep
