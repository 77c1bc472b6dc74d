#include "engine/sync/strategy.h"

#include "kernels/error.h"

namespace lockstep::engine {

CommBytes all_reduce_bytes(int64_t bytes, int N) {
  const int64_t b = 2 * int64_t(N - 1) * bytes / N;
  return {b, b};
}

CommBytes all_gather_bytes(int64_t bytes_per_rank, int N) {
  const int64_t b = int64_t(N - 1) * bytes_per_rank;
  return {b, b};
}

CommBytes all_to_all_bytes(int64_t bytes, int N) {
  LS_CHECK(bytes % N == 0, "all_to_all_bytes: " << bytes << " bytes do not divide among " << N << " ranks");
  const int64_t b = int64_t(N - 1) * (bytes / N);
  return {b, b};
}

}  // namespace lockstep::engine
