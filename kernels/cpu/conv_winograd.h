// Winograd convolution on AVX-512 for the CPU backend: 3x3 stride-1 convolutions with channels in
// multiples of 16. Rows of 8+ outputs multiply on the direct kernels' register tile per image,
// F(4x4, 3x3) (36 multiplies per 4x4 outputs instead of 144) or F(2x2, 3x3) (16 per 2x2 instead
// of 36); shorter rows (small images, usually with many channels) batch a block of images' tiles
// (F(4x4, 3x3) where the batch has 128 of them, else F(2x2, 3x3)) into one sgemm per position. Forward, backward-data (the rotated filter, as in
// conv_direct.cpp) and backward-filter (F(3x3, 4x4) or F(3x3, 2x2), register tile only);
// conv_direct.h's passes() decides where each runs. Each output is a sum in an order fixed by the
// shape.
#pragma once
#include <cstdint>

#include "kernels/conv.h"

namespace lockstep::cpu::winograd {

// A 3x3 stride-1 pass with input and output channels in multiples of 16 (the forward-shaped
// geometry: for backward-data, dy's channels in and x's out).
bool fits(int r, int s, int stride_h, int stride_w, int cin, int kout);

// Whether the pass (forward, or backward-data with data = true) has the 8+ pixel rows of the
// register tile, or else enough tiles in the batch for the batched form to pay for transforming
// the filter (16 or, f4, 36 x cin x kout floats each call): 128 tiles, measured on resnet18 at
// 64 px, where its 4x4 stage (32 images x 4 F(2x2) tiles) ran 1.2x faster than the GEMM and its
// 2x2 stage (32 x 1) 2x slower; F(4x4) tiles are counted as such (resnet20's 7x7 stage at 28 px,
// 64 images x 4 tiles, ran 1.5x faster on it than on F(2x2); resnet18's 4x4 stage, 32 x 1, no
// faster).
bool pays(const ConvShape& s, bool data, bool f4 = false);

// Floats of scratch for forward (data = false) or backward-data with `threads` threads; f4:
// F(4x4, 3x3) on the register tile (36 multiplies per 4x4 outputs instead of 4 x 16: 1.78x fewer;
// its filter transform is taken times 576 in integers and the output divided by 576, so that
// small-integer convolutions stay exact up to 2^24 / 576 in the products' sums).
int64_t scratch_floats(const ConvShape& s, bool data, int threads, bool f4 = false);

void forward(const ConvShape& s, const float* x, const float* w, float* y, float* scratch, int threads,
             bool f4 = false);
void backward_data(const ConvShape& s, const float* dy, const float* w, float* dx, bool accumulate,
                   float* scratch, int threads, bool f4 = false);

// Backward-filter, F(3x3, 2x2): the batch cut into `chunks` (each its own partial sum, added in
// order), so the result does not depend on the thread count.
// f4: F(3x3, 4x4) (4x4 tiles of dy against 6x6 patches of x, 36 positions; the same 24 G and
// division by 576 as forward's F(4x4, 3x3)).
int64_t filter_scratch_floats(const ConvShape& s, int threads, int chunks, bool f4 = false);
void backward_filter(const ConvShape& s, const float* x, const float* dy, float* dw, float* scratch, int chunks,
                     int threads, bool f4 = false);

}  // namespace lockstep::cpu::winograd
