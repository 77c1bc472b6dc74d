// The layers a ResNet is made of: the stem, residual blocks and the classifier head.
// A ResidualBlock is a chain of (conv -> BN+ReLU) stages whose last BN fuses the residual add
// and ReLU; BasicBlock is two 3x3 stages, Bottleneck is 1x1 -> 3x3 -> 1x1 with the stride on the
// 3x3 (ResNet v1.5). A projection shortcut (1x1 conv + BN, torchvision's "downsample") is used
// when the block changes the shape.
#pragma once

#include <memory>
#include <optional>
#include <vector>

#include "kernels/pool.h"
#include "nets/batchnorm2d.h"
#include "nets/conv2d.h"

namespace lockstep::nets {

class ResidualBlock : public Layer {
 public:
  struct StageSpec {
    int out_c, kernel, stride;
  };
  // prefix "layer1.0"; stages in order; the block's output channels are the last stage's.
  ResidualBlock(std::string prefix, int in_c, std::vector<StageSpec> stages, int stride);
  static std::unique_ptr<ResidualBlock> basic(const std::string& prefix, int in_c, int out_c, int stride);
  static std::unique_ptr<ResidualBlock> bottleneck(const std::string& prefix, int in_c, int width, int stride);

  Shape setup(SetupContext& s, const Shape& in) override;
  const Tensor& forward(Context& ctx, const Tensor& x, Mode mode) override;
  void backward(Context& ctx, const Tensor& dy, Tensor* dx) override;
  std::string name() const override { return prefix_; }
  LayerCost cost() const override;
  // The BN whose gamma starts at zero under --zero-init-residual.
  const BatchNorm2d& last_bn() const { return stages_.back().bn; }

 private:
  struct Stage {
    Conv2d conv;
    BatchNorm2d bn;
    int conv_out = -1;   // act: conv output (N, H, W, out_c)
    int grad_in = -1;    // temp: gradient of this stage's input (stages after the first)
  };
  std::string prefix_;
  int in_c_;
  std::vector<Stage> stages_;
  std::optional<Conv2d> ds_conv_;
  std::optional<BatchNorm2d> ds_bn_;
  int ds_out_ = -1, t_res_ = -1;
  TensorStore* acts_ = nullptr;
  TensorStore* temps_ = nullptr;
  Tensor x_, y_;
};

// conv1 -> bn1 + ReLU [-> 3x3 s2 max pool]: ImageNet's 7x7 s2 stem with pooling, or the 3x3 s1
// stem of the CIFAR and tiny nets. Without batchnorm (the BatchNorm-free test net), conv1 -> ReLU.
class Stem : public Layer {
 public:
  Stem(int in_c, int out_c, int kernel, int stride, bool pool, bool batchnorm = true);
  Shape setup(SetupContext& s, const Shape& in) override;
  const Tensor& forward(Context& ctx, const Tensor& x, Mode mode) override;
  void backward(Context& ctx, const Tensor& dy, Tensor* dx) override;
  std::string name() const override { return "stem"; }
  LayerCost cost() const override;

 private:
  Conv2d conv_;
  std::optional<BatchNorm2d> bn_;
  bool pool_;
  PoolShape pool_shape_{3, 2, 1};
  int conv_out_ = -1, relu_out_ = -1, pool_out_ = -1, pool_where_ = -1, t_grad_ = -1;
  TensorStore* acts_ = nullptr;
  TensorStore* temps_ = nullptr;
  Tensor x_, y_;
};

// Global average pool -> fc: (N, H, W, C) -> logits (N, classes).
class Head : public Layer {
 public:
  Head(int in_c, int classes) : in_c_(in_c), classes_(classes) {}
  Shape setup(SetupContext& s, const Shape& in) override;
  const Tensor& forward(Context& ctx, const Tensor& x, Mode mode) override;
  void backward(Context& ctx, const Tensor& dy, Tensor* dx) override;
  std::string name() const override { return "fc"; }
  LayerCost cost() const override;
  int weight() const { return weight_; }
  int bias() const { return bias_; }

 private:
  int in_c_, classes_;
  Shape in_;
  int weight_ = -1, bias_ = -1;
  int pooled_ = -1, logits_ = -1, t_pooled_ = -1, t_db_ = -1;
  ParamTable* params_ = nullptr;
  TensorStore* acts_ = nullptr;
  TensorStore* temps_ = nullptr;
  Tensor y_;
};

}  // namespace lockstep::nets
