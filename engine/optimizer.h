// The optimizer of a worker: SGD with momentum (PyTorch's convention, optional Nesterov) or LARS,
// over the model's flat f32 buffers in one launch. Weight decay applies to conv and fc weights
// only, unless wd_on_bn also includes BN parameters and biases; the segments of the flat buffer
// that decay are computed once here. LARS (You et al. 2017) scales each layer's update by the
// trust ratio eta * ||w|| / (||g|| + wd ||w||); BN parameters and biases keep ratio 1.
// The step's learning rate and gradient scale live in device memory (set_step writes them, apply
// reads them), so apply() can be captured once in a CUDA graph and replayed at every step.
#pragma once

#include <vector>

#include "kernels/memory.h"
#include "nets/params.h"

namespace lockstep::engine {

struct OptimizerConfig {
  enum class Kind { sgd, lars };
  Kind kind = Kind::sgd;
  float momentum = 0.9f;
  bool nesterov = false;
  float weight_decay = 1e-4f;
  bool wd_on_bn = false;
  float lars_eta = 0.001f;
};

class Optimizer {
 public:
  Optimizer(Context& ctx, const nets::ParamTable& params, const OptimizerConfig& config);
  // One update: grads (already averaged over workers) times grad_scale, at learning rate lr.
  // The same as set_step then apply.
  void step(Context& ctx, nets::ParamTable& params, float lr, float grad_scale);
  // Queues the next update's lr and grad_scale into device memory (by value: no host buffer).
  // LARS takes grad_scale at apply() time instead, as its argument.
  void set_step(Context& ctx, float lr, float grad_scale);
  // The update with the values of the last set_step. lars_grad_scale: LARS's gradient scale
  // (fixed in a captured graph; 1 whenever no loss scaling is on).
  void apply(Context& ctx, nets::ParamTable& params, float lars_grad_scale = 1.f);
  Tensor& momentum() { return momentum_.view(); }      // f32 (P), under the params' layout
  const OptimizerConfig& config() const { return config_; }
  // [begin, end) element ranges of the flat buffer that get weight decay.
  const std::vector<std::pair<uint32_t, uint32_t>>& decay_segments() const { return decay_ranges_; }

 private:
  OptimizerConfig config_;
  OwnedTensor momentum_;
  OwnedTensor scalars_;          // f32 (2) on the device: lr, grad_scale of the next update
  OwnedTensor decay_segments_;   // u32 (S, 2) on the device
  std::vector<std::pair<uint32_t, uint32_t>> decay_ranges_;
  // LARS: every parameter's segment, whether it adapts, and the norms scratch.
  OwnedTensor lars_segments_;    // u32 (P_count, 2)
  OwnedTensor lars_adapt_;       // u8 (P_count)
  OwnedTensor lars_norms_;       // f32 (P_count, 2)
};

}  // namespace lockstep::engine
