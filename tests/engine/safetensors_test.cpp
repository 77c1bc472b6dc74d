// safetensors: round trips of every dtype (0-d and empty tensors, metadata), the exact bytes of
// a tiny file worked out by hand, one test per kind of corruption checking that the message names
// the file and the problem, writer-side refusals, and a seeded mutation test: 2000 corrupted
// files each end in a clean Error or a fully readable file.
#include <gtest/gtest.h>

#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "engine/checkpoint/atomic_dir.h"
#include "engine/checkpoint/safetensors.h"

namespace lockstep::engine {
namespace {

namespace fs = std::filesystem;

std::vector<std::byte> to_bytes(std::string_view s) {
  const auto* p = reinterpret_cast<const std::byte*>(s.data());
  return {p, p + s.size()};
}

// A file from a hand-written header: 8-byte length, the JSON text, `data_size` bytes of data.
std::vector<std::byte> make_file(std::string_view header, size_t data_size) {
  std::vector<std::byte> out(8);
  uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) out[i] = static_cast<std::byte>((n >> (8 * i)) & 0xff);
  auto h = to_bytes(header);
  out.insert(out.end(), h.begin(), h.end());
  for (size_t i = 0; i < data_size; ++i) out.push_back(static_cast<std::byte>(i * 7 + 1));
  return out;
}

void set_header_length(std::vector<std::byte>& file, uint64_t n) {
  for (int i = 0; i < 8; ++i) file[i] = static_cast<std::byte>((n >> (8 * i)) & 0xff);
}

// The message of the SafetensorsError that parsing `bytes` throws ("" if it does not throw).
std::string parse_error(std::vector<std::byte> bytes, const std::string& name = "bad.safetensors") {
  try {
    SafetensorsFile::parse(std::move(bytes), name);
  } catch (const SafetensorsError& e) {
    return e.what();
  }
  return "";
}

class TempDir {
 public:
  TempDir() {
    std::string tmpl = (fs::path(testing::TempDir()) / "safetensors-XXXXXX").string();
    EXPECT_NE(::mkdtemp(tmpl.data()), nullptr);
    path_ = tmpl;
  }
  ~TempDir() { fs::remove_all(path_); }
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

// Deterministic bytes for a tensor.
std::vector<std::byte> pattern(size_t bytes, unsigned seed) {
  std::vector<std::byte> v(bytes);
  for (size_t i = 0; i < bytes; ++i) v[i] = static_cast<std::byte>((i * 31 + seed * 17 + 5) & 0xff);
  return v;
}

// ---- round trips ---------------------------------------------------------------------------

TEST(Safetensors, RoundTripsEveryDtypeScalarsEmptyTensorsAndMetadata) {
  const std::vector<std::pair<std::string, size_t>> dtypes = {
      {"BOOL", 1}, {"U8", 1}, {"I8", 1}, {"F8_E5M2", 1}, {"F8_E4M3", 1}, {"I16", 2}, {"U16", 2}, {"F16", 2},
      {"BF16", 2}, {"I32", 4}, {"U32", 4}, {"F32", 4},    {"F64", 8},     {"I64", 8}, {"U64", 8}};
  std::vector<std::vector<std::byte>> storage;
  std::vector<TensorEntry> entries;
  unsigned seed = 0;
  for (const auto& [dtype, size] : dtypes) {
    ASSERT_EQ(safetensors_dtype_size(dtype), size) << dtype;
    storage.push_back(pattern(2 * 3 * size, ++seed));
    entries.push_back({"layer." + dtype + ".weight", dtype, {2, 3}, storage.back().data(), storage.back().size()});
  }
  storage.push_back(pattern(4, ++seed));
  entries.push_back({"scalar", "F32", {}, storage.back().data(), 4});  // 0-d
  entries.push_back({"empty", "I64", {0, 4}, nullptr, 0});
  storage.push_back(pattern(8, ++seed));
  entries.push_back({"after_empty", "I64", {1}, storage.back().data(), 8});
  entries.push_back({"empty_last", "F32", {3, 0, 2}, nullptr, 0});
  const std::map<std::string, std::string> metadata = {{"format", "pt"}, {"step", "1200"}, {"note", "µ ✓"}};

  TempDir dir;
  const fs::path path = dir.path() / "all.safetensors";
  write_safetensors(path, entries, metadata);
  EXPECT_EQ(read_file(path), serialize_safetensors(entries, metadata));  // one encoder for both

  SafetensorsFile f = SafetensorsFile::open(path);
  EXPECT_EQ(f.name(), path.string());
  EXPECT_EQ(f.metadata(), metadata);
  ASSERT_EQ(f.tensors().size(), entries.size());
  for (size_t i = 0; i < entries.size(); ++i) {
    const TensorEntry& e = entries[i];
    const TensorInfo& t = f.tensors()[i];  // data order == the order written
    SCOPED_TRACE(e.name);
    EXPECT_EQ(t.name, e.name);
    EXPECT_EQ(t.dtype, e.dtype);
    EXPECT_EQ(t.shape, e.shape);
    EXPECT_EQ(t.bytes(), e.bytes);
    EXPECT_EQ(f.find(e.name), &t);
    std::vector<std::byte> got(t.bytes());
    f.read(t, got.data(), got.size());
    if (e.bytes > 0) {
      EXPECT_EQ(std::memcmp(got.data(), e.data, e.bytes), 0);
    }
  }
  EXPECT_EQ(f.find("scalar")->numel(), 1u);
  EXPECT_EQ(f.find("empty")->numel(), 0u);
  EXPECT_EQ(f.find("nope"), nullptr);
  EXPECT_EQ(f.find("layer.F32.weight")->ldtype, DType::f32);
  EXPECT_EQ(f.find("layer.BF16.weight")->ldtype, DType::bf16);
  EXPECT_EQ(f.find("layer.F16.weight")->ldtype, DType::f16);
  EXPECT_EQ(f.find("layer.U8.weight")->ldtype, DType::u8);
  EXPECT_EQ(f.find("layer.I32.weight")->ldtype, DType::i32);
  EXPECT_EQ(f.find("layer.U32.weight")->ldtype, DType::u32);
  EXPECT_FALSE(f.find("layer.I64.weight")->ldtype.has_value());
  EXPECT_FALSE(f.find("layer.BOOL.weight")->ldtype.has_value());
}

TEST(Safetensors, I64NumBatchesTrackedKeepsItsValue) {
  const int64_t tracked = 12'345'678'901;  // torchvision's BatchNorm counter, beyond 32 bits
  TempDir dir;
  const fs::path path = dir.path() / "bn.safetensors";
  write_safetensors(path, {{"bn1.num_batches_tracked", "I64", {}, &tracked, sizeof tracked}});
  SafetensorsFile f = SafetensorsFile::open(path);
  int64_t got = 0;
  f.read(*f.find("bn1.num_batches_tracked"), &got, sizeof got);
  EXPECT_EQ(got, tracked);
  EXPECT_TRUE(f.metadata().empty());
}

TEST(Safetensors, DtypeNamesMapBothWays) {
  for (DType t : {DType::f32, DType::bf16, DType::f16, DType::u8, DType::i32, DType::u32}) {
    EXPECT_EQ(lockstep_dtype(safetensors_dtype(t)), t);
    EXPECT_EQ(safetensors_dtype_size(safetensors_dtype(t)), dtype_size(t));
  }
  EXPECT_FALSE(safetensors_dtype_size("F4").has_value());  // sub-byte: not supported
  EXPECT_FALSE(safetensors_dtype_size("f32").has_value());  // names are case-sensitive
}

TEST(Safetensors, EmptyFileHasOnlyAHeader) {
  auto bytes = serialize_safetensors({});
  // "{}" padded to 8 bytes with spaces.
  EXPECT_EQ(bytes, make_file("{}      ", 0));
  EXPECT_TRUE(SafetensorsFile::parse(bytes, "e").tensors().empty());
}

// ---- exact bytes -----------------------------------------------------------------------------

TEST(Safetensors, TinyFileIsByteExact) {
  const float a[2] = {1.0f, -2.0f};
  const int64_t b = 7;
  auto bytes = serialize_safetensors({{"a", "F32", {2}, a, sizeof a}, {"b", "I64", {}, &b, sizeof b}},
                                     {{"format", "pt"}});
  // Compact JSON, metadata first, then the tensors in order; 138 characters + 6 spaces = 144.
  const std::string header =
      R"({"__metadata__":{"format":"pt"},)"
      R"("a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
      R"("b":{"dtype":"I64","shape":[],"data_offsets":[8,16]}})";
  ASSERT_EQ(header.size(), 138u);
  std::vector<unsigned char> expected = {0x90, 0, 0, 0, 0, 0, 0, 0};  // 144, little-endian
  expected.insert(expected.end(), header.begin(), header.end());
  expected.insert(expected.end(), 6, ' ');
  for (unsigned char c : {0x00, 0x00, 0x80, 0x3f,   // 1.0f
                          0x00, 0x00, 0x00, 0xc0,   // -2.0f
                          0x07, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00}) {  // 7 as i64
    expected.push_back(c);
  }
  ASSERT_EQ(bytes.size(), expected.size());
  EXPECT_EQ(std::memcmp(bytes.data(), expected.data(), expected.size()), 0)
      << std::string(reinterpret_cast<const char*>(bytes.data()) + 8, 144);
  EXPECT_EQ((8 + 144) % 8, 0);  // data 8-byte aligned
}

// ---- corruption ------------------------------------------------------------------------------

// A valid two-tensor file: "w" F32 [2, 2] (16 bytes) then "b" F32 [3] (12 bytes).
std::vector<std::byte> valid_file() {
  const float w[4] = {1, 2, 3, 4}, b[3] = {5, 6, 7};
  return serialize_safetensors({{"w", "F32", {2, 2}, w, sizeof w}, {"b", "F32", {3}, b, sizeof b}},
                               {{"format", "pt"}});
}

TEST(Safetensors, ValidFileParses) { EXPECT_EQ(parse_error(valid_file()), ""); }

TEST(SafetensorsCorrupt, TruncatedByOneByte) {
  auto f = valid_file();
  f.pop_back();
  std::string e = parse_error(f);
  EXPECT_NE(e.find("bad.safetensors: tensor 'b' data_offsets"), std::string::npos) << e;
  EXPECT_NE(e.find("truncated"), std::string::npos) << e;
}

TEST(SafetensorsCorrupt, FlippedBitInHeaderLength) {
  for (int bit : {0, 3, 9, 30, 47, 63}) {
    auto f = valid_file();
    f[bit / 8] ^= static_cast<std::byte>(1u << (bit % 8));
    std::string e = parse_error(f);
    SCOPED_TRACE("bit " + std::to_string(bit));
    EXPECT_NE(e.find("bad.safetensors: header"), std::string::npos) << e;  // "header length" or "header"
  }
  auto f = valid_file();
  f[7] ^= std::byte{0x80};
  EXPECT_NE(parse_error(f).find("header length: 9223372036854775"), std::string::npos) << parse_error(f);
  EXPECT_NE(parse_error(f).find("exceeds the limit of 100000000"), std::string::npos);
}

TEST(SafetensorsCorrupt, HeaderLengthLargerThanFile) {
  auto f = valid_file();
  set_header_length(f, f.size() - 8 + 1);
  std::string e = parse_error(f);
  EXPECT_NE(e.find("bad.safetensors: header length: " + std::to_string(f.size() - 7) + " is larger than the " +
                   std::to_string(f.size() - 8) + " bytes after it"),
            std::string::npos)
      << e;
}

TEST(SafetensorsCorrupt, ShorterThanEightBytes) {
  for (size_t n : {0, 1, 7}) {
    std::string e = parse_error(std::vector<std::byte>(n));
    EXPECT_NE(e.find("header length: file has " + std::to_string(n) + " bytes"), std::string::npos) << e;
  }
}

TEST(SafetensorsCorrupt, OpenNamesThePath) {
  TempDir dir;
  const fs::path path = dir.path() / "model.safetensors";
  auto f = valid_file();
  f.push_back(std::byte{0});
  write_file_synced(path, f);
  try {
    SafetensorsFile::open(path);
    FAIL() << "no error";
  } catch (const SafetensorsError& e) {
    EXPECT_EQ(e.file(), path.string());
    EXPECT_EQ(e.field(), "data");
    EXPECT_EQ(std::string(e.what()).rfind(path.string() + ": data: 1 trailing bytes", 0), 0u) << e.what();
  }
  try {
    SafetensorsFile::open(dir.path() / "missing.safetensors");
    FAIL() << "no error";
  } catch (const IoError& e) {
    EXPECT_EQ(e.error_code(), ENOENT);
    EXPECT_NE(std::string(e.what()).find("missing.safetensors: No such file or directory"), std::string::npos);
  }
}

// A hand-written header and the words its error must contain.
struct BadHeader {
  const char* test_name;
  std::string header;
  size_t data_size;
  std::vector<std::string> expect;  // substrings of the message
};

void PrintTo(const BadHeader& c, std::ostream* os) { *os << c.test_name; }

class SafetensorsBadHeader : public testing::TestWithParam<BadHeader> {};

TEST_P(SafetensorsBadHeader, IsRefusedNamingTheProblem) {
  const BadHeader& c = GetParam();
  std::string e = parse_error(make_file(c.header, c.data_size));
  ASSERT_FALSE(e.empty()) << "accepted: " << c.header;
  EXPECT_EQ(e.rfind("bad.safetensors: ", 0), 0u) << e;
  for (const std::string& s : c.expect) EXPECT_NE(e.find(s), std::string::npos) << "'" << s << "' not in: " << e;
}

const std::string kA = R"("a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]})";

INSTANTIATE_TEST_SUITE_P(
    Safetensors, SafetensorsBadHeader,
    testing::Values(
        BadHeader{"OverlappingOffsets",
                  "{" + kA + R"(,"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})", 12,
                  {"tensor 'b' data_offsets", "[4, 12] overlaps tensor 'a'"}},
        BadHeader{"SameOffsetsTwice", "{" + kA + R"(,"b":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", 8,
                  {"data_offsets", "overlaps tensor"}},
        BadHeader{"Gap", "{" + kA + R"(,"b":{"dtype":"F32","shape":[1],"data_offsets":[12,16]}})", 16,
                  {"tensor 'b' data_offsets", "gap of 4 bytes after tensor 'a'"}},
        BadHeader{"GapAtStart", R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", 8,
                  {"tensor 'a' data_offsets", "gap of 4 bytes after the header"}},
        BadHeader{"DuplicateName", "{" + kA + "," + kA + "}", 8, {"tensor 'a': duplicate name"}},
        BadHeader{"DuplicateFieldInEntry",
                  R"({"a":{"dtype":"F32","dtype":"F32","shape":[2],"data_offsets":[0,8]}})", 8,
                  {"tensor 'a': duplicate key 'dtype'"}},
        BadHeader{"DuplicateMetadataKey", R"({"__metadata__":{"k":"1","k":"2"},)" + kA + "}", 8,
                  {"__metadata__: duplicate key 'k'"}},
        BadHeader{"WrongShape", R"({"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", 8,
                  {"tensor 'a'", "shape [3] x F32 needs 12 bytes but data_offsets [0,8] span 8"}},
        BadHeader{"UnknownDtype", R"({"a":{"dtype":"F31","shape":[2],"data_offsets":[0,8]}})", 8,
                  {"tensor 'a' dtype: unknown dtype 'F31'"}},
        BadHeader{"NonUtf8", "{\"a\xff\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8,
                  {"header: not valid UTF-8 at byte 3"}},
        BadHeader{"Utf8Surrogate", "{\"a\xed\xa0\x80\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8,
                  {"header: not valid UTF-8 at byte 3"}},
        BadHeader{"OverlongUtf8", "{\"a\xc0\xaf\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8,
                  {"header: not valid UTF-8 at byte 3"}},
        BadHeader{"NulInHeader", std::string("{}\0 ", 4), 0, {"header: control byte 0x00 at byte 2"}},
        BadHeader{"ControlByteInName", "{\"a\x01\":{}}", 0, {"header: control byte 0x01 at byte 3"}},
        BadHeader{"TrailingBytes", "{" + kA + "}", 9, {"data: 1 trailing bytes after the last tensor"}},
        BadHeader{"TrailingBytesNoTensors", "{}", 3, {"data: 3 trailing bytes"}},
        BadHeader{"PastTheData", "{" + kA + "}", 7, {"tensor 'a' data_offsets", "runs past the data buffer of 7"}},
        BadHeader{"BeginAfterEnd", R"({"a":{"dtype":"F32","shape":[0],"data_offsets":[8,0]}})", 8,
                  {"tensor 'a' data_offsets: begin > end"}},
        BadHeader{"NegativeDim", R"({"a":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", 8,
                  {"tensor 'a' shape: dims must be non-negative integers"}},
        BadHeader{"FloatDim", R"({"a":{"dtype":"F32","shape":[2.0],"data_offsets":[0,8]}})", 8,
                  {"tensor 'a' shape: dims must be non-negative integers"}},
        BadHeader{"HugeDim", R"({"a":{"dtype":"U8","shape":[9223372036854775808],"data_offsets":[0,8]}})", 8,
                  {"tensor 'a' shape: dims must be non-negative integers"}},
        BadHeader{"ShapeOverflow",
                  R"({"a":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,0]}})", 0,
                  {"tensor 'a' shape: size of [4294967296, 4294967296] x F32 overflows"}},
        BadHeader{"ShapeOverflowByDtype",
                  R"({"a":{"dtype":"F64","shape":[2305843009213693952],"data_offsets":[0,0]}})", 0,
                  {"tensor 'a' shape", "overflows"}},
        BadHeader{"NegativeOffset", R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[-8,0]}})", 8,
                  {"tensor 'a' data_offsets: must hold non-negative integers (got -8)"}},
        BadHeader{"ThreeOffsets", R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8,8]}})", 8,
                  {"tensor 'a' data_offsets: must be [begin, end]"}},
        BadHeader{"MissingDtype", R"({"a":{"shape":[2],"data_offsets":[0,8]}})", 8, {"tensor 'a': missing dtype"}},
        BadHeader{"MissingShape", R"({"a":{"dtype":"F32","data_offsets":[0,8]}})", 8, {"tensor 'a': missing shape"}},
        BadHeader{"MissingOffsets", R"({"a":{"dtype":"F32","shape":[2]}})", 8, {"tensor 'a': missing data_offsets"}},
        BadHeader{"DtypeNotString", R"({"a":{"dtype":4,"shape":[2],"data_offsets":[0,8]}})", 8,
                  {"tensor 'a' dtype: must be a string (got 4)"}},
        BadHeader{"ShapeNotArray", R"({"a":{"dtype":"F32","shape":{"x":2},"data_offsets":[0,8]}})", 8,
                  {"tensor 'a' shape: must be an array (got an object)"}},
        BadHeader{"NestedShape", R"({"a":{"dtype":"F32","shape":[[2]],"data_offsets":[0,8]}})", 8,
                  {"tensor 'a' shape: dims must be non-negative integers (got an array)"}},
        BadHeader{"UnknownField", R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8],"x":1}})", 8,
                  {"tensor 'a': unknown field 'x'"}},
        BadHeader{"EntryNotObject", R"({"a":[1,2]})", 0, {"tensor 'a': must be an object (got array)"}},
        BadHeader{"MetadataNotObject", R"({"__metadata__":"pt"})", 0, {"__metadata__: must be an object"}},
        BadHeader{"MetadataValueNotString", R"({"__metadata__":{"step":12}})", 0,
                  {"__metadata__ 'step': value must be a string (got 12)"}},
        BadHeader{"NotJson", R"({"a":{"dtype":"F32",)", 8, {"header: not valid JSON"}},
        BadHeader{"NotAnObject", "[1, 2]", 0, {"header: must be a JSON object (got array)"}},
        BadHeader{"EmptyHeader", "", 0, {"header: not valid JSON"}},
        BadHeader{"TrailingJson", "{} {}", 0, {"header: not valid JSON"}}),
    [](const testing::TestParamInfo<BadHeader>& info) { return std::string(info.param.test_name); });

TEST(SafetensorsCorrupt, HeaderLongerThanTheBoundIsRefusedBeforeReading) {
  auto f = valid_file();
  set_header_length(f, kMaxHeaderBytes + 1);
  EXPECT_NE(parse_error(f).find("header length: 100000001 exceeds the limit"), std::string::npos) << parse_error(f);
}

TEST(Safetensors, EmptyTensorsMayShareABoundary) {
  auto f = make_file(
      R"({"z0":{"dtype":"F32","shape":[0],"data_offsets":[0,0]},)"
      R"("a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
      R"("z1":{"dtype":"I64","shape":[2,0],"data_offsets":[8,8]}})",
      8);
  EXPECT_EQ(parse_error(f), "");
  auto g = make_file(
      R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
      R"("z":{"dtype":"F32","shape":[0],"data_offsets":[4,4]}})",  // inside 'a'
      8);
  EXPECT_NE(parse_error(g).find("tensor 'z' data_offsets: [4, 4] overlaps tensor 'a'"), std::string::npos)
      << parse_error(g);
}

// ---- reading misuse and writer refusals --------------------------------------------------------

TEST(Safetensors, ReadChecksSizeAndOwnership) {
  SafetensorsFile f = SafetensorsFile::parse(valid_file(), "v");
  const TensorInfo& w = *f.find("w");
  float out[4];
  EXPECT_THROW(f.read(w, out, 12), Error);
  f.read(w, out, sizeof out);
  EXPECT_EQ(out[3], 4.0f);
  TensorInfo forged = w;
  forged.end += 4;
  EXPECT_THROW(f.data(forged), Error);
  forged.name = "nope";
  EXPECT_THROW(f.data(forged), Error);
}

TEST(Safetensors, WriterRefusesBadEntriesBeforeTouchingTheDisk) {
  TempDir dir;
  const fs::path path = dir.path() / "w.safetensors";
  const float x[2] = {1, 2};
  struct Bad {
    std::vector<TensorEntry> entries;
    std::map<std::string, std::string> metadata;
    std::string expect;
  };
  const std::vector<Bad> cases = {
      {{{"x", "F33", {2}, x, 8}}, {}, "tensor 'x' dtype: unknown dtype 'F33'"},
      {{{"x", "F32", {3}, x, 8}}, {}, "tensor 'x': shape [3] x F32 needs 12 bytes, got 8"},
      {{{"x", "F32", {-2}, x, 8}}, {}, "tensor 'x' shape: negative dim"},
      {{{"x", "F32", {2}, x, 8}, {"x", "F32", {2}, x, 8}}, {}, "tensor 'x': duplicate name"},
      {{{"__metadata__", "F32", {2}, x, 8}}, {}, "tensor '__metadata__': the name is reserved"},
      {{{"x\xff", "F32", {2}, x, 8}}, {}, "the name is not valid UTF-8"},
      {{{"x", "F32", {2}, nullptr, 8}}, {}, "tensor 'x': data is null"},
      {{{"x", "F32", {1LL << 62, 1LL << 62}, x, 8}}, {}, "overflows"},
      {{}, {{"k", "\xc3"}}, "__metadata__ 'k': the value is not valid UTF-8"},
  };
  for (const Bad& c : cases) {
    SCOPED_TRACE(c.expect);
    try {
      write_safetensors(path, c.entries, c.metadata);
      ADD_FAILURE() << "no error";
    } catch (const SafetensorsError& e) {
      EXPECT_EQ(e.file(), path.string());
      EXPECT_NE(std::string(e.what()).find(c.expect), std::string::npos) << e.what();
    }
    EXPECT_FALSE(fs::exists(path));
  }
}

TEST(Safetensors, WriteIntoAMissingDirectoryNamesThePath) {
  TempDir dir;
  const fs::path path = dir.path() / "no-such-dir" / "w.safetensors";
  try {
    write_safetensors(path, {});
    FAIL() << "no error";
  } catch (const IoError& e) {
    EXPECT_EQ(e.error_code(), ENOENT);
    EXPECT_EQ(std::string(e.what()), "open " + path.string() + ": No such file or directory");
  }
}

// ---- mutations -------------------------------------------------------------------------------

// Every mutation of a valid file either throws lockstep::Error (any other exception, or a crash,
// fails) or yields a file whose tensors are consistent and all readable.
TEST(Safetensors, RandomMutationsNeverCrashOrHalfLoad) {
  std::vector<std::vector<std::byte>> storage;
  std::vector<TensorEntry> entries;
  const char* dtypes[] = {"F32", "BF16", "I64", "U8"};
  for (int i = 0; i < 6; ++i) {
    const std::string dtype = dtypes[i % 4];
    std::vector<int64_t> shape = {i % 3 + 1, 2};
    if (i == 4) shape = {};
    if (i == 5) shape = {0};
    size_t bytes = *safetensors_dtype_size(dtype);
    for (int64_t d : shape) bytes *= static_cast<size_t>(d);
    storage.push_back(pattern(bytes, static_cast<unsigned>(i)));
    entries.push_back({"t" + std::to_string(i), dtype, shape, storage.back().data(), bytes});
  }
  const std::vector<std::byte> good = serialize_safetensors(entries, {{"format", "pt"}});

  std::mt19937_64 rng(20240607);
  int refused = 0, accepted = 0;
  for (int iter = 0; iter < 2000; ++iter) {
    std::vector<std::byte> f = good;
    switch (iter % 4) {
      case 0: {  // flip 1-3 random bits anywhere
        int flips = 1 + static_cast<int>(rng() % 3);
        for (int k = 0; k < flips; ++k) f[rng() % f.size()] ^= static_cast<std::byte>(1u << (rng() % 8));
        break;
      }
      case 1:  // overwrite a random byte of the header (the interesting part) with a random value
        f[rng() % (f.size() - 40)] = static_cast<std::byte>(rng() & 0xff);
        break;
      case 2:  // truncate at a random length
        f.resize(rng() % f.size());
        break;
      case 3: {  // append or insert random bytes
        size_t at = rng() % (f.size() + 1), n = 1 + rng() % 8;
        for (size_t k = 0; k < n; ++k) f.insert(f.begin() + static_cast<std::ptrdiff_t>(at), std::byte(rng() & 0xff));
        break;
      }
    }
    try {
      SafetensorsFile s = SafetensorsFile::parse(f, "mutant");
      ++accepted;
      uint64_t covered = 0;
      for (const TensorInfo& t : s.tensors()) {
        ASSERT_EQ(t.numel() * *safetensors_dtype_size(t.dtype), t.bytes());
        std::vector<std::byte> out(t.bytes());
        s.read(t, out.data(), out.size());
        auto span = s.data(t);
        ASSERT_GE(span.data(), s.file_bytes().data());
        ASSERT_LE(span.data() + span.size(), s.file_bytes().data() + s.file_bytes().size());
        covered += t.bytes();
      }
      ASSERT_LE(covered, s.file_bytes().size());
    } catch (const Error& e) {
      ++refused;
      ASSERT_EQ(std::string(e.what()).rfind("mutant: ", 0), 0u) << e.what();
    }
  }
  // Both outcomes occur: data-only flips leave a valid file, the rest is refused.
  EXPECT_GT(accepted, 50);
  EXPECT_GT(refused, 1000);
}

}  // namespace
}  // namespace lockstep::engine
