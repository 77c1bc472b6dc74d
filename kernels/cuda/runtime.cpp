// CUDA runtime services for kernels/ core: device probing, allocation, per-context streams and
// handles, and byte copies. Every call is checked (kernels/cuda/check.h).
#include "kernels/cuda/runtime.h"

#include <cstdio>
#include <sstream>

#include "kernels/context.h"
#include "kernels/cuda/check.h"
#include "kernels/cuda/cuda_state.h"

namespace lockstep::cuda {

void throw_library_error(const char* library, int code, const char* error_string,
                         const char* statement, const char* file, int line) {
  int dev = -1;
  cudaGetDevice(&dev);
  std::ostringstream os;
  os << library << " error " << code << " (" << (error_string ? error_string : "unknown")
     << ") on cuda:" << dev << " in `" << statement << "` at " << file << ":" << line;
  throw Error(os.str());
}

GpuStatus probe_gpus() {
  GpuStatus s;
  int n = 0;
  cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess) {
    s.reason = std::string("no usable GPU: ") + cudaGetErrorString(e);
    cudaGetLastError();  // clear the sticky error so later probes start clean
    return s;
  }
  if (n == 0) {
    s.reason = "no CUDA device found";
    return s;
  }
  s.available = true;
  s.count = n;
  return s;
}

void* device_alloc(int device, size_t bytes) {
  void* p = nullptr;
  CUDA_CHECK(cudaSetDevice(device));
  cudaError_t e = cudaMalloc(&p, bytes);
  if (e != cudaSuccess) {
    size_t free_b = 0, total_b = 0;
    cudaGetLastError();
    cudaMemGetInfo(&free_b, &total_b);
    std::ostringstream os;
    os << "cudaMalloc of " << bytes << " bytes failed on cuda:" << device << " ("
       << cudaGetErrorString(e) << "; " << free_b << " of " << total_b << " bytes free)";
    throw Error(os.str());
  }
  return p;
}

void device_free(int device, void* p) noexcept {
  if (!p) return;
  cudaSetDevice(device);
  cudaFree(p);
}

void* pinned_alloc(size_t bytes) {
  void* p = nullptr;
  CUDA_CHECK(cudaMallocHost(&p, bytes));
  return p;
}

void pinned_free(void* p) noexcept {
  if (p) cudaFreeHost(p);
}

std::unique_ptr<CudaState> make_state(int device, bool with_libraries) {
  auto s = std::make_unique<CudaState>();
  s->device = device;
  CUDA_CHECK(cudaSetDevice(device));
  CUDA_CHECK(cudaDeviceGetAttribute(&s->sm_count, cudaDevAttrMultiProcessorCount, device));
  CUDA_CHECK(cudaStreamCreateWithFlags(&s->compute, cudaStreamNonBlocking));
  CUDA_CHECK(cudaStreamCreateWithFlags(&s->comm, cudaStreamNonBlocking));
  CUDA_CHECK(cudaStreamCreateWithFlags(&s->copy, cudaStreamNonBlocking));
  if (!with_libraries) return s;
  CUDNN_CHECK(cudnnCreate(&s->cudnn));
  CUDNN_CHECK(cudnnSetStream(s->cudnn, s->compute));
  CUBLAS_CHECK(cublasCreate(&s->cublas));
  CUBLAS_CHECK(cublasSetStream(s->cublas, s->compute));
  // A workspace of our own (NVIDIA's recommended 32 MiB for Hopper), set once: cuBLAS then needs no
  // allocation of its own in a step, which a CUDA graph capture would refuse.
  constexpr size_t kCublasWorkspace = size_t{32} << 20;
  s->cublas_workspace = device_alloc(device, kCublasWorkspace);
  CUBLAS_CHECK(cublasSetWorkspace(s->cublas, s->cublas_workspace, kCublasWorkspace));
  s->reduce_scratch = static_cast<float*>(device_alloc(device, sizeof(float) * CudaState::kReduceScratchFloats));
  // fp32 GEMMs stay fp32 (no TF32) so they are comparable with the CPU reference.
  CUBLAS_CHECK(cublasSetMathMode(s->cublas, CUBLAS_DEFAULT_MATH));
  return s;
}

void destroy_state(CudaState* s) noexcept {
  if (!s) return;
  cudaSetDevice(s->device);
  if (s->cublas) cublasDestroy(s->cublas);
  if (s->cudnn) cudnnDestroy(s->cudnn);
  if (s->cublas_workspace) cudaFree(s->cublas_workspace);
  if (s->reduce_scratch) cudaFree(s->reduce_scratch);
  for (cudaStream_t st : {s->compute, s->comm, s->copy})
    if (st) cudaStreamDestroy(st);
}

void set_device(int device) { CUDA_CHECK(cudaSetDevice(device)); }
void set_device_noexcept(int device) noexcept { cudaSetDevice(device); }

int current_device() {
  int d = 0;
  CUDA_CHECK(cudaGetDevice(&d));
  return d;
}

bool enable_peer_access(int a, int b) {
  int can = 0;
  CUDA_CHECK(cudaDeviceCanAccessPeer(&can, a, b));
  if (!can) return false;
  int previous = current_device();
  CUDA_CHECK(cudaSetDevice(a));
  const cudaError_t e = cudaDeviceEnablePeerAccess(b, 0);
  cudaSetDevice(previous);
  if (e == cudaErrorPeerAccessAlreadyEnabled) {
    cudaGetLastError();
    return true;
  }
  if (e == cudaErrorTooManyPeers || e == cudaErrorPeerAccessUnsupported) {
    // More peers than the hardware maps (e.g. over 8 on PCIe): copies are staged through host
    // memory by the driver instead, which is what the callers fall back to.
    cudaGetLastError();
    return false;
  }
  CUDA_CHECK(e);
  return true;
}

void synchronize(CudaState& s) {
  CUDA_CHECK(cudaSetDevice(s.device));
  CUDA_CHECK(cudaStreamSynchronize(s.compute));
  CUDA_CHECK(cudaStreamSynchronize(s.comm));
  CUDA_CHECK(cudaStreamSynchronize(s.copy));
}

void copy_bytes(Context& ctx, void* dst, Device dst_dev, const void* src, Device src_dev, size_t bytes) {
  cudaMemcpyKind kind = cudaMemcpyDefault;  // unified addressing tells the direction
  (void)dst_dev;
  (void)src_dev;
  CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, kind, ctx.cuda().compute));
  if (dst_dev.is_cpu() || src_dev.is_cpu()) CUDA_CHECK(cudaStreamSynchronize(ctx.cuda().compute));
}

void copy_bytes_peer_async(Context& ctx, void* dst, Device dst_dev, const void* src, Device src_dev, size_t bytes) {
  cudaStream_t s = ctx.cuda().compute;
  if (dst_dev.is_cuda() && src_dev.is_cuda() && dst_dev.index != src_dev.index)
    CUDA_CHECK(cudaMemcpyPeerAsync(dst, dst_dev.index, src, src_dev.index, bytes, s));
  else
    CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDefault, s));
}

void copy_bytes_async(Context& ctx, void* dst, const void* src, size_t bytes, Stream stream) {
  CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDefault, stream_of(ctx, stream)));
}

void fill_bytes(Context& ctx, void* dst, int byte, size_t bytes) {
  CUDA_CHECK(cudaMemsetAsync(dst, byte, bytes, ctx.cuda().compute));
}

}  // namespace lockstep::cuda
