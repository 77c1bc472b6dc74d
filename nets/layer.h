// The layer interface of nets/. A layer is set up once for a fixed input shape (it declares its
// parameters, plans its ops and declares the activations it keeps and the temporaries it needs),
// then runs forward and backward in the loop without allocating (ARCHITECTURE decision 4).
// Forward returns the layer's own output tensor; backward reads dy and writes dx into the buffer
// the model hands it, and ends each parameter's gradient through the ParamTable, which signals it.
#pragma once

#include <array>

#include <string>

#include "kernels/conv.h"
#include "kernels/batchnorm.h"
#include "kernels/context.h"
#include "nets/params.h"
#include "nets/tensor_store.h"

namespace lockstep::nets {

enum class Mode { train, eval };

// The work of one forward and one backward pass of a set-up layer (`lockstep bench ops`). FLOPs
// count a multiply-add as 2: exact for convolutions and the linear layer (backward: the data and
// filter gradients, 2x forward, or 1x where no input gradient is needed), approximate for the
// element-wise ops (BN, ReLU, pooling, adds). Bytes: each op's inputs, outputs and parameters
// counted once, in the compute dtype: a lower bound on the memory traffic.
struct LayerCost {
  std::string kind;  // "basic block", "bottleneck", "stem", "head", ...
  Shape out;
  double fwd_flops = 0, bwd_flops = 0, fwd_bytes = 0, bwd_bytes = 0;
};

struct SetupContext {
  Context& ctx;
  DType dtype;                    // compute dtype of activations and conv/GEMM inputs
  ParamTable& params;
  TensorStore& acts;              // persistent: kept from forward to backward
  TensorStore& temps;             // shared between layers: valid inside one layer's backward
  ConvAlgoSearch search = ConvAlgoSearch::heuristic;
  int stem_channels = 0;          // > input channels: the stem's conv sees them zero-padded to this
  bool stem_space_to_depth = false;  // the stem's stride-2 conv runs as a stride-1 one over 2x2 blocks
  BatchNormKernels bn_kernels = BatchNormKernels::automatic;  // whose training BN kernels (CUDA)
  // What the BN layers' plans resolved bn_kernels to: a count per BatchNormKernels value.
  std::array<int, 4> bn_planned{};
  // The convolutions' directions cuDNN's graph API planned, of all of them (--conv-algo graph*).
  int conv_graph_directions = 0, conv_directions = 0;
};

class Layer {
 public:
  virtual ~Layer() = default;
  // Declares parameters (in torchvision's order) and plans for input `in`; returns the output shape.
  virtual Shape setup(SetupContext& s, const Shape& in) = 0;
  virtual const Tensor& forward(Context& ctx, const Tensor& x, Mode mode) = 0;
  // dx may be null when nobody needs the input gradient (the stem). dy is the model's gradient
  // buffer and nobody reads it afterwards: a layer may use its memory as scratch (a residual
  // block writes its last BN's input gradient over it).
  virtual void backward(Context& ctx, const Tensor& dy, Tensor* dx) = 0;
  virtual std::string name() const = 0;
  // Valid after setup.
  virtual LayerCost cost() const = 0;
};

// "layer1.0" + "conv1" -> "layer1.0.conv1"; an empty prefix gives the bare name.
inline std::string join_name(const std::string& prefix, const std::string& name) {
  return prefix.empty() ? name : prefix + "." + name;
}

}  // namespace lockstep::nets
