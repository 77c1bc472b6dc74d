// ParamTable: every parameter and BatchNorm buffer of a model, in flat f32 buffers.
// Parameters are declared in torchvision's registration order (their state_dict order) and laid
// out in REVERSE order in the flat buffers, so backward — which finishes the last layers first —
// fills the gradient buffer front to back and buckets become ready in order (ARCHITECTURE 7).
// Except: a parameter whose size is not a multiple of kAlignElements goes after all the others,
// so that every other parameter starts 16-byte aligned in the 16-bit copy (32 in f32), as
// cuDNN's NHWC batch norm and our vector kernels read it (in torchvision's nets only the fc
// bias, when the class count is not a multiple of 8; its gradient waits in the last bucket,
// which is only ready at the end of backward anyway). Random initialization does not follow the
// layout: each parameter's Philox counters start at its offset in plain reverse order.
// Alongside the f32 master parameters live the f32 gradients and, when the compute dtype is
// 16-bit, a compute-dtype copy of the parameters that convolutions and the fc layer read.
// Gradients are written through begin_grad()/end_grad(): a layer writes the raw gradient where
// begin_grad says (the f32 gradient itself, or a scratch when the dtype differs or micro-batches
// accumulate), end_grad folds it in and tells the GradSink that this parameter's gradient is final.
#pragma once

#include <string>
#include <vector>

#include "kernels/context.h"
#include "kernels/memory.h"

namespace lockstep::nets {

enum class ParamKind { conv_weight, bn_weight, bn_bias, fc_weight, fc_bias };

struct ParamSpec {
  std::string name;      // torchvision's, e.g. "layer1.0.conv1.weight"
  Shape shape;           // lockstep's layout (conv weights KRSC)
  Shape torch_shape;     // torchvision's layout (conv weights KCRS)
  ParamKind kind;
  int64_t offset = 0;      // element offset in the flat buffers
  int64_t rng_offset = 0;  // first Philox counter of its random initialization
  int64_t numel() const { return shape.numel(); }
  // Weight decay applies to conv and fc weights; BN parameters and biases only with --wd-on-bn.
  bool is_weight() const { return kind == ParamKind::conv_weight || kind == ParamKind::fc_weight; }
};

struct BufferSpec {
  std::string name;      // "bn1.running_mean"
  int64_t numel = 0;
  float init = 0.f;
  int64_t offset = 0;
};

// Told when a parameter's gradient is final for this step (the reducer overlaps on it).
class GradSink {
 public:
  virtual ~GradSink() = default;
  virtual void grad_ready(Context& ctx, int param) = 0;
};

class ParamTable {
 public:
  static constexpr int64_t kAlignElements = 8;

  int declare(const std::string& name, Shape shape, Shape torch_shape, ParamKind kind);
  int declare_buffer(const std::string& name, int64_t numel, float init);
  // Lays out the flat buffers and allocates them on ctx's device (plus grad scratch).
  void allocate(Context& ctx, DType compute);

  const std::vector<ParamSpec>& specs() const { return specs_; }
  const std::vector<BufferSpec>& buffer_specs() const { return buffers_; }
  int64_t count() const { return total_; }
  DType compute_dtype() const { return compute_; }

  Tensor& params() { return params_.view(); }      // f32 (P)
  Tensor& grads() { return grads_.view(); }        // f32 (P)
  Tensor& buffers() { return buffer_data_.view(); } // f32 (B): BN running statistics
  Tensor param(int i) const;                       // f32 view, lockstep shape
  Tensor grad(int i) const;
  Tensor buffer(int i) const;
  // The parameter as convolutions and GEMMs read it: the compute-dtype copy, or the f32 master.
  Tensor compute_param(int i) const;
  // Refreshes the compute-dtype copy from the masters (after every optimizer update).
  void refresh_compute_params(Context& ctx);

  // Gradient writing. With accumulation on, gradients are added to what the buffer holds
  // (micro-batches 2..K); off, they overwrite it.
  void set_accumulate(bool accumulate) { accumulate_ = accumulate; }
  bool accumulating() const { return accumulate_; }
  void set_sink(GradSink* sink) { sink_ = sink; }
  // Where to write parameter i's raw gradient in `dtype` (its f32 slot when that can be written
  // directly, else a scratch), and end_grad folds it in and signals. One pending at a time.
  Tensor begin_grad(int i, DType dtype);
  void end_grad(Context& ctx, int i);
  // For gradients computed elsewhere (BN's, in the layer's temporaries, f32): folds src into
  // parameter i's gradient (nothing to copy when src is the slot itself) and signals.
  void fold_grad(Context& ctx, int i, const Tensor& src);

 private:
  std::vector<ParamSpec> specs_;
  std::vector<BufferSpec> buffers_;
  int64_t total_ = 0;
  DType compute_ = DType::f32;
  OwnedTensor params_, grads_, compute_params_, buffer_data_;
  OwnedTensor scratch_;     // largest parameter, compute dtype: raw gradients that need folding
  OwnedTensor scratch32_;   // f32 scratch for f32 gradients when the compute dtype is 16-bit
  const Tensor& f32_scratch() const { return compute_ == DType::f32 ? scratch_.view() : scratch32_.view(); }
  bool accumulate_ = false;
  bool allocated_ = false;
  GradSink* sink_ = nullptr;
  int pending_ = -1;        // parameter whose gradient is in scratch_, or -1
  DType pending_dtype_ = DType::f32;
};

}  // namespace lockstep::nets
