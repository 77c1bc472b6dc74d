// IDX reading (raw and gzip, strict validation) and the import into a JPEG folder.
#include "data/idx.h"

#include <gtest/gtest.h>

#include <fstream>

#include "data/decode.h"
#include "data_test_util.h"

namespace lockstep::data {
namespace {

namespace fs = std::filesystem;
using test::TempDir;

std::vector<uint8_t> ramp(size_t n, int mul) {
  std::vector<uint8_t> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = static_cast<uint8_t>(i * mul % 256);
  return v;
}

std::string error_of(const fs::path& p, int ndims = -1) {
  try {
    read_idx(p, ndims);
  } catch (const DataError& e) {
    return e.what();
  }
  return "";
}

TEST(Idx, RoundTripRawAndGzip) {
  TempDir dir;
  std::vector<uint8_t> data = ramp(5 * 7 * 3, 13);
  for (bool gz : {false, true}) {
    fs::path p = dir.path() / (gz ? "a.idx.gz" : "a.idx");
    write_idx(p, {5, 7, 3}, data.data(), gz);
    IdxArray a = read_idx(p, 3);
    EXPECT_EQ(a.dims, (std::vector<uint32_t>{5, 7, 3}));
    EXPECT_EQ(a.data, data);
  }
  // Gzip is recognised by its bytes, not the name.
  write_idx(dir.path() / "plain.gz", {4}, data.data(), false);
  write_idx(dir.path() / "zipped", {4}, data.data(), true);
  EXPECT_EQ(read_idx(dir.path() / "plain.gz").data, read_idx(dir.path() / "zipped").data);
}

TEST(Idx, StrictValidationNamesTheFile) {
  TempDir dir;
  const fs::path p = dir.path() / "bad.idx";
  auto write = [&](std::vector<uint8_t> bytes) { test::write_file(p, bytes); };
  write({0x00, 0x00, 0x08, 0x01, 0, 0, 0, 2, 9, 9});
  EXPECT_EQ(read_idx(p, 1).data, (std::vector<uint8_t>{9, 9}));

  write({0x12, 0x34, 0x08, 0x01, 0, 0, 0, 2, 9, 9});
  std::string e = error_of(p);
  EXPECT_NE(e.find("bad magic"), std::string::npos) << e;
  EXPECT_NE(e.find(p.string()), std::string::npos) << e;
  write({0x00, 0x00, 0x0D, 0x01, 0, 0, 0, 2, 9, 9});  // float data
  EXPECT_NE(error_of(p).find("unsupported element type"), std::string::npos) << error_of(p);
  write({0x00, 0x00, 0x08, 0x01, 0, 0, 0, 3, 9, 9});  // says 3, has 2
  EXPECT_NE(error_of(p).find("sizes say 3 bytes of data, the file has 2"), std::string::npos) << error_of(p);
  write({0x00, 0x00, 0x08, 0x01, 0, 0, 0, 1, 9, 9});  // trailing bytes
  EXPECT_NE(error_of(p).find("sizes say 1 bytes"), std::string::npos) << error_of(p);
  write({0x00, 0x00, 0x08, 0x03, 0, 0, 0, 1});  // header cut short
  EXPECT_NE(error_of(p).find("header cut short"), std::string::npos) << error_of(p);
  write({0x00, 0x00});
  EXPECT_NE(error_of(p).find("too short"), std::string::npos) << error_of(p);
  write({0x00, 0x00, 0x08, 0x01, 0, 0, 0, 2, 9, 9});
  EXPECT_NE(error_of(p, 3).find("1 dimensions, expected 3"), std::string::npos) << error_of(p, 3);
  write({0x00, 0x00, 0x08, 0x02, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff});  // claims 2^64 bytes
  EXPECT_NE(error_of(p).find("more than 4 GiB"), std::string::npos) << error_of(p);
  EXPECT_NE(error_of(dir.path() / "missing.idx").find("cannot open"), std::string::npos);

  // A truncated and a corrupt gzip stream.
  std::vector<uint8_t> data = ramp(4000, 7);
  write_idx(p, {4000}, data.data(), true);
  std::ifstream in(p, std::ios::binary);
  std::vector<uint8_t> gz((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::vector<uint8_t> cut(gz.begin(), gz.begin() + static_cast<std::ptrdiff_t>(gz.size() / 2));
  write(cut);
  EXPECT_NE(error_of(p).find("gzip"), std::string::npos) << error_of(p);
  for (size_t i = 12; i < gz.size() - 8; i += 3) gz[i] ^= 0x5a;
  write(gz);
  EXPECT_NE(error_of(p).find("gzip"), std::string::npos) << error_of(p);
}

TEST(Idx, ImportWritesRgbJpegsAtomicallyAndIdempotently) {
  TempDir dir;
  const int n = 12;
  std::vector<uint8_t> images(static_cast<size_t>(n) * 28 * 28), labels(n);
  for (int i = 0; i < n; ++i) {
    labels[static_cast<size_t>(i)] = static_cast<uint8_t>(i % 3);
    std::fill(images.begin() + i * 784, images.begin() + (i + 1) * 784, static_cast<uint8_t>(20 * i));
  }
  write_idx(dir.path() / "img.gz", {n, 28, 28}, images.data(), true);
  write_idx(dir.path() / "lab", {n}, labels.data(), false);
  IdxImport spec;
  spec.images = dir.path() / "img.gz";
  spec.labels = dir.path() / "lab";
  spec.root = dir.path() / "out";
  spec.split = "val";
  spec.class_names = {"zero", "one", "two"};
  IdxImportResult r = import_idx(spec);
  EXPECT_FALSE(r.already);
  EXPECT_EQ(r.images, n);
  EXPECT_EQ(r.dir, dir.path() / "out" / "val");

  FolderIndex index = scan_folder(r.dir);
  EXPECT_EQ(index.classes, (std::vector<std::string>{"0_zero", "1_one", "2_two"}));
  ASSERT_EQ(index.samples.size(), size_t{n});
  Decoder decoder;
  std::vector<uint8_t> file;
  for (const Sample& s : index.samples) {
    const int i = std::stoi(s.path.stem().string());
    EXPECT_EQ(s.label, i % 3) << s.path;
    EXPECT_EQ(s.path.filename().string().size(), 6u) << "zero-padded index: " << s.path;
    Decoder::read_file(s.path, file);
    Image im;
    decoder.decode(file.data(), file.size(), im);
    ASSERT_EQ(im.width, 28);
    ASSERT_EQ(im.height, 28);
    EXPECT_NEAR(im.pixels[3 * 400 + 1], 20 * i, 3) << s.path;
  }
  EXPECT_FALSE(fs::exists(dir.path() / "out" / ".import-val.tmp"));

  // Again: nothing to do. With other names: replaced whole.
  EXPECT_TRUE(import_idx(spec).already);
  spec.class_names.clear();
  EXPECT_FALSE(import_idx(spec).already);
  EXPECT_EQ(scan_folder(r.dir).classes, (std::vector<std::string>{"0", "1", "2"}));

  // A folder no import wrote is never replaced.
  fs::create_directories(dir.path() / "mine" / "train");
  spec.root = dir.path() / "mine";
  spec.split = "train";
  EXPECT_THROW(import_idx(spec), DataError);
}

TEST(Idx, ImportRejectsMismatchedCountsAndLabelsBeyondTheNames) {
  TempDir dir;
  std::vector<uint8_t> images(3 * 4 * 4, 0), labels = {0, 5, 1};
  write_idx(dir.path() / "img", {3, 4, 4}, images.data(), false);
  write_idx(dir.path() / "lab", {3}, labels.data(), false);
  write_idx(dir.path() / "lab2", {2}, labels.data(), false);
  IdxImport spec;
  spec.images = dir.path() / "img";
  spec.labels = dir.path() / "lab2";
  spec.root = dir.path() / "out";
  try {
    import_idx(spec);
    FAIL();
  } catch (const DataError& e) {
    EXPECT_NE(std::string(e.what()).find("holds 3 images but"), std::string::npos) << e.what();
  }
  spec.labels = dir.path() / "lab";
  spec.class_names = {"a", "b"};
  EXPECT_THROW(import_idx(spec), DataError);
  spec.class_names = {"a", "b", "c", "d", "e", ".f"};
  EXPECT_THROW(import_idx(spec), DataError);
  EXPECT_FALSE(fs::exists(dir.path() / "out" / "train"));
}

TEST(Idx, RealFashionMnist) {
  const fs::path root = "/usr/share/datasets/fashion-mnist";
  if (!fs::exists(root / "t10k-images-idx3-ubyte.gz"))
    GTEST_SKIP() << root << " is absent (Debian package dataset-fashion-mnist; tools/setup-deps.sh installs it)";
  IdxArray images = read_idx(root / "t10k-images-idx3-ubyte.gz", 3);
  IdxArray labels = read_idx(root / "t10k-labels-idx1-ubyte.gz", 1);
  EXPECT_EQ(images.dims, (std::vector<uint32_t>{10000, 28, 28}));
  EXPECT_EQ(labels.dims, (std::vector<uint32_t>{10000}));
  std::vector<int> per_class(10);
  for (uint8_t l : labels.data) {
    ASSERT_LT(l, 10);
    ++per_class[l];
  }
  EXPECT_EQ(per_class, std::vector<int>(10, 1000));
  IdxArray train = read_idx(root / "train-labels-idx1-ubyte.gz", 1);
  EXPECT_EQ(train.dims, (std::vector<uint32_t>{60000}));
}

}  // namespace
}  // namespace lockstep::data
