// The CUDA runtime services that kernels/ core needs (allocation, probing, contexts), declared
// without CUDA headers so device.cpp, memory.cpp and context.cpp compile in every build. Defined
// in kernels/cuda/runtime.cpp, which is built only with the CUDA backend.
#pragma once

#include <cstddef>
#include <memory>

#include "kernels/device.h"
#include "kernels/event.h"

namespace lockstep {
struct CudaState;
class Tensor;
class Context;
}

namespace lockstep::cuda {

GpuStatus probe_gpus();
void* device_alloc(int device, size_t bytes);
void device_free(int device, void* p) noexcept;
void* pinned_alloc(size_t bytes);
void pinned_free(void* p) noexcept;
// Streams always; cuDNN, cuBLAS and cuBLAS's workspace only `with_libraries`.
std::unique_ptr<CudaState> make_state(int device, bool with_libraries);
void destroy_state(CudaState* s) noexcept;
void synchronize(CudaState& s);
void set_device(int device);
void set_device_noexcept(int device) noexcept;
int current_device();
// cudaDeviceEnablePeerAccess from a to b where cudaDeviceCanAccessPeer says it can.
bool enable_peer_access(int a, int b);
// Copies between any two of host and this context's device, ordered on the compute stream.
void copy_bytes(Context& ctx, void* dst, Device dst_dev, const void* src, Device src_dev, size_t bytes);
// Between any two of the host and two GPUs on ctx's compute stream, no host wait (copy_peer_async).
void copy_bytes_peer_async(Context& ctx, void* dst, Device dst_dev, const void* src, Device src_dev, size_t bytes);
// The same on `stream`, with no host wait (kernels/copy.h copy_async).
void copy_bytes_async(Context& ctx, void* dst, const void* src, size_t bytes, Stream stream);
void fill_bytes(Context& ctx, void* dst, int byte, size_t bytes);

}  // namespace lockstep::cuda
