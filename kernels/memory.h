// Owned memory: Buffer (device or host memory, move-only RAII), PinnedBuffer (page-locked host
// memory for asynchronous copies; plain host memory when no CUDA backend is built) and Arena
// (one setup-time allocation carved into aligned pieces). Allocation happens at setup only:
// nothing here is meant to be called inside a training step.
#pragma once

#include <cstddef>
#include <utility>

#include "kernels/device.h"
#include "kernels/dtype.h"
#include "kernels/shape.h"
#include "kernels/tensor.h"

namespace lockstep {

class Buffer {
 public:
  Buffer() = default;
  Buffer(Device device, size_t bytes);
  ~Buffer();
  Buffer(Buffer&& o) noexcept { swap(o); }
  Buffer& operator=(Buffer&& o) noexcept {
    Buffer tmp(std::move(o));
    swap(tmp);
    return *this;
  }
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;

  void* data() const { return ptr_; }
  size_t bytes() const { return bytes_; }
  Device device() const { return device_; }

 private:
  void swap(Buffer& o) noexcept {
    std::swap(ptr_, o.ptr_);
    std::swap(bytes_, o.bytes_);
    std::swap(device_, o.device_);
  }
  void* ptr_ = nullptr;
  size_t bytes_ = 0;
  Device device_{};
};

class PinnedBuffer {
 public:
  PinnedBuffer() = default;
  explicit PinnedBuffer(size_t bytes);
  ~PinnedBuffer();
  PinnedBuffer(PinnedBuffer&& o) noexcept { swap(o); }
  PinnedBuffer& operator=(PinnedBuffer&& o) noexcept {
    PinnedBuffer tmp(std::move(o));
    swap(tmp);
    return *this;
  }
  PinnedBuffer(const PinnedBuffer&) = delete;
  PinnedBuffer& operator=(const PinnedBuffer&) = delete;

  void* data() const { return ptr_; }
  size_t bytes() const { return bytes_; }
  bool pinned() const { return pinned_; }  // false when built without CUDA
  Tensor tensor(Shape shape, DType dtype) const;

 private:
  void swap(PinnedBuffer& o) noexcept {
    std::swap(ptr_, o.ptr_);
    std::swap(bytes_, o.bytes_);
    std::swap(pinned_, o.pinned_);
  }
  void* ptr_ = nullptr;
  size_t bytes_ = 0;
  bool pinned_ = false;
};

// A tensor that owns its memory: for tests, tools and setup code. Converts to a Tensor view.
class OwnedTensor {
 public:
  OwnedTensor() = default;
  OwnedTensor(Device device, Shape shape, DType dtype)
      : buf_(device, static_cast<size_t>(shape.numel()) * dtype_size(dtype)),
        view_(buf_.data(), shape, dtype, device) {}
  const Tensor& view() const { return view_; }
  Tensor& view() { return view_; }
  operator const Tensor&() const { return view_; }
  operator Tensor&() { return view_; }
  template <typename T> T* data() const { return view_.data<T>(); }
  const Shape& shape() const { return view_.shape(); }
  DType dtype() const { return view_.dtype(); }
  Device device() const { return view_.device(); }
  int64_t numel() const { return view_.numel(); }
  size_t bytes() const { return view_.bytes(); }

 private:
  Buffer buf_;
  Tensor view_;
};

// One allocation carved into aligned tensors at setup. Call measure() on an Arena without
// memory to size it, or give a capacity up front; alloc() past the capacity throws.
class Arena {
 public:
  static constexpr size_t kAlign = 256;  // cuDNN, cuBLAS and vector loads like 256-byte bases

  Arena() = default;  // a measuring arena: alloc() counts bytes and returns tensors with null data
  Arena(Device device, size_t capacity) : buf_(device, capacity), device_(device), measuring_(false) {}

  Tensor alloc(Shape shape, DType dtype);
  size_t used() const { return used_; }
  size_t capacity() const { return measuring_ ? 0 : buf_.bytes(); }
  Device device() const { return device_; }
  void reset() { used_ = 0; }

 private:
  Buffer buf_;
  Device device_{};
  bool measuring_ = true;
  size_t used_ = 0;
};

}  // namespace lockstep
