// CPU convolution as sgemm calls over in-bounds taps only, for small images: no column matrix, and
// none of the multiplies by padding that im2col's zeros cost (5/9 of a 3x3 conv's on 2x2 images,
// 31% on 4x4). Each call covers one output pixel and one filter row of a group of images: in NHWC
// the filter row's in-bounds taps read one contiguous span of the image row, and the filter's
// (K, R, S, C) layout holds the same span of every output channel at one stride, so A, B and C of
// the GEMM are strided views of x (or dy), w and y (or dx, dw) themselves.
// The work is cut into blocks whose outputs are their own, so no pass needs scratch, and every
// output is a sum in an order fixed by the shape, never by the thread count.
// kernels/cpu/conv_direct.h's passes() decides where it runs.
#pragma once
#include <cstdint>

#include "kernels/conv.h"

namespace lockstep::cpu::taps {

// Any shape but a 1x1 stride-1 unpadded conv (whose GEMM needs no im2col already) and filters of
// more than 256 taps.
bool fits(const ConvShape& s);

// Share of the full filter's multiplies that read the image, not its padding: 4/9 for 3x3 on 2x2.
double in_bounds_share(const ConvShape& s);

// Where these GEMMs beat im2col+sgemm, measured single-threaded at batch 32 on the 2-core VM
// (bench/RESULTS.md): forward and backward-filter of filters larger than 1x1 with up to 8x8
// outputs (ResNet's last stages at 64 px: 2x2 images 2.4x, 4x4 1.1-1.4x; at 224 px 7x7, 1.03-1.36x),
// or up to 32x32 outputs where at most 3/4 of the taps are in bounds; backward-data there too, and
// with a stride on up to 8x8 outputs (1x1 included: 1.13-1.17x), or up to 32x32 with at most 64
// input channels (no col2im of a mostly-empty column matrix: 1.3-1.75x). 1x1 stride-2 forward and
// filter passes measured 0.78-0.99x and stay with im2col.
bool pays_forward(const ConvShape& s);
bool pays_data(const ConvShape& s);
bool pays_filter(const ConvShape& s);

void forward(const ConvShape& s, const float* x, const float* w, float* y, int threads);
void backward_data(const ConvShape& s, const float* dy, const float* w, float* dx, bool accumulate, int threads);
void backward_filter(const ConvShape& s, const float* x, const float* dy, float* dw, int threads);

}  // namespace lockstep::cpu::taps
