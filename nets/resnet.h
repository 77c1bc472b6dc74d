// Model: a ResNet of the zoo (nets/arch.h) as a chain of layers — stem, residual blocks, head —
// with every parameter, gradient and activation allocated once at setup for a fixed batch and
// image size. forward() returns the logits; backward() takes their gradient and ends every
// parameter's gradient through the ParamTable (which tells the GradSink, if any).
// Parameter names, order and counts equal torchvision's resnet18..152; the CIFAR nets (resnet20..110,
// He et al. 2016: 3 stages of 16/32/64 channels, 3x3 stem, no pool) use the same naming with
// projection shortcuts; "tiny" is a 3x3 stem of 8 channels, two BasicBlocks (8, then 16 with stride
// 2) and the head: every kind of layer in a net small enough for finite differences.
#pragma once

#include <array>

#include <memory>
#include <string>
#include <vector>

#include "nets/arch.h"
#include "nets/blocks.h"
#include "nets/layer.h"

namespace lockstep::nets {

struct MemoryPlan {
  int64_t parameters = 0;
  size_t param_bytes = 0;        // f32 params + grads (+ compute copy)
  size_t activation_bytes = 0;   // kept from forward to backward
  size_t temp_bytes = 0;         // shared backward temporaries and the two gradient buffers
  size_t workspace_bytes = 0;    // the context's op workspace (conv algorithms, im2col, BN partials)
  int batch = 0;
  std::string str() const;
};

struct ModelOptions {
  std::string arch = "resnet50";
  int classes = 1000;
  int image_size = 224;
  int batch = 32;
  DType dtype = DType::f32;
  ConvAlgoSearch search = ConvAlgoSearch::heuristic;
  // 0: the stem's convolution reads the 3 image channels; 4 or 8: it reads them padded with zero
  // channels (the same function and weights: cuDNN's fast NHWC kernels want C a multiple of 4/8).
  int stem_channels = 0;
  // The stem's 7x7 stride-2 convolution run as a 4x4 stride-1 one over the image's 2x2 blocks (12
  // channels, padded to 16): Conv2d::space_to_depth. The same function, weights and checkpoints.
  // Only for a stride-2 stem (the ImageNet nets); excludes stem_channels.
  bool stem_space_to_depth = false;
  // Whose kernels run training batch norm on CUDA (kernels/batchnorm.h).
  BatchNormKernels bn_kernels = BatchNormKernels::automatic;
};

// Per-layer timing for `lockstep bench ops`: called around each layer's forward and backward
// call inside Model::forward/backward (layer = index into Model::layers()). Unset by default.
class LayerTimer {
 public:
  virtual ~LayerTimer() = default;
  virtual void begin(size_t layer, bool forward) = 0;
  virtual void end(size_t layer, bool forward) = 0;
};

class Model {
 public:
  // Builds the layers of `arch`; throws lockstep::Error for an unknown arch or a bad size.
  explicit Model(const ModelOptions& options);
  // Layers point into the model's tables: it never moves.
  Model(const Model&) = delete;
  Model& operator=(const Model&) = delete;
  // Plans every op and allocates everything on ctx's device. Once.
  void setup(Context& ctx);
  // torchvision's initialisation from Philox(seed): Kaiming normal (fan_out, ReLU) convs, BN
  // gamma 1 / beta 0 (gamma 0 for each block's last BN when zero_init_residual), fc weight and
  // bias uniform(+-1/sqrt(in)). Running mean 0, var 1. Identical on every device.
  void init(Context& ctx, uint64_t seed, bool zero_init_residual);

  // x: (N, H, W, 3) in the compute dtype, normalized. Returns logits (N, classes), compute dtype.
  const Tensor& forward(Context& ctx, const Tensor& x, Mode mode);
  // dlogits: (N, classes), compute dtype. accumulate: add to the gradients instead of overwriting.
  void backward(Context& ctx, const Tensor& dlogits, bool accumulate = false);
  // After every optimizer update: refresh the compute-dtype copy of the parameters.
  void parameters_updated(Context& ctx) { params_.refresh_compute_params(ctx); }

  ParamTable& params() { return params_; }
  const ParamTable& params() const { return params_; }
  const ModelOptions& options() const { return opt_; }
  const ArchInfo& arch() const { return *arch_; }
  Shape input_shape() const { return {opt_.batch, opt_.image_size, opt_.image_size, 3}; }
  Shape output_shape() const { return {opt_.batch, opt_.classes}; }
  MemoryPlan memory_plan() const;
  // The BN gamma indices that zero_init_residual zeroes.
  const std::vector<int>& residual_gammas() const { return residual_gammas_; }
  // Every entry of torchvision's state_dict in its order: parameters, running statistics and
  // each BN's num_batches_tracked.
  std::vector<std::string> state_dict_names() const;
  const std::vector<std::unique_ptr<Layer>>& layers() const { return layers_; }
  // Whose kernels the BN layers run in training, as planned: "cudnn", "lockstep" (or "scalar")
  // when all agree, else each with its count ("cudnn 52, lockstep 1"); "" without BN layers.
  // What --bn-kernels auto resolved to, for benches and logs.
  std::string bn_kernels_used() const;
  // "graph API N of M" when --conv-algo graph* planned any direction through it (each conv has 4:
  // forward, backward-data overwriting and accumulating, backward-filter), "" otherwise.
  std::string conv_api_used() const;
  // nullptr (the default) switches timing off; the timer must outlive its use.
  void set_layer_timer(LayerTimer* timer) { timer_ = timer; }

 private:
  ModelOptions opt_;
  const ArchInfo* arch_;
  std::vector<std::unique_ptr<Layer>> layers_;
  std::vector<Shape> layer_inputs_;
  std::vector<int> residual_gammas_;
  ParamTable params_;
  TensorStore acts_{TensorStore::Mode::persistent};
  TensorStore temps_{TensorStore::Mode::shared};
  OwnedTensor grad_a_, grad_b_;  // ping-pong buffers for the gradients between layers
  size_t workspace_bytes_ = 0;
  std::array<int, 4> bn_planned_{};
  int conv_graph_directions_ = 0, conv_directions_ = 0;
  bool set_up_ = false;
  LayerTimer* timer_ = nullptr;
};

}  // namespace lockstep::nets
