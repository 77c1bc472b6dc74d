// The measured algorithm search of plan_conv2d (--conv-algo measure | fastest): the few
// candidates cuDNN's heuristics rank first among those the plan could take are each run once
// (cuDNN may compile a kernel on its first call) and then timed by CUDA events; the list comes
// back fastest first, and the choice per shape is kept for the rest of the process.
// Why not cudnnFind*Ex: on an H100 (2026-11-26) it timed every algorithm under every math type,
// first calls included, 50-144 ms for some, so a ResNet-50 plan took over a minute and its
// rankings followed compile times.
#pragma once

#include <cudnn.h>

#include <algorithm>
#include <functional>
#include <limits>
#include <vector>

#include "kernels/dtype.h"

namespace lockstep::cuda {

// How many candidates per direction are timed, and how many timed runs each (the fastest counts).
constexpr int kTimedCandidates = 4;
constexpr int kTimedRuns = 3;

// Milliseconds of the fastest of kTimedRuns calls of `run` after one untimed call, on `stream`;
// infinity when a call fails (cuDNN refuses the algorithm with these descriptors).
float time_runs(cudaStream_t stream, const std::function<cudnnStatus_t()>& run);

// The candidates of `perfs` (cuDNN's heuristic ranking) that a plan could take: status success,
// a math type allowed for the dtype (`allowed`), deterministic unless any_determinism, and a
// workspace within the limit (`fits` sets the descriptor's math type and asks); tensor-op ones
// only when there are any (`tensor_op`). The first kTimedCandidates are timed with `run` and
// returned fastest first, their time in .time. An empty result means none qualified.
template <typename Perf, typename Algo>
std::vector<Perf> timed_candidates(const std::vector<Perf>& perfs, bool any_determinism, bool prefer_tensor_op,
                                   const std::function<bool(cudnnMathType_t)>& allowed,
                                   const std::function<bool(cudnnMathType_t)>& tensor_op,
                                   const std::function<bool(Algo, cudnnMathType_t)>& fits,
                                   const std::function<cudnnStatus_t(Algo)>& run, cudaStream_t stream) {
  std::vector<Perf> ok;
  for (const Perf& p : perfs)
    if (p.status == CUDNN_STATUS_SUCCESS && allowed(p.mathType) &&
        (any_determinism || p.determinism == CUDNN_DETERMINISTIC))
      ok.push_back(p);
  if (prefer_tensor_op && std::any_of(ok.begin(), ok.end(), [&](const Perf& p) { return tensor_op(p.mathType); }))
    ok.erase(std::remove_if(ok.begin(), ok.end(), [&](const Perf& p) { return !tensor_op(p.mathType); }), ok.end());
  std::vector<Perf> timed;
  for (const Perf& p : ok) {
    if (static_cast<int>(timed.size()) == kTimedCandidates) break;
    if (!fits(p.algo, p.mathType)) continue;  // also leaves the descriptor on p's math type
    Perf t = p;
    t.time = time_runs(stream, [&] { return run(p.algo); });
    if (t.time < std::numeric_limits<float>::infinity()) timed.push_back(t);
  }
  std::stable_sort(timed.begin(), timed.end(), [](const Perf& a, const Perf& b) { return a.time < b.time; });
  return timed;
}

}  // namespace lockstep::cuda
