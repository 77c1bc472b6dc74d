#include "nets/tensor_store.h"

#include <algorithm>

namespace lockstep::nets {

int TensorStore::add(Shape shape, DType dtype) {
  LS_CHECK(!allocated_, "TensorStore: declare every tensor before allocate()");
  size_t offset = (cursor_ + Arena::kAlign - 1) / Arena::kAlign * Arena::kAlign;
  entries_.push_back({shape, dtype, offset});
  cursor_ = offset + static_cast<size_t>(shape.numel()) * dtype_size(dtype);
  size_ = std::max(size_, cursor_);
  return static_cast<int>(entries_.size()) - 1;
}

void TensorStore::rewind() {
  LS_CHECK(mode_ == Mode::shared, "TensorStore: rewind() of a persistent store would alias its tensors");
  cursor_ = 0;
}

void TensorStore::allocate(Device device) {
  LS_CHECK(!allocated_, "TensorStore: allocated twice");
  buf_ = Buffer(device, size_);
  allocated_ = true;
}

Tensor TensorStore::operator[](int index) const {
  LS_CHECK(allocated_, "TensorStore: tensor " << index << " used before allocate()");
  LS_CHECK(index >= 0 && index < static_cast<int>(entries_.size()), "TensorStore: no tensor " << index);
  const Entry& e = entries_[index];
  return Tensor(static_cast<char*>(buf_.data()) + e.offset, e.shape, e.dtype, buf_.device());
}

}  // namespace lockstep::nets
