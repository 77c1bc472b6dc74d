// Bucket layout: boundaries for given sizes and caps, every parameter in exactly one bucket, the
// small first bucket, and ResNet-50's real layout.
#include <gtest/gtest.h>

#include "engine/buckets.h"
#include "nets/resnet.h"

namespace lockstep::engine {
namespace {

// Parameters of the given sizes (elements), laid out as ParamTable does: reverse registration.
std::vector<nets::ParamSpec> specs_of(const std::vector<int64_t>& sizes) {
  std::vector<nets::ParamSpec> s;
  for (size_t i = 0; i < sizes.size(); ++i) {
    std::string name = "p";
    name += std::to_string(i);
    s.push_back({name, Shape{sizes[i]}, Shape{sizes[i]}, nets::ParamKind::conv_weight, 0});
  }
  int64_t off = 0;
  for (auto it = s.rbegin(); it != s.rend(); ++it) {
    it->offset = off;
    off += it->numel();
  }
  return s;
}

TEST(Buckets, BoundariesForGivenSizesAndCaps) {
  // registration order p0..p5; flat order p5, p4, ..., p0. Caps in bytes of f32: first 40 B
  // (10 elements), then 80 B (20 elements).
  auto s = specs_of({6, 15, 5, 5, 4, 8});
  BucketLayout L = plan_buckets(s, 80, 40);
  ASSERT_EQ(L.buckets.size(), 4u);
  EXPECT_EQ(L.buckets[0].params, (std::vector<int>{5}));     // 8 (4 more would make 12 > 10)
  EXPECT_EQ(L.buckets[1].params, (std::vector<int>{4, 3, 2}));  // 4 + 5 + 5 = 14 (15 more > 20)
  EXPECT_EQ(L.buckets[2].params, (std::vector<int>{1}));     // 15 (6 more would be 21)
  EXPECT_EQ(L.buckets[3].params, (std::vector<int>{0}));
  EXPECT_EQ(L.buckets[0].begin, 0);
  EXPECT_EQ(L.buckets[0].end, 8);
  EXPECT_EQ(L.buckets[1].begin, 8);
  EXPECT_EQ(L.buckets[1].end, 22);
}

TEST(Buckets, OversizedParametersGetTheirOwnAndNothingIsLost) {
  auto s = specs_of({100, 3, 50, 2, 2});
  BucketLayout L = plan_buckets(s, 40, 8);  // 10 elements, first 2
  int64_t covered = 0;
  std::vector<int> count(s.size(), 0);
  for (size_t b = 0; b < L.buckets.size(); ++b) {
    EXPECT_EQ(L.buckets[b].begin, covered);
    covered = L.buckets[b].end;
    for (int p : L.buckets[b].params) {
      ++count[p];
      EXPECT_EQ(L.bucket_of[p], static_cast<int>(b));
    }
  }
  EXPECT_EQ(covered, 157);
  for (int c : count) EXPECT_EQ(c, 1);
  EXPECT_EQ(L.buckets[0].params, (std::vector<int>{4}));  // 2 elements: the first cap is full
}

TEST(Buckets, Resnet50FirstBucketIsSmallAndHoldsTheHead) {
  nets::ModelOptions o;
  o.arch = "resnet50";
  o.image_size = 32;
  o.batch = 1;
  nets::Model m(o);
  Context ctx(Device::cpu());
  m.setup(ctx);
  BucketLayout L = plan_buckets(m.params().specs(), 25u << 20, 1u << 20);
  const auto& specs = m.params().specs();
  // fc.bias (1000) fits the 1 MB first bucket; fc.weight (2048000 floats = 8 MB) does not.
  EXPECT_EQ(specs[L.buckets[0].params.front()].name, "fc.bias");
  EXPECT_LE(L.buckets[0].numel() * 4, 1 << 20);
  for (size_t b = 1; b < L.buckets.size(); ++b)
    if (L.buckets[b].params.size() > 1) {
      EXPECT_LE(L.buckets[b].numel() * 4, 25 << 20);
    }
  EXPECT_EQ(L.buckets.back().end, m.params().count());
  EXPECT_GE(L.buckets.size(), 5u);
}

}  // namespace
}  // namespace lockstep::engine
