// Buffer, PinnedBuffer and Arena: host memory is 256-byte aligned; device memory comes from
// cudaMalloc, page-locked memory from cudaMallocHost (plain host memory without CUDA).
#include "kernels/memory.h"

#include <cstdlib>
#include <new>

#if LOCKSTEP_HAVE_CUDA
#include "kernels/cuda/runtime.h"
#endif
#include "kernels/dispatch.h"

namespace lockstep {

namespace {
constexpr size_t kHostAlign = 256;
size_t round_up(size_t n, size_t a) { return (n + a - 1) / a * a; }

void* host_alloc(size_t bytes) {
  void* p = std::aligned_alloc(kHostAlign, round_up(bytes ? bytes : 1, kHostAlign));
  LS_CHECK(p != nullptr, "out of host memory allocating " << bytes << " bytes");
  return p;
}
}  // namespace

Buffer::Buffer(Device device, size_t bytes) : bytes_(bytes), device_(device) {
  if (device.is_cpu()) {
    ptr_ = host_alloc(bytes);
    return;
  }
#if LOCKSTEP_HAVE_CUDA
  ptr_ = bytes ? cuda::device_alloc(device.index, bytes) : nullptr;
#else
  throw_no_cuda_backend("Buffer");
#endif
}

Buffer::~Buffer() {
  if (!ptr_) return;
  if (device_.is_cpu()) {
    std::free(ptr_);
    return;
  }
#if LOCKSTEP_HAVE_CUDA
  cuda::device_free(device_.index, ptr_);
#endif
}

PinnedBuffer::PinnedBuffer(size_t bytes) : bytes_(bytes) {
#if LOCKSTEP_HAVE_CUDA
  if (gpu_status().available) {
    ptr_ = cuda::pinned_alloc(bytes ? bytes : 1);
    pinned_ = true;
    return;
  }
#endif
  ptr_ = host_alloc(bytes);
}

PinnedBuffer::~PinnedBuffer() {
  if (!ptr_) return;
#if LOCKSTEP_HAVE_CUDA
  if (pinned_) {
    cuda::pinned_free(ptr_);
    return;
  }
#endif
  std::free(ptr_);
}

Tensor PinnedBuffer::tensor(Shape shape, DType dtype) const {
  LS_CHECK(static_cast<size_t>(shape.numel()) * dtype_size(dtype) <= bytes_,
           "PinnedBuffer of " << bytes_ << " bytes cannot hold " << dtype_name(dtype) << shape.str());
  return Tensor(ptr_, shape, dtype, Device::cpu());
}

Tensor Arena::alloc(Shape shape, DType dtype) {
  size_t bytes = static_cast<size_t>(shape.numel()) * dtype_size(dtype);
  size_t offset = round_up(used_, kAlign);
  if (measuring_) {
    used_ = offset + bytes;
    return Tensor(nullptr, shape, dtype, device_);
  }
  LS_CHECK(offset + bytes <= buf_.bytes(), "Arena on " << device_.str() << ": " << dtype_name(dtype)
                                                       << shape.str() << " does not fit (" << offset
                                                       << " of " << buf_.bytes() << " bytes used)");
  used_ = offset + bytes;
  return Tensor(static_cast<char*>(buf_.data()) + offset, shape, dtype, device_);
}

}  // namespace lockstep
