// One direction of a convolution through cuDNN's graph API (--conv-algo graph | graph-measure):
// an operation graph of the single convolution, the engine configurations cuDNN's heuristics
// rank for it (mode A, then the fallback list), the first that qualifies and builds an
// execution plan (graph), or the fastest of the first few timed (graph-measure, as PyTorch's
// cudnn.benchmark over the same API; the winner kept per shape for the process, so a net's
// repeated shapes are timed once and run the same engine). Qualifies: deterministic, no TF32 for f32 data (no tensor
// core or down-converting engine), no runtime compilation, a workspace within the limit.
// The legacy API (kernels/cuda/conv.cpp) runs whatever this cannot plan.
#pragma once

#include <cudnn.h>

#include <memory>
#include <string>
#include <vector>

#include "kernels/conv.h"
#include "kernels/cuda/cudnn_backend.h"

namespace lockstep::cuda {

// In this order: conv_graph.cpp indexes its table of attribute names by it.
enum class ConvDirection { forward, backward_data, backward_filter };

// The tensors' unique ids in every direction's graph and variant pack: x (dx), w (dw), y (dy).
constexpr int64_t kGraphX = 1, kGraphW = 2, kGraphY = 3;

class GraphConv {
 public:
  // Every descriptor the plan references, kept alive with it.
  std::vector<BackendDescriptor> keep;
  BackendDescriptor plan;
  int64_t workspace = 0;
  int64_t engine = -1;  // the engine's global index
  int rank = 0;         // its place among the configurations cuDNN offered
  float ms = -1;        // its measured time (graph-measure), -1 otherwise
  // Runs the plan with these pointers (x, w, y as kGraph*) and a workspace of at least
  // `workspace` bytes. The variant pack of the last pointers is kept: a layer's tensors do not
  // move, so a step builds none.
  cudnnStatus_t run(cudnnHandle_t handle, const void* x, const void* w, const void* y, void* ws) const;

 private:
  mutable BackendDescriptor pack_;
  mutable const void* pack_ptrs_[4] = {nullptr, nullptr, nullptr, nullptr};
};

// The convolution descriptor of a shape (fp32 accumulation, cross-correlation, its strides and
// symmetric padding), finalized; throws Error when cuDNN refuses it.
BackendDescriptor conv_descriptor(const ConvShape& shape);
// One direction's operation over x (dx), w (dw), y (dy) and a convolution descriptor, set but not
// finalized (a caller decides what a refusal means). beta: 0 overwrites the output, 1 adds to it.
BackendDescriptor conv_operation(ConvDirection dir, const BackendDescriptor& x, const BackendDescriptor& w,
                                 const BackendDescriptor& y, const BackendDescriptor& conv, float beta);

// The finalized operation of one direction (beta: 0 overwrites the output, 1 adds to it) and the
// tensors and convolution descriptor it references; an empty op, and the reason in *why, when
// cuDNN refuses it. Needs no GPU: cuDNN checks the shapes here.
struct ConvOperation {
  std::vector<BackendDescriptor> keep;
  BackendDescriptor op;
};
ConvOperation make_conv_operation(const ConvShape& shape, DType dtype, ConvDirection dir, float beta,
                                  std::string* why);

// Plans one direction (beta: 0 overwrites the output, 1 adds to it). Returns null when no
// engine configuration qualifies and builds, with the reason in *why. measure: time the first
// kTimedCandidates qualifying plans on scratch tensors (allocated only here) and keep the fastest.
std::unique_ptr<GraphConv> plan_graph_conv(Context& ctx, const ConvShape& shape, DType dtype, ConvDirection dir,
                                           float beta, bool measure, size_t workspace_limit, std::string* why);

const char* direction_name(ConvDirection d);

}  // namespace lockstep::cuda
