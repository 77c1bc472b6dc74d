// Gradient buckets: the flat gradient buffer (parameters in reverse registration order, so the
// last layers come first) cut into contiguous runs of whole parameters. The first bucket is small
// (default 1 MB) so communication starts as soon as the head's gradients are done; the others hold
// up to `cap` bytes (default 25 MB, --bucket-mb), as PyTorch DDP does. A parameter larger than a
// cap gets a bucket of its own; none is ever split, so each gradient is a view into one bucket.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "nets/params.h"

namespace lockstep::engine {

struct Bucket {
  int64_t begin = 0, end = 0;  // element range of the flat buffers
  std::vector<int> params;     // parameter indices, in flat-buffer order
  int64_t numel() const { return end - begin; }
};

struct BucketLayout {
  std::vector<Bucket> buckets;
  std::vector<int> bucket_of;  // parameter index -> bucket
};

// Buckets of f32 gradients over the parameters of `params` (offsets as laid out by allocate()).
BucketLayout plan_buckets(const std::vector<nets::ParamSpec>& params, size_t cap_bytes,
                          size_t first_cap_bytes = size_t(1) << 20, size_t element_bytes = 4);

}  // namespace lockstep::engine
