// Direct NHWC convolution on AVX-512 for the CPU backend: no column matrix, 16 output channels per
// vector, a tile of output pixels (or input channels, for the filter gradient) in registers.
// The im2col+sgemm path (kernels/cpu/conv.cpp) stays for what these do not take and as the oracle.
// Every output element is a sum in a fixed order that depends on the shape alone (never on the
// thread count); backward-filter's batch is cut into the chunks the caller gives.
#pragma once
#include <cstddef>
#include <cstdint>

#include "kernels/conv.h"

namespace lockstep::cpu::direct {

// Bits of ConvPlan::cpu_direct: which passes run here, and which of those on Winograd
// (conv_winograd.h) instead of the direct tiles; a pass has at most one bit.
enum Pass : unsigned {
  forward_pass = 1u,
  data_pass = 2u,
  filter_pass = 4u,
  winograd_forward = 8u,
  winograd_data = 16u,
  winograd_filter = 32u,
  // sgemm over in-bounds taps only (conv_taps.h; plain C++ and OpenBLAS, any CPU)
  taps_forward = 64u,
  taps_data = 128u,
  taps_filter = 256u,
  // Winograd F(4x4, 3x3) for the passes on the register tile (conv_winograd.h)
  winograd4_forward = 512u,
  winograd4_data = 1024u,
  winograd4_filter = 2048u,  // F(3x3, 4x4)
};

// Each pass's kernel bits, in the order passes() prefers them, and its name in plans and logs.
struct PassKernels {
  unsigned winograd4, winograd, direct, taps;
  const char* name;
};
inline constexpr PassKernels kPassKernels[] = {
    {winograd4_forward, winograd_forward, forward_pass, taps_forward, "forward"},
    {winograd4_data, winograd_data, data_pass, taps_data, "backward-data"},
    {winograd4_filter, winograd_filter, filter_pass, taps_filter, "backward-filter"}};

// AVX-512F on this CPU, and LOCKSTEP_CPU_CONV not "gemm" (read once per process; "direct" keeps
// the direct kernels and leaves Winograd out, "winograd2" leaves F(4x4, 3x3) out, for A/B
// measurements).
bool available();

// Every kernel bit that can compute this shape on this CPU, whatever LOCKSTEP_CPU_CONV says (a
// plan may hold any of them; several kernels of a pass may be listed): the tap GEMMs on any CPU.
unsigned possible(const ConvShape& s);

// Which passes of a conv leave the im2col+sgemm path, one bit per pass (0 under
// LOCKSTEP_CPU_CONV=gemm), preferring Winograd, then the direct tiles, then the tap GEMMs.
// 3x3 stride-1 passes with both channel counts multiples of 16 run on Winograd: where their rows
// have 8+ pixels on F(4x4, 3x3) (backward-filter F(3x3, 4x4)), forward and backward-data with
// shorter rows batched where the batch has 128+ tiles (winograd::pays), of F(4x4, 3x3) if it
// has that many of them, else of F(2x2, 3x3).
// Otherwise, on the direct tiles: forward and backward-filter need K a multiple of 16,
// backward-data stride 1, C a multiple of 16
// and padding below the filter size; all three rows of at least 8 pixels (y's for forward and
// backward-filter, x's for backward-data). Smaller images with more channels (ResNet's last
// stages) ran faster on GEMMs, which stack images and keep a filter block in cache: measured on
// resnet18 at 64 px, direct tiles were 1.4x slower on layer3's 4x4 (flat tiles across rows
// included) and 1.1x on layer4's 2x2. There the tap GEMMs take the passes where they pay
// (taps::pays_*: most of the taps in the padding, or a strided backward-data's col2im). 1x1
// stride-1 unpadded convs need no column matrix and stay with the GEMM.
unsigned passes(const ConvShape& s);

// Floats of scratch the passes need with `threads` threads and `chunks` filter chunks.
int64_t scratch_floats(const ConvShape& s, unsigned passes, int threads, int chunks);

// The passes. scratch holds scratch_floats(s, pass, threads, chunks); threads is at most the
// threads the scratch was sized for.
void forward(const ConvShape& s, const float* x, const float* w, float* y, float* scratch, int threads);
void backward_data(const ConvShape& s, const float* dy, const float* w, float* dx, bool accumulate,
                   float* scratch, int threads);
void backward_filter(const ConvShape& s, const float* x, const float* dy, float* dw, float* scratch,
                     int chunks, int threads);

}  // namespace lockstep::cpu::direct
