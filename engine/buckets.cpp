#include "engine/buckets.h"

#include <algorithm>

#include "kernels/error.h"

namespace lockstep::engine {

BucketLayout plan_buckets(const std::vector<nets::ParamSpec>& params, size_t cap_bytes, size_t first_cap_bytes,
                          size_t element_bytes) {
  LS_CHECK(cap_bytes > 0 && first_cap_bytes > 0, "bucket caps must be positive");
  std::vector<int> order(params.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = static_cast<int>(i);
  std::sort(order.begin(), order.end(), [&](int a, int b) { return params[a].offset < params[b].offset; });

  BucketLayout layout;
  layout.bucket_of.assign(params.size(), -1);
  int64_t expect = 0;
  for (int p : order) {
    const nets::ParamSpec& s = params[p];
    LS_CHECK(s.offset == expect, "plan_buckets: parameter " << s.name << " at offset " << s.offset
                                                            << " leaves a gap (expected " << expect << ")");
    expect += s.numel();
    const size_t bytes = static_cast<size_t>(s.numel()) * element_bytes;
    bool fits = false;
    if (!layout.buckets.empty()) {
      const size_t cap = layout.buckets.size() == 1 ? first_cap_bytes : cap_bytes;
      fits = static_cast<size_t>(layout.buckets.back().numel()) * element_bytes + bytes <= cap;
    }
    if (!fits) layout.buckets.push_back({s.offset, s.offset, {}});
    Bucket& b = layout.buckets.back();
    b.end = s.offset + s.numel();
    b.params.push_back(p);
    layout.bucket_of[p] = static_cast<int>(layout.buckets.size()) - 1;
  }
  return layout;
}

}  // namespace lockstep::engine
