// 2-D convolution, NHWC activations and KRSC filters, no bias, any stride and padding.
// A ConvPlan is made once per shape at setup: on CUDA it holds the cuDNN descriptors and the
// algorithms chosen for forward, backward-data and backward-filter, and reserves the context's
// workspace; on CPU it picks, per pass, Winograd, the direct AVX-512 kernels, sgemm over in-bounds
// taps (small images) or im2col+sgemm and sizes their scratch (1x1 stride-1 convs need none).
// All tensors of one conv share one dtype (f32, bf16 or f16 on CUDA; f32 on CPU); accumulation is
// always fp32. The filter gradient is overwritten, not accumulated.
#pragma once

#include <memory>
#include <string>

#include "kernels/context.h"
#include "kernels/tensor.h"

namespace lockstep {

struct ConvShape {
  int n = 1, h = 1, w = 1, c = 1;  // input (N, H, W, C)
  int k = 1, r = 1, s = 1;         // filter (K, R, S, C)
  int stride_h = 1, stride_w = 1;
  int pad_h = 0, pad_w = 0;

  int out_h() const { return (h + 2 * pad_h - r) / stride_h + 1; }
  int out_w() const { return (w + 2 * pad_w - s) / stride_w + 1; }
  Shape x_shape() const { return {n, h, w, c}; }
  Shape w_shape() const { return {k, r, s, c}; }
  Shape y_shape() const { return {n, out_h(), out_w(), k}; }
  double flops_forward() const { return 2.0 * n * out_h() * out_w() * k * r * s * c; }
  // 1x1, stride 1, unpadded: the input is its own column matrix (the CPU GEMM needs no im2col).
  bool pointwise() const { return r == 1 && s == 1 && stride_h == 1 && stride_w == 1 && pad_h == 0 && pad_w == 0; }
  std::string str() const;
};

// Throws lockstep::Error naming the field when a dimension is non-positive or the output is empty.
void validate(const ConvShape& s);

struct ConvPlan {
  ConvShape shape;
  DType dtype = DType::f32;
  size_t workspace_bytes = 0;          // reserved on the context at plan time
  std::shared_ptr<void> backend;       // cuDNN descriptors and chosen algorithms (CUDA only)
  std::string algorithms;              // human-readable choice, for logs and `bench ops`
  int graph_directions = 0;            // of the 4 (forward, backward-data twice, backward-filter): how
                                       // many cuDNN's graph API planned (--conv-algo graph*; CUDA)
  unsigned cpu_direct = 0;             // CPU only: the passes off im2col+sgemm (cpu/conv_direct.h's Pass bits)
};

// How a CUDA plan picks algorithms. CPU plans ignore it.
//  - heuristic: cuDNN's ranking, deterministic algorithms only; the same choice every run, so a
//    run (and a resumed run) repeats bit for bit;
//  - measure: cuDNN's first few deterministic candidates timed once per shape and process
//    (kernels/cuda/conv_timing.h), the fastest; two runs may pick differently on a close call,
//    so bits can differ between runs;
//  - fastest: as measure, non-deterministic algorithms (atomics) allowed, as PyTorch's
//    cudnn.benchmark: the fastest, but not even one run repeats bit for bit;
//  - heuristic-any: cuDNN's ranking with non-deterministic algorithms allowed (cuDNN's fastest
//    backward-filter and backward-data kernels often use atomics): as cheap to plan as heuristic,
//    not bit-repeatable;
//  - graph: cuDNN's graph API (kernels/cuda/conv_graph.h), the first deterministic engine
//    configuration its heuristics rank for each direction; a direction it cannot plan runs the
//    legacy heuristic choice;
//  - graph-measure: the same, the first four qualifying configurations timed once per shape for
//    the process, the fastest kept (as PyTorch's cudnn.benchmark over the same API); as with
//    measure, two runs may pick differently on a close call.
enum class ConvAlgoSearch { heuristic, measure, fastest, heuristic_any, graph, graph_measure };

const char* conv_algo_name(ConvAlgoSearch s);
// "heuristic" | "measure" | "fastest" | "heuristic-any"; throws Error otherwise.
ConvAlgoSearch parse_conv_algo(const std::string& text);

ConvPlan plan_conv2d(Context& ctx, const ConvShape& shape, DType dtype,
                     ConvAlgoSearch search = ConvAlgoSearch::heuristic,
                     size_t workspace_limit = size_t(512) << 20);

void conv2d_forward(Context& ctx, const ConvPlan& plan, const Tensor& x, const Tensor& w, Tensor& y);
// dx = the input gradient, or with accumulate dx += it (a residual block's shortcut gradient is
// already in dx: one pass over dx fewer than a separate add).
void conv2d_backward_data(Context& ctx, const ConvPlan& plan, const Tensor& dy, const Tensor& w, Tensor& dx,
                          bool accumulate = false);
void conv2d_backward_filter(Context& ctx, const ConvPlan& plan, const Tensor& x, const Tensor& dy, Tensor& dw);

namespace cpu {
ConvPlan plan_conv2d(Context&, const ConvShape&, DType, ConvAlgoSearch, size_t);
void conv2d_forward(Context&, const ConvPlan&, const Tensor& x, const Tensor& w, Tensor& y);
void conv2d_backward_data(Context&, const ConvPlan&, const Tensor& dy, const Tensor& w, Tensor& dx, bool accumulate);
void conv2d_backward_filter(Context&, const ConvPlan&, const Tensor& x, const Tensor& dy, Tensor& dw);
}  // namespace cpu
namespace cuda {
ConvPlan plan_conv2d(Context&, const ConvShape&, DType, ConvAlgoSearch, size_t);
void conv2d_forward(Context&, const ConvPlan&, const Tensor& x, const Tensor& w, Tensor& y);
void conv2d_backward_data(Context&, const ConvPlan&, const Tensor& dy, const Tensor& w, Tensor& dx, bool accumulate);
void conv2d_backward_filter(Context&, const ConvPlan&, const Tensor& x, const Tensor& dy, Tensor& dw);
}  // namespace cuda

}  // namespace lockstep
