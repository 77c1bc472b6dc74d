// Tensor: a typed, non-owning view (pointer, shape, dtype, device) over memory owned by a
// Buffer, an Arena or a flat parameter buffer. Copying a Tensor copies the view, not the data.
#pragma once

#include <cstddef>
#include <cstdint>

#include "kernels/device.h"
#include "kernels/dtype.h"
#include "kernels/error.h"
#include "kernels/shape.h"

namespace lockstep {

class Tensor {
 public:
  Tensor() = default;
  Tensor(void* data, Shape shape, DType dtype, Device device)
      : data_(data), shape_(shape), dtype_(dtype), device_(device) {}

  void* raw() const { return data_; }
  template <typename T> T* data() const {
    if constexpr (sizeof(T) == 2) {
      LS_CHECK(dtype_ == DType::bf16 || dtype_ == DType::f16,
               "tensor of " << dtype_name(dtype_) << " accessed as a 16-bit type");
    } else {
      LS_CHECK(dtype_ == dtype_of<T>(), "tensor of " << dtype_name(dtype_) << " accessed as "
                                                     << dtype_name(dtype_of<T>()));
    }
    return static_cast<T*>(data_);
  }
  const Shape& shape() const { return shape_; }
  int64_t dim(int i) const { return shape_[i]; }
  int rank() const { return shape_.rank(); }
  DType dtype() const { return dtype_; }
  Device device() const { return device_; }
  int64_t numel() const { return shape_.numel(); }
  size_t bytes() const { return static_cast<size_t>(numel()) * dtype_size(dtype_); }
  bool defined() const { return data_ != nullptr || numel() == 0; }

  // Same memory seen with another shape of equal element count.
  Tensor reshape(Shape s) const {
    LS_CHECK(s.numel() == numel(), "reshape " << shape_.str() << " -> " << s.str() << " changes the element count");
    return Tensor(data_, s, dtype_, device_);
  }
  // Elements [begin, begin+count) of the flattened tensor, as a 1-D view.
  Tensor slice(int64_t begin, int64_t count) const {
    LS_CHECK(begin >= 0 && count >= 0 && begin + count <= numel(),
             "slice [" << begin << ", " << begin + count << ") out of " << numel() << " elements");
    return Tensor(static_cast<char*>(data_) + begin * static_cast<int64_t>(dtype_size(dtype_)),
                  Shape{count}, dtype_, device_);
  }
  std::string str() const {
    return std::string(dtype_name(dtype_)) + shape_.str() + "@" + device_.str();
  }

 private:
  void* data_ = nullptr;
  Shape shape_{0};  // a default Tensor is empty (no elements), not a scalar
  DType dtype_ = DType::f32;
  Device device_{};
};

}  // namespace lockstep
