// CUDA graphs: a stretch of one context's work captured once and replayed with one launch. The
// capture records what is queued on the context's compute stream from begin to finish; a stream
// made to wait on an event recorded there during the capture (the comm stream, for bucket
// exchanges) joins it, and must be joined back the same way before it ends. Replays read and
// write the same memory as the captured work, with the arguments it had: per-step values must
// come from device memory (kernels/scalars.h). CUDA contexts only; no CPU equivalent.
#pragma once

#include <cstddef>

#include "kernels/context.h"

namespace lockstep {

class CudaGraph {
 public:
  CudaGraph() = default;
  ~CudaGraph();
  CudaGraph(CudaGraph&& o) noexcept { swap(o); }
  CudaGraph& operator=(CudaGraph&& o) noexcept {
    CudaGraph tmp(std::move(o));
    swap(tmp);
    return *this;
  }
  CudaGraph(const CudaGraph&) = delete;
  CudaGraph& operator=(const CudaGraph&) = delete;

  bool valid() const { return exec_ != nullptr; }
  size_t nodes() const { return nodes_; }
  // Queues one replay on ctx's compute stream (ctx: the context it was captured on).
  void launch(Context& ctx) const;

 private:
  friend class GraphCapture;
  void swap(CudaGraph& o) noexcept;
  void* exec_ = nullptr;  // cudaGraphExec_t
  size_t nodes_ = 0;
  int device_ = -1;
};

// Captures ctx's compute stream from construction to finish(). The capture is thread-local: other
// threads (other workers capturing their own steps) are not disturbed. An illegal call inside
// it (a host synchronization, an allocation) fails with CUDA's error; a capture left unfinished
// (an exception) is ended and discarded by the destructor, leaving the stream usable.
class GraphCapture {
 public:
  explicit GraphCapture(Context& ctx);
  ~GraphCapture();
  GraphCapture(const GraphCapture&) = delete;
  GraphCapture& operator=(const GraphCapture&) = delete;
  // Ends the capture and instantiates the graph; `what` names it in errors.
  CudaGraph finish(const char* what);

 private:
  Context& ctx_;
  bool active_ = false;
};

}  // namespace lockstep
