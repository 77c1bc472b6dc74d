// BatchNorm2d with the fused residual add and ReLU: y = relu?(bn(x) + residual?). It owns gamma
// and beta (parameters), running mean and variance (buffers), the batch statistics saved for
// backward, and its output. Training uses batch statistics; eval the running ones.
#pragma once

#include "kernels/batchnorm.h"
#include "nets/layer.h"

namespace lockstep::nets {

class BatchNorm2d {
 public:
  BatchNorm2d(std::string name, int channels, bool relu) : name_(std::move(name)), c_(channels), relu_(relu) {}

  void setup(SetupContext& s, const Shape& in);
  Tensor forward(Context& ctx, const Tensor& x, const Tensor* residual, Mode mode);
  // dx may alias dy; dresidual (may be null) receives the gradient of the residual input.
  void backward(Context& ctx, const Tensor& x, const Tensor& dy, Tensor& dx, Tensor* dresidual);

  Tensor output() const { return (*acts_)[y_idx_]; }
  int gamma() const { return gamma_; }
  int running_mean() const { return mean_; }
  int running_var() const { return var_; }
  int beta() const { return beta_; }
  const std::string& name() const { return name_; }

 private:
  std::string name_;
  int c_;
  bool relu_;
  int gamma_ = -1, beta_ = -1, mean_ = -1, var_ = -1;
  int y_idx_ = -1, save_mean_idx_ = -1, save_invstd_idx_ = -1;
  int dgamma_tmp_ = -1, dbeta_tmp_ = -1;  // f32 (C) temporaries, used when accumulating
  TensorStore* temps_ = nullptr;
  BatchNormPlan plan_;
  ParamTable* params_ = nullptr;
  TensorStore* acts_ = nullptr;
};

}  // namespace lockstep::nets
