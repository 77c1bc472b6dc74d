// CUDA graph capture and replay (kernels/graph.h); a loud error in a build without CUDA.
#include "kernels/graph.h"

#include <sstream>
#include <utility>

#include "kernels/dispatch.h"
#if LOCKSTEP_HAVE_CUDA
#include "kernels/cuda/check.h"
#include "kernels/cuda/cuda_state.h"
#endif

namespace lockstep {

void CudaGraph::swap(CudaGraph& o) noexcept {
  std::swap(exec_, o.exec_);
  std::swap(nodes_, o.nodes_);
  std::swap(device_, o.device_);
}

CudaGraph::~CudaGraph() {
#if LOCKSTEP_HAVE_CUDA
  if (exec_) {
    // Workers are destroyed on the main thread: its current device is put back afterwards.
    int previous = -1;
    cudaGetDevice(&previous);
    cudaSetDevice(device_);
    cudaGraphExecDestroy(static_cast<cudaGraphExec_t>(exec_));
    if (previous >= 0) cudaSetDevice(previous);
  }
#endif
}

void CudaGraph::launch(Context& ctx) const {
  LS_CHECK(exec_ != nullptr, "CudaGraph: launch of an empty graph");
  LS_CHECK(ctx.is_cuda() && ctx.device().index == device_,
           "CudaGraph: captured on cuda:" << device_ << ", launched on " << ctx.device().str());
#if LOCKSTEP_HAVE_CUDA
  CUDA_CHECK(cudaGraphLaunch(static_cast<cudaGraphExec_t>(exec_), cuda::stream(ctx)));
#endif
}

GraphCapture::GraphCapture(Context& ctx) : ctx_(ctx) {
  LS_CHECK(ctx.is_cuda(), "CUDA graphs need a CUDA context, not " << ctx.device().str());
#if LOCKSTEP_HAVE_CUDA
  CUDA_CHECK(cudaSetDevice(ctx.device().index));
  CUDA_CHECK(cudaStreamBeginCapture(cuda::stream(ctx), cudaStreamCaptureModeThreadLocal));
  active_ = true;
#else
  throw_no_cuda_backend("GraphCapture");
#endif
}

GraphCapture::~GraphCapture() {
#if LOCKSTEP_HAVE_CUDA
  if (!active_) return;
  cudaGraph_t g = nullptr;
  cudaStreamEndCapture(cuda::stream(ctx_), &g);
  if (g) cudaGraphDestroy(g);
  cudaGetLastError();  // the capture's failure was reported by whatever threw
#endif
}

CudaGraph GraphCapture::finish(const char* what) {
  LS_CHECK(active_, "GraphCapture: " << what << " was finished already");
  CudaGraph out;
#if LOCKSTEP_HAVE_CUDA
  active_ = false;
  cudaGraph_t g = nullptr;
  const cudaError_t e = cudaStreamEndCapture(cuda::stream(ctx_), &g);
  if (e != cudaSuccess || g == nullptr) {
    if (g) cudaGraphDestroy(g);
    std::ostringstream os;
    os << "capturing " << what << " as a CUDA graph failed: " << cudaGetErrorString(e)
       << " (a host synchronization, an allocation or a stream left unjoined inside the captured work)";
    cudaGetLastError();
    throw Error(os.str());
  }
  size_t nodes = 0;
  cudaGraphExec_t exec = nullptr;
  cudaError_t ie = cudaGraphGetNodes(g, nullptr, &nodes);
  if (ie == cudaSuccess) ie = cudaGraphInstantiate(&exec, g, 0);
  cudaGraphDestroy(g);
  if (ie != cudaSuccess) {
    std::ostringstream os;
    os << "instantiating " << what << " as a CUDA graph failed: " << cudaGetErrorString(ie);
    cudaGetLastError();
    throw Error(os.str());
  }
  out.exec_ = exec;
  out.nodes_ = nodes;
  out.device_ = ctx_.device().index;
#endif
  return out;
}

}  // namespace lockstep
