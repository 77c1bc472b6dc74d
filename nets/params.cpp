#include "nets/params.h"

#include <algorithm>

#include "kernels/accumulate.h"
#include "kernels/cast.h"
#include "kernels/copy.h"

namespace lockstep::nets {

int ParamTable::declare(const std::string& name, Shape shape, Shape torch_shape, ParamKind kind) {
  LS_CHECK(!allocated_, "ParamTable: parameter " << name << " declared after allocate()");
  specs_.push_back({name, shape, torch_shape, kind, 0});
  return static_cast<int>(specs_.size()) - 1;
}

int ParamTable::declare_buffer(const std::string& name, int64_t numel, float init) {
  int64_t offset = buffers_.empty() ? 0 : buffers_.back().offset + buffers_.back().numel;
  buffers_.push_back({name, numel, init, offset});
  return static_cast<int>(buffers_.size()) - 1;
}

void ParamTable::allocate(Context& ctx, DType compute) {
  LS_CHECK(!allocated_, "ParamTable: allocated twice");
  allocated_ = true;
  compute_ = compute;
  int64_t largest = 0, counter = 0;
  for (auto it = specs_.rbegin(); it != specs_.rend(); ++it) {
    it->rng_offset = counter;
    counter += it->numel();
    largest = std::max(largest, it->numel());
  }
  // Reverse registration order, the sizes that keep the next offset aligned first (see params.h).
  total_ = 0;
  for (bool whole : {true, false})
    for (auto it = specs_.rbegin(); it != specs_.rend(); ++it)
      if ((it->numel() % kAlignElements == 0) == whole) {
        it->offset = total_;
        total_ += it->numel();
      }
  Device dev = ctx.device();
  params_ = OwnedTensor(dev, {total_}, DType::f32);
  grads_ = OwnedTensor(dev, {total_}, DType::f32);
  zero(ctx, grads_);
  if (compute != DType::f32) compute_params_ = OwnedTensor(dev, {total_}, compute);
  scratch_ = OwnedTensor(dev, {largest}, compute);
  if (compute != DType::f32) scratch32_ = OwnedTensor(dev, {largest}, DType::f32);

  int64_t nbuf = buffers_.empty() ? 0 : buffers_.back().offset + buffers_.back().numel;
  buffer_data_ = OwnedTensor(dev, {nbuf}, DType::f32);
  OwnedTensor host(Device::cpu(), {nbuf}, DType::f32);
  for (const BufferSpec& b : buffers_)
    std::fill_n(host.data<float>() + b.offset, b.numel, b.init);
  copy(ctx, host, buffer_data_);
}

Tensor ParamTable::param(int i) const {
  const ParamSpec& s = specs_.at(i);
  return params_.view().slice(s.offset, s.numel()).reshape(s.shape);
}

Tensor ParamTable::grad(int i) const {
  const ParamSpec& s = specs_.at(i);
  return grads_.view().slice(s.offset, s.numel()).reshape(s.shape);
}

Tensor ParamTable::buffer(int i) const {
  const BufferSpec& b = buffers_.at(i);
  return buffer_data_.view().slice(b.offset, b.numel);
}

Tensor ParamTable::compute_param(int i) const {
  if (compute_ == DType::f32) return param(i);
  const ParamSpec& s = specs_.at(i);
  return compute_params_.view().slice(s.offset, s.numel()).reshape(s.shape);
}

void ParamTable::refresh_compute_params(Context& ctx) {
  if (compute_ != DType::f32) cast(ctx, params_, compute_params_);
}

Tensor ParamTable::begin_grad(int i, DType dtype) {
  LS_CHECK(pending_ < 0, "ParamTable: gradient of " << specs_.at(pending_).name << " was not ended");
  const ParamSpec& s = specs_.at(i);
  if (dtype == DType::f32 && !accumulate_) return grad(i);  // written in place, nothing to fold
  pending_ = i;
  pending_dtype_ = dtype;
  if (dtype == DType::f32) return f32_scratch().slice(0, s.numel()).reshape(s.shape);
  LS_CHECK(dtype == compute_, "ParamTable: gradient of " << s.name << " in " << dtype_name(dtype)
                                                         << " but the compute dtype is " << dtype_name(compute_));
  return scratch_.view().slice(0, s.numel()).reshape(s.shape);
}

void ParamTable::end_grad(Context& ctx, int i) {
  if (pending_ == i) {
    const ParamSpec& s = specs_.at(i);
    Tensor g = grad(i).reshape({s.numel()});
    Tensor src = (pending_dtype_ == DType::f32 ? f32_scratch() : scratch_.view()).slice(0, s.numel());
    if (accumulate_) accumulate_into(ctx, src, g);
    else cast(ctx, src, g);
    pending_ = -1;
  }
  if (sink_) sink_->grad_ready(ctx, i);
}

void ParamTable::fold_grad(Context& ctx, int i, const Tensor& src) {
  Tensor g = grad(i);
  if (src.raw() != g.raw()) {
    Tensor flat = g.reshape({g.numel()});
    if (accumulate_) accumulate_into(ctx, src, flat);
    else cast(ctx, src, flat);
  } else {
    LS_CHECK(!accumulate_, "ParamTable: gradient of " << specs_.at(i).name << " written in place while accumulating");
  }
  if (sink_) sink_->grad_ready(ctx, i);
}

}  // namespace lockstep::nets
