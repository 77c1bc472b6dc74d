// TensorStore: tensors declared at setup by index, then allocated in one piece and resolved by
// index in the loop. In `shared` mode every layer's declarations start again at offset 0
// (rewind()), so temporaries of different layers share memory: the store's size is the largest
// layer's total, not the sum. Nothing is allocated after allocate().
#pragma once

#include <vector>

#include "kernels/memory.h"

namespace lockstep::nets {

class TensorStore {
 public:
  enum class Mode { persistent, shared };
  explicit TensorStore(Mode mode = Mode::persistent) : mode_(mode) {}

  // Declares a tensor; returns its index. Only before allocate().
  int add(Shape shape, DType dtype);
  // shared mode: the next declarations reuse the memory of the previous layer's. A persistent
  // store refuses (its tensors live from forward to backward and must never share memory).
  void rewind();
  void allocate(Device device);
  Tensor operator[](int index) const;
  size_t bytes() const { return size_; }
  bool allocated() const { return allocated_; }

 private:
  struct Entry {
    Shape shape;
    DType dtype;
    size_t offset;
  };
  Mode mode_;
  std::vector<Entry> entries_;
  size_t cursor_ = 0;
  size_t size_ = 0;
  bool allocated_ = false;
  Buffer buf_;
};

}  // namespace lockstep::nets
