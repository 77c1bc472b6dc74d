// TensorStore: declarations laid out aligned one after another; a shared store's layers start
// again at 0 (rewind), so its size is the largest layer's; a persistent one refuses to rewind.
#include <gtest/gtest.h>

#include "nets/tensor_store.h"

namespace lockstep::nets {
namespace {

TEST(TensorStore, SharedLayersOverlapAndPersistentOnesNever) {
  TensorStore shared(TensorStore::Mode::shared);
  shared.add({10}, DType::f32);
  shared.add({3}, DType::f32);
  const size_t first_layer = shared.bytes();
  shared.rewind();
  shared.add({4}, DType::f32);
  EXPECT_EQ(shared.bytes(), first_layer);  // the second layer fits in the first's memory
  shared.allocate(Device::cpu());
  EXPECT_EQ(shared[0].raw(), shared[2].raw());
  EXPECT_NE(shared[1].raw(), shared[0].raw());

  TensorStore persistent;
  persistent.add({10}, DType::f32);
  EXPECT_THROW(persistent.rewind(), Error);
  persistent.add({10}, DType::f32);
  persistent.allocate(Device::cpu());
  EXPECT_GE(static_cast<const char*>(persistent[1].raw()) - static_cast<const char*>(persistent[0].raw()), 40);
  EXPECT_THROW(persistent.add({1}, DType::f32), Error);  // nothing after allocate()
}

}  // namespace
}  // namespace lockstep::nets
