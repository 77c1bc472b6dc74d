// Padding and slicing the channel (last) dimension of NHWC tensors: a 3-channel image or KRSC
// weight padded with zero channels to 4 or 8, which cuDNN's tensor-core kernels want for the
// first convolution, and the padded weight gradient sliced back. Exact on every backend: only
// copies and zeros.
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

// The row count and the two channel counts, after checking that src and dst agree but for the
// last dimension (narrow must not exceed wide). For the backends.
struct ChannelRows {
  int64_t rows = 0;
  int64_t narrow = 0, wide = 0;
};
ChannelRows channel_rows(const Tensor& narrow, const Tensor& wide, const char* op);

namespace cpu {
void pad_channels(Context&, const Tensor& src, Tensor& dst);
void slice_channels(Context&, const Tensor& src, Tensor& dst);
}  // namespace cpu
namespace cuda {
void pad_channels(Context&, const Tensor& src, Tensor& dst);
void slice_channels(Context&, const Tensor& src, Tensor& dst);
}  // namespace cuda

}  // namespace lockstep
