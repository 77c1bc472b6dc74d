// safetensors files (https://github.com/huggingface/safetensors): a strict reader and a writer.
//
// Layout: an 8-byte little-endian u64 N, N bytes of UTF-8 JSON, then the data buffer:
//   {"__metadata__": {"k": "v", ...},                        (optional, string -> string)
//    "name": {"dtype": "F32", "shape": [K, C, R, S], "data_offsets": [begin, end]}, ...}
// Offsets are relative to the start of the data buffer (byte 8 + N of the file).
//
// Reader policy (ARCHITECTURE decisions 10-11): the whole header is validated before open()
// returns, so a bad file is never half-loaded. Every violation throws SafetensorsError whose
// message names the file and the field or tensor. Refused: a file shorter than 8 bytes; N larger
// than the file or than kMaxHeaderBytes; a header that is not UTF-8, not JSON, not an object;
// duplicate keys at any level; an entry that is not an object, lacks or mistypes dtype / shape /
// data_offsets, or has any other field; an unknown dtype; a shape dim that is negative, not an
// integer, or whose product x dtype size overflows u64; begin > end; end - begin != that size;
// offsets that do not tile the data buffer exactly (sorted by begin: the first begins at 0, each
// begins where the previous ended, the last ends at the file's end) - so overlaps, gaps,
// truncation and trailing bytes are all errors. The file is read whole into memory: parsing and
// any later hash see the same bytes, and read() cannot fail afterwards.
//
// Writer: tensors in the order given, offsets tiling the buffer in that order; the header is the
// compact JSON the reference writes ("__metadata__" first when non-empty, then each tensor's
// dtype, shape, data_offsets), padded with spaces so that the data starts 8-byte aligned.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "kernels/dtype.h"
#include "kernels/error.h"

namespace lockstep::engine {

// The reference's bound on the header (100 MB): a larger N is refused before any allocation.
inline constexpr uint64_t kMaxHeaderBytes = 100'000'000;

// A malformed file or a malformed write request. what() is "<file>: <field>: <problem>".
class SafetensorsError : public Error {
 public:
  SafetensorsError(std::string file, std::string field, const std::string& problem);
  const std::string& file() const { return file_; }
  const std::string& field() const { return field_; }  // "header length", "tensor 'fc.weight'"...

 private:
  std::string file_;
  std::string field_;
};

// "[64, 3, 7, 7]": a shape as error messages show it.
std::string shape_text(const std::vector<int64_t>& shape);

// Byte size of one element of a safetensors dtype ("F32", "BF16", "I64", "BOOL", ...), or
// nullopt for a dtype this reader does not know. Sub-byte types (F4, F6_*) are unknown.
std::optional<size_t> safetensors_dtype_size(std::string_view dtype);
// lockstep's DType for F32, BF16, F16, U8, I32, U32; nullopt for the others (I64, F64, ...).
std::optional<DType> lockstep_dtype(std::string_view dtype);
// "F32", "BF16", "F16", "U8", "I32", "U32".
std::string_view safetensors_dtype(DType t);

// One tensor to write: `bytes` bytes at `data`, little-endian, row-major in `shape`'s order.
struct TensorEntry {
  std::string name;
  std::string dtype;           // a safetensors dtype: "F32", "I64", ...
  std::vector<int64_t> shape;  // {} is a 0-d scalar; a 0 dim makes an empty tensor
  const void* data = nullptr;  // may be null only when bytes == 0
  size_t bytes = 0;            // must equal product(shape) * dtype size
};

// Writes `path` (created or truncated, then fsync'd and closed; on any failure the partial file
// is removed). Throws SafetensorsError for a bad entry (unknown dtype, size mismatch, duplicate
// or reserved name, non-UTF-8 text) before touching the disk, Error naming the path and
// strerror for a failed syscall.
void write_safetensors(const std::filesystem::path& path, const std::vector<TensorEntry>& tensors,
                       const std::map<std::string, std::string>& metadata = {});
// The same file as bytes in memory (for small files and tests); `path` only names it in errors.
std::vector<std::byte> serialize_safetensors(const std::vector<TensorEntry>& tensors,
                                             const std::map<std::string, std::string>& metadata = {},
                                             std::string_view path = "<memory>");

struct TensorInfo {
  std::string name;
  std::string dtype;              // as written in the file
  std::optional<DType> ldtype;    // lockstep_dtype(dtype)
  std::vector<int64_t> shape;
  uint64_t begin = 0, end = 0;    // data_offsets, relative to the data buffer
  uint64_t bytes() const { return end - begin; }
  uint64_t numel() const;         // product(shape); 1 for 0-d
};

class SafetensorsFile {
 public:
  // Reads and validates the whole file; throws SafetensorsError / Error, never half-loads.
  static SafetensorsFile open(const std::filesystem::path& path);
  // Validates `bytes` as a file; `name` is used in error messages.
  static SafetensorsFile parse(std::vector<std::byte> bytes, std::string name);

  const std::string& name() const { return name_; }
  // Sorted by data offset (for files this writer made: the order they were written in).
  const std::vector<TensorInfo>& tensors() const { return tensors_; }
  const TensorInfo* find(std::string_view name) const;  // nullptr when absent
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  // Copies a tensor's bytes to dst; `bytes` must equal info.bytes() and info come from this file.
  void read(const TensorInfo& info, void* dst, size_t bytes) const;
  // The tensor's bytes in place (valid while this object lives).
  std::span<const std::byte> data(const TensorInfo& info) const;
  // The whole file as read (e.g. to hash it).
  std::span<const std::byte> file_bytes() const { return bytes_; }

 private:
  SafetensorsFile() = default;
  size_t index_of(const TensorInfo& info) const;

  std::string name_;
  std::vector<std::byte> bytes_;  // the whole file
  uint64_t data_start_ = 0;       // 8 + N
  std::vector<TensorInfo> tensors_;
  std::map<std::string, size_t, std::less<>> by_name_;  // name -> index in tensors_
  std::map<std::string, std::string> metadata_;
};

}  // namespace lockstep::engine
