// Shape: up to 6 dimensions, outermost first. NHWC activations are {N, H, W, C}, filters
// {K, R, S, C}. A Shape with zero dimensions is a scalar of one element.
#pragma once

#include <array>
#include <cstdint>
#include <initializer_list>
#include <string>

#include "kernels/error.h"

namespace lockstep {

class Shape {
 public:
  static constexpr int kMaxDims = 6;

  Shape() = default;
  Shape(std::initializer_list<int64_t> dims) {
    LS_CHECK(dims.size() <= kMaxDims, "Shape: at most " << kMaxDims << " dimensions");
    for (int64_t d : dims) {
      LS_CHECK(d >= 0, "Shape: negative dimension " << d);
      dims_[rank_++] = d;
    }
  }

  int rank() const { return rank_; }
  int64_t operator[](int i) const {
    LS_CHECK(i >= 0 && i < rank_, "Shape: dimension " << i << " out of range for rank " << rank_);
    return dims_[i];
  }
  int64_t numel() const {
    int64_t n = 1;
    for (int i = 0; i < rank_; ++i) n *= dims_[i];
    return n;
  }
  bool operator==(const Shape& o) const {
    if (rank_ != o.rank_) return false;
    for (int i = 0; i < rank_; ++i)
      if (dims_[i] != o.dims_[i]) return false;
    return true;
  }
  std::string str() const {
    std::string s = "(";
    for (int i = 0; i < rank_; ++i) s += (i ? ", " : "") + std::to_string(dims_[i]);
    return s + ")";
  }

 private:
  std::array<int64_t, kMaxDims> dims_{};
  int rank_ = 0;
};

}  // namespace lockstep
