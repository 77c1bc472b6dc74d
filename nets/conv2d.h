// Conv2d: a bias-free convolution with its KRSC weight, planned once for its input shape.
// Used inside blocks; it keeps no activation of its own (its input belongs to the layer before),
// except when its input is rearranged for cuDNN (the stem): input channels padded with zeros
// (pad_input_to), or a stride-2 convolution run as a stride-1 one over space-to-depth blocks
// (space_to_depth). Then it keeps the rearranged input and weight, folds the rearranged weight
// gradient back, and has no input gradient.
#pragma once

#include "nets/layer.h"

namespace lockstep::nets {

class Conv2d {
 public:
  Conv2d(std::string name, int in_c, int out_c, int kernel, int stride, int pad)
      : name_(std::move(name)), in_c_(in_c), out_c_(out_c), kernel_(kernel), stride_(stride), pad_(pad) {}

  // Before setup: plan for the input's channels padded with zeros to `channels` (when more than
  // in_c). The parameter keeps its real shape; the function computed is the same.
  void pad_input_to(int channels) { padded_c_ = channels; }
  // Before setup, for a stride-2 convolution: run it as the stride-1, unpadded convolution of
  // kernel (kernel + a + 1) / 2 (a = pad % 2) over the input and weight rearranged by
  // space_to_depth2 (kernels/channels.h), 4x the channels rounded up to 8. The parameter keeps
  // its real shape; the function computed is the same.
  void space_to_depth() { s2d_ = true; }
  Shape setup(SetupContext& s, const Shape& in);
  void forward(Context& ctx, const Tensor& x, Tensor& y) const;
  // dw is ended through the ParamTable; dx (may be null) is overwritten.
  // accumulate: dx += the input gradient (conv2d_backward_data's accumulate).
  void backward(Context& ctx, const Tensor& x, const Tensor& dy, Tensor* dx, bool accumulate = false) const;

  int weight() const { return weight_; }
  int in_channels() const { return in_c_; }  // the real ones, before any padding
  const ConvPlan& plan() const { return plan_; }  // what runs: the rearranged convolution, if any
  const ConvShape& shape() const { return shape_; }  // the function's: real channels, kernel, stride
  const std::string& name() const { return name_; }

 private:
  std::string name_;
  int in_c_, out_c_, kernel_, stride_, pad_;
  int padded_c_ = 0;
  bool s2d_ = false;
  bool padded() const { return padded_c_ > in_c_; }
  bool rearranged() const { return padded() || s2d_; }
  int s2d_shift() const { return pad_ % 2; }  // the weight's shift into 2x2 blocks (space_to_depth)
  int x_pad_ = -1, w_pad_ = -1, t_dw_pad_ = -1;  // acts, acts, temps: the rearranged x, w and dw
  TensorStore* acts_ = nullptr;
  TensorStore* temps_ = nullptr;
  int weight_ = -1;
  ConvShape shape_;
  ConvPlan plan_;
  ParamTable* params_ = nullptr;
};

}  // namespace lockstep::nets
