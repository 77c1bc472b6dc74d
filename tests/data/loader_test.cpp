// The loader's contract (data/loader.h): shards, val coverage, determinism across thread counts
// and restarts, bad-image policy, shutdown and error propagation. Folders are small JPEGs
// written with encode_jpeg into a temporary folder.
#include "data/loader.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <map>
#include <set>
#include <stdexcept>

#include "data/decode.h"
#include "data_test_util.h"

namespace lockstep::data::testing {
extern void (*loader_fault_hook)(int64_t sample);  // defined in data/loader.cpp
}

namespace lockstep::data {
namespace {

namespace fs = std::filesystem;
using test::TempDir;

// Class c's images are a flat colour (40 + 60c, 200 - 50c, 90 + i % 7 * 20) of varied sizes:
// a val centre crop then has a known mean, and every sample differs from its neighbours.
std::vector<uint8_t> sample_pixels(int c, int i, int w, int h) {
  std::vector<uint8_t> px(static_cast<size_t>(w) * h * 3);
  for (size_t p = 0; p < px.size(); p += 3) {
    px[p] = static_cast<uint8_t>(40 + 60 * c);
    px[p + 1] = static_cast<uint8_t>(200 - 50 * c);
    px[p + 2] = static_cast<uint8_t>(90 + (i % 7) * 20);
  }
  return px;
}

void make_folder(const fs::path& root, int classes, const std::vector<int>& per_class) {
  for (int c = 0; c < classes; ++c)
    for (int i = 0; i < per_class[static_cast<size_t>(c)]; ++i) {
      const int w = 48 + (i * 13 + c * 7) % 50, h = 40 + (i * 17 + c * 5) % 40;
      std::vector<uint8_t> px = sample_pixels(c, i, w, h);
      char name[32];
      std::snprintf(name, sizeof name, "img_%03d.JPEG", i);
      test::write_file(root / ("class_" + std::to_string(c)) / name, encode_jpeg(px.data(), w, h, 3, 90));
    }
}

LoaderConfig small_config(bool train) {
  LoaderConfig c;
  c.train = train;
  c.image_size = 16;
  c.batch = 4;
  c.threads = 2;
  c.prefetch = 2;
  c.seed = 7;
  return c;
}

struct Seen {
  std::vector<std::vector<uint8_t>> pixels;
  std::vector<std::vector<int32_t>> labels;
  std::vector<int> counts;
};

Seen run_epoch(Loader& loader, int64_t epoch, int64_t from = 0) {
  Seen s;
  loader.start_epoch(epoch, from);
  for (int64_t b = from; b < loader.batches_per_epoch(); ++b) {
    const HostBatch& hb = loader.next();
    const uint8_t* p = hb.images.data<uint8_t>();
    const int32_t* l = hb.labels.data<int32_t>();
    s.pixels.emplace_back(p, p + hb.images.numel());
    s.labels.emplace_back(l, l + hb.count);
    s.counts.push_back(hb.count);
  }
  return s;
}

TEST(Loader, TrainShardsAreDisjointAndCoverTheEpochButTheTail) {
  TempDir dir;
  make_folder(dir.path(), 3, {9, 7, 7});  // 23 samples
  FolderIndex index = scan_folder(dir.path());
  const int world = 3;
  LoaderConfig c = small_config(true);
  c.batch = 2;  // global batch 6: 3 batches, 18 samples, the last 5 dropped
  std::vector<int64_t> order;
  std::multiset<int64_t> seen;
  for (int r = 0; r < world; ++r) {
    c.rank = r;
    c.world = world;
    Loader loader(index, c);
    ASSERT_EQ(loader.batches_per_epoch(), 3);
    for (int64_t b = 0; b < 3; ++b) {
      std::vector<int64_t> s = loader.batch_samples(4, b);
      ASSERT_EQ(s.size(), 2u);
      seen.insert(s.begin(), s.end());
    }
  }
  EXPECT_EQ(seen.size(), 18u);
  EXPECT_EQ(std::set<int64_t>(seen.begin(), seen.end()).size(), 18u) << "a sample appears in two shards";
  for (int64_t s : seen) EXPECT_TRUE(s >= 0 && s < 23);
  // The same positions regardless of world: one worker with batch 6 sees the union, in order.
  LoaderConfig one = small_config(true);
  one.batch = 6;
  Loader single(index, one);
  std::set<int64_t> all;
  for (int64_t b = 0; b < 3; ++b)
    for (int64_t s : single.batch_samples(4, b)) all.insert(s);
  EXPECT_EQ(all, std::set<int64_t>(seen.begin(), seen.end()));
}

TEST(Loader, ValCoversEverySampleExactlyOnceWithUnevenCounts) {
  TempDir dir;
  make_folder(dir.path(), 3, {9, 7, 7});  // 23 samples over 4 workers of batch 4
  FolderIndex index = scan_folder(dir.path());
  std::multiset<int64_t> seen;
  std::set<int64_t> bpes;
  for (int r = 0; r < 4; ++r) {
    LoaderConfig c = small_config(false);
    c.rank = r;
    c.world = 4;
    Loader loader(index, c);
    bpes.insert(loader.batches_per_epoch());
    Seen s = run_epoch(loader, 0);
    for (int64_t b = 0; b < loader.batches_per_epoch(); ++b) {
      std::vector<int64_t> samples = loader.batch_samples(0, b);
      ASSERT_EQ(static_cast<int>(samples.size()), s.counts[static_cast<size_t>(b)]);
      for (size_t k = 0; k < samples.size(); ++k) {
        seen.insert(samples[k]);
        EXPECT_EQ(s.labels[static_cast<size_t>(b)][k], index.samples[static_cast<size_t>(samples[k])].label);
      }
    }
  }
  EXPECT_EQ(bpes, std::set<int64_t>{2}) << "every worker runs ceil(ceil(23/4)/4) = 2 batches";
  ASSERT_EQ(seen.size(), 23u);
  for (int64_t i = 0; i < 23; ++i) EXPECT_EQ(seen.count(i), 1u) << "sample " << i;
}

TEST(Loader, ValWorkerWithAShortShareGetsAnEmptyLastBatch) {
  TempDir dir;
  make_folder(dir.path(), 1, {5});
  FolderIndex index = scan_folder(dir.path());
  std::vector<int> last;
  for (int r = 0; r < 4; ++r) {
    LoaderConfig c = small_config(false);
    c.batch = 1;
    c.rank = r;
    c.world = 4;
    Loader loader(index, c);
    ASSERT_EQ(loader.batches_per_epoch(), 2);
    last.push_back(run_epoch(loader, 0).counts.back());
  }
  EXPECT_EQ(last, (std::vector<int>{1, 0, 0, 0}));
}

TEST(Loader, ValCentreCropsHaveTheClassColourAndLabel) {
  TempDir dir;
  make_folder(dir.path(), 3, {3, 3, 3});
  FolderIndex index = scan_folder(dir.path());
  LoaderConfig c = small_config(false);
  c.batch = 9;
  Loader loader(index, c);
  loader.start_epoch(0);
  const HostBatch& b = loader.next();
  ASSERT_EQ(b.count, 9);
  for (int k = 0; k < 9; ++k) {
    const int label = b.labels.data<int32_t>()[k];
    EXPECT_EQ(label, k / 3);
    const uint8_t* p = b.images.data<uint8_t>() + k * 16 * 16 * 3;
    double r = 0, g = 0;
    for (int i = 0; i < 16 * 16; ++i) {
      r += p[3 * i];
      g += p[3 * i + 1];
    }
    EXPECT_NEAR(r / 256, 40 + 60 * label, 4) << k;
    EXPECT_NEAR(g / 256, 200 - 50 * label, 4) << k;
  }
}

TEST(Loader, SameSeedAndEpochGiveIdenticalBatchesWithOneOrEightThreads) {
  TempDir dir;
  make_folder(dir.path(), 4, {10, 10, 10, 10});
  FolderIndex index = scan_folder(dir.path());
  LoaderConfig c = small_config(true);
  c.threads = 1;
  c.prefetch = 1;
  Loader one(index, c);
  c.threads = 8;
  c.prefetch = 5;
  Loader eight(index, c);
  Seen a = run_epoch(one, 3), b = run_epoch(eight, 3);
  ASSERT_EQ(a.pixels.size(), 10u);
  EXPECT_EQ(a.pixels, b.pixels);
  EXPECT_EQ(a.labels, b.labels);
  // Train augmentation is random: not every sample of a class is cropped alike.
  EXPECT_NE(run_epoch(one, 4).pixels, a.pixels);
}

TEST(Loader, RestartAtAPositionReproducesTheRestOfTheEpoch) {
  TempDir dir;
  make_folder(dir.path(), 4, {10, 10, 10, 10});
  FolderIndex index = scan_folder(dir.path());
  LoaderConfig c = small_config(true);
  c.threads = 3;
  Loader loader(index, c);
  Seen full = run_epoch(loader, 2);
  // Restart in the middle of an epoch with the ring busy, then resume at batch 6 of epoch 2.
  loader.start_epoch(0);
  loader.next();
  Seen rest = run_epoch(loader, 2, 6);
  ASSERT_EQ(rest.pixels.size(), 4u);
  for (size_t i = 0; i < 4; ++i) {
    EXPECT_EQ(rest.pixels[i], full.pixels[6 + i]) << "batch " << 6 + i;
    EXPECT_EQ(rest.labels[i], full.labels[6 + i]) << "batch " << 6 + i;
  }
  // A fresh loader started at the position sees the same.
  Loader fresh(index, c);
  Seen again = run_epoch(fresh, 2, 6);
  EXPECT_EQ(again.pixels, rest.pixels);
}

TEST(Loader, DifferentEpochsGiveDifferentOrders) {
  TempDir dir;
  make_folder(dir.path(), 2, {8, 8});
  FolderIndex index = scan_folder(dir.path());
  LoaderConfig c = small_config(true);
  c.batch = 16;
  Loader loader(index, c);
  std::vector<int64_t> e0 = loader.batch_samples(0, 0), e1 = loader.batch_samples(1, 0);
  EXPECT_NE(e0, e1);
  EXPECT_EQ(e0, loader.batch_samples(0, 0));
  std::sort(e0.begin(), e0.end());
  std::sort(e1.begin(), e1.end());
  EXPECT_EQ(e0, e1) << "each epoch is a permutation of the samples";
  c.seed = 8;
  Loader other(index, c);
  EXPECT_NE(other.batch_samples(0, 0), loader.batch_samples(0, 0));
}

// A folder with three bad files among good ones: zero bytes, a truncated JPEG, random bytes.
FolderIndex bad_folder(const TempDir& dir, std::vector<std::string>* bad_names) {
  make_folder(dir.path(), 2, {10, 10});
  const fs::path c0 = dir.path() / "class_0";
  test::write_file(c0 / "img_002.JPEG", {});
  std::vector<uint8_t> px = sample_pixels(0, 5, 64, 48);
  std::vector<uint8_t> jpeg = encode_jpeg(px.data(), 64, 48, 3, 90);
  jpeg.resize(jpeg.size() / 2);
  test::write_file(c0 / "img_005.JPEG", jpeg);
  std::vector<uint8_t> noise(3000);
  for (size_t i = 0; i < noise.size(); ++i) noise[i] = static_cast<uint8_t>(i * 7919 % 251);
  test::write_file(dir.path() / "class_1" / "img_003.JPEG", noise);
  *bad_names = {"class_0/img_002.JPEG", "class_0/img_005.JPEG", "class_1/img_003.JPEG"};
  return scan_folder(dir.path());
}

TEST(Loader, BadImagesAreSkippedCountedAndReplacedByTheNextSample) {
  TempDir dir;
  std::vector<std::string> names;
  FolderIndex index = bad_folder(dir, &names);
  LoaderConfig c = small_config(false);
  c.batch = 20;
  c.max_bad_fraction = 0.5;
  Loader loader(index, c);
  loader.start_epoch(0);
  const HostBatch& b = loader.next();
  ASSERT_EQ(b.count, 20);
  LoaderStats st = loader.stats();
  EXPECT_EQ(st.bad_images, 3);
  ASSERT_EQ(st.bad_paths.size(), 3u);
  for (size_t i = 0; i < 3; ++i) EXPECT_NE(st.bad_paths[i].find(names[i]), std::string::npos) << st.bad_paths[i];
  // Val order is canonical: bad slot 2 holds sample 3's image and label, 5 holds 6's, and
  // class_1's img_003 (sample 13) holds sample 14's.
  const int64_t px = 16 * 16 * 3;
  const uint8_t* p = b.images.data<uint8_t>();
  for (int bad : {2, 5, 13}) {
    EXPECT_TRUE(std::equal(p + bad * px, p + (bad + 1) * px, p + (bad + 1) * px)) << "slot " << bad;
    EXPECT_EQ(b.labels.data<int32_t>()[bad], b.labels.data<int32_t>()[bad + 1]);
  }
}

TEST(Loader, FailPolicyThrowsNamingThePath) {
  TempDir dir;
  std::vector<std::string> names;
  FolderIndex index = bad_folder(dir, &names);
  LoaderConfig c = small_config(false);
  c.batch = 2;
  c.bad_images = BadImagePolicy::fail;
  Loader loader(index, c);
  loader.start_epoch(0);
  loader.next();  // samples 0, 1: good
  try {
    loader.next();
    FAIL() << "no error for a zero-byte file";
  } catch (const DataError& e) {
    EXPECT_NE(std::string(e.what()).find(names[0]), std::string::npos) << e.what();
  }
}

TEST(Loader, TooManyBadImagesStopWithTheList) {
  TempDir dir;
  std::vector<std::string> names;
  FolderIndex index = bad_folder(dir, &names);
  LoaderConfig c = small_config(false);  // max_bad_fraction 1%: 3 of 20 is far more
  c.batch = 20;
  Loader loader(index, c);
  loader.start_epoch(0);
  try {
    loader.next();
    FAIL() << "no error for 15% bad images";
  } catch (const DataError& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("3 bad images"), std::string::npos) << what;
    for (const std::string& n : names) EXPECT_NE(what.find(n), std::string::npos) << what;
  }
}

TEST(Loader, DestructorWhileThreadsAreBusyDoesNotHang) {
  TempDir dir;
  make_folder(dir.path(), 4, {25, 25, 25, 25});
  FolderIndex index = scan_folder(dir.path());
  LoaderConfig c = small_config(true);
  c.image_size = 64;
  c.threads = 8;
  c.prefetch = 8;
  const auto t0 = std::chrono::steady_clock::now();
  for (int round = 0; round < 5; ++round) {
    Loader loader(index, c);
    loader.start_epoch(round);
    if (round % 2) loader.next();
  }
  { Loader never_started(index, c); }
  EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), 30.0);
}

TEST(Loader, AnExceptionInADecodeThreadIsRethrownAtNextWithThePath) {
  TempDir dir;
  make_folder(dir.path(), 2, {8, 8});
  FolderIndex index = scan_folder(dir.path());
  LoaderConfig c = small_config(false);
  c.threads = 4;
  Loader loader(index, c);
  testing::loader_fault_hook = [](int64_t s) {
    if (s == 9) throw std::runtime_error("injected failure");
  };
  loader.start_epoch(0);
  loader.next();
  loader.next();  // samples 0..7
  try {
    loader.next();
    testing::loader_fault_hook = nullptr;
    FAIL() << "the decode thread's exception was lost";
  } catch (const DataError& e) {
    testing::loader_fault_hook = nullptr;
    const std::string what = e.what();
    EXPECT_NE(what.find("injected failure"), std::string::npos) << what;
    EXPECT_NE(what.find("class_1/img_001.JPEG"), std::string::npos) << what;
  }
  // The loader still works after the error.
  loader.start_epoch(0, 3);
  EXPECT_EQ(loader.next().count, 4);
}

TEST(Loader, StatsCountBatchesImagesAndWait) {
  TempDir dir;
  make_folder(dir.path(), 2, {8, 8});
  FolderIndex index = scan_folder(dir.path());
  Loader loader(index, small_config(true));
  run_epoch(loader, 0);
  LoaderStats s = loader.stats();
  EXPECT_EQ(s.batches, 4);
  EXPECT_EQ(s.images, 16);
  EXPECT_GE(s.wait_seconds, 0.0);
  EXPECT_EQ(s.bad_images, 0);
  EXPECT_THROW(loader.next(), DataError) << "past the end of the epoch";
}

TEST(Loader, TooFewSamplesForOneGlobalBatchIsAnError) {
  TempDir dir;
  make_folder(dir.path(), 1, {5});
  LoaderConfig c = small_config(true);
  c.world = 2;
  c.batch = 3;
  EXPECT_THROW(Loader(scan_folder(dir.path()), c), DataError);
}

}  // namespace
}  // namespace lockstep::data
