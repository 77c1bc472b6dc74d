// safetensors reader and writer: see safetensors.h for the format and the validation policy.
#include "engine/checkpoint/safetensors.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <cstring>
#include <limits>
#include <set>
#include <sstream>
#include <tuple>
#include <utility>

#include <nlohmann/json.hpp>

#include "engine/checkpoint/atomic_dir.h"

namespace lockstep::engine {

namespace {

using nlohmann::json;

struct DTypeRow {
  std::string_view name;
  size_t size;
};
// The safetensors dtypes with whole-byte elements.
constexpr std::array<DTypeRow, 15> kDTypes{{{"BOOL", 1},
                                            {"U8", 1},
                                            {"I8", 1},
                                            {"F8_E5M2", 1},
                                            {"F8_E4M3", 1},
                                            {"I16", 2},
                                            {"U16", 2},
                                            {"F16", 2},
                                            {"BF16", 2},
                                            {"I32", 4},
                                            {"U32", 4},
                                            {"F32", 4},
                                            {"F64", 8},
                                            {"I64", 8},
                                            {"U64", 8}}};

std::string squote(std::string_view name) {
  std::string s;  // not "'" + name + "'": GCC 12 misreports -Wrestrict on that
  s.reserve(name.size() + 2);
  s += '\'';
  s += name;
  s += '\'';
  return s;
}
std::string tensor_field(std::string_view name) { return "tensor " + squote(name); }


// Position of the first byte that breaks UTF-8 (overlongs, surrogates and > U+10FFFF included),
// or npos when `s` is valid.
size_t invalid_utf8_at(std::string_view s) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  size_t n = s.size(), i = 0;
  while (i < n) {
    unsigned c = p[i];
    size_t len;
    unsigned lo = 0x80, hi = 0xbf;  // allowed range of the second byte
    if (c < 0x80) {
      ++i;
      continue;
    } else if (c >= 0xc2 && c <= 0xdf) {
      len = 2;
    } else if (c >= 0xe0 && c <= 0xef) {
      len = 3;
      if (c == 0xe0) lo = 0xa0;  // overlong
      if (c == 0xed) hi = 0x9f;  // surrogates
    } else if (c >= 0xf0 && c <= 0xf4) {
      len = 4;
      if (c == 0xf0) lo = 0x90;  // overlong
      if (c == 0xf4) hi = 0x8f;  // > U+10FFFF
    } else {
      return i;
    }
    if (i + len > n) return i;
    if (p[i + 1] < lo || p[i + 1] > hi) return i;
    for (size_t k = 2; k < len; ++k) {
      if (p[i + k] < 0x80 || p[i + k] > 0xbf) return i;
    }
    i += len;
  }
  return std::string_view::npos;
}

// product(shape) * elem_size, or nullopt on overflow. Dims must already be >= 0.
std::optional<uint64_t> checked_bytes(const std::vector<int64_t>& shape, uint64_t elem_size) {
  uint64_t total = elem_size;
  for (int64_t d : shape) {
    if (__builtin_mul_overflow(total, static_cast<uint64_t>(d), &total)) return std::nullopt;
  }
  return total;
}

// ---- writer --------------------------------------------------------------------------------

// The 8-byte length and the padded JSON header for `tensors`, after checking every entry.
std::string encode_header(const std::vector<TensorEntry>& tensors,
                          const std::map<std::string, std::string>& metadata, std::string_view path) {
  const std::string file(path);
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) {
    nlohmann::ordered_json meta = nlohmann::ordered_json::object();
    for (const auto& [k, v] : metadata) {
      if (invalid_utf8_at(k) != std::string_view::npos) {
        throw SafetensorsError(file, "__metadata__", "a key is not valid UTF-8");
      }
      if (invalid_utf8_at(v) != std::string_view::npos) {
        throw SafetensorsError(file, "__metadata__ " + squote(k), "the value is not valid UTF-8");
      }
      meta[k] = v;
    }
    header["__metadata__"] = std::move(meta);
  }
  std::set<std::string_view> names;
  uint64_t offset = 0;
  for (const TensorEntry& t : tensors) {
    const std::string field = tensor_field(t.name);
    if (t.name == "__metadata__") throw SafetensorsError(file, field, "the name is reserved");
    if (invalid_utf8_at(t.name) != std::string_view::npos) {
      throw SafetensorsError(file, field, "the name is not valid UTF-8");
    }
    if (!names.insert(t.name).second) throw SafetensorsError(file, field, "duplicate name");
    std::optional<size_t> elem = safetensors_dtype_size(t.dtype);
    if (!elem) throw SafetensorsError(file, field + " dtype", "unknown dtype " + squote(t.dtype));
    for (int64_t d : t.shape) {
      if (d < 0) throw SafetensorsError(file, field + " shape", "negative dim in " + shape_text(t.shape));
    }
    std::optional<uint64_t> need = checked_bytes(t.shape, *elem);
    if (!need) throw SafetensorsError(file, field + " shape", "size of " + shape_text(t.shape) + " overflows");
    if (*need != t.bytes) {
      throw SafetensorsError(file, field, "shape " + shape_text(t.shape) + " x " + t.dtype + " needs " +
                                              std::to_string(*need) + " bytes, got " + std::to_string(t.bytes));
    }
    if (t.bytes > 0 && t.data == nullptr) throw SafetensorsError(file, field, "data is null");
    nlohmann::ordered_json entry = nlohmann::ordered_json::object();
    entry["dtype"] = t.dtype;
    entry["shape"] = t.shape;
    entry["data_offsets"] = {offset, offset + t.bytes};
    header[t.name] = std::move(entry);
    offset += t.bytes;
  }
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');
  std::string out(8, '\0');
  uint64_t n = text.size();
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((n >> (8 * i)) & 0xff);
  return out + text;
}

// ---- reader --------------------------------------------------------------------------------

// A JSON parse that remembers the first duplicate key at any depth (nlohmann keeps one silently).
json parse_header(std::string_view text, const std::string& file) {
  std::vector<std::set<std::string>> open_objects;  // keys seen in each open object
  std::vector<std::string> opened_under;              // the key each open object is the value of
  std::string last_key, duplicate, duplicate_in;
  bool found = false, at_root = false;
  auto callback = [&](int /*depth*/, json::parse_event_t event, json& parsed) {
    switch (event) {
      case json::parse_event_t::object_start:
        open_objects.emplace_back();
        opened_under.push_back(last_key);
        break;
      case json::parse_event_t::object_end:
        if (!open_objects.empty()) open_objects.pop_back();
        if (!opened_under.empty()) opened_under.pop_back();
        break;
      case json::parse_event_t::key:
        last_key = parsed.get<std::string>();
        if (!found && !open_objects.empty() && !open_objects.back().insert(last_key).second) {
          found = true;
          duplicate = last_key;
          at_root = open_objects.size() == 1;
          if (!at_root) duplicate_in = opened_under[1];  // the top-level entry it is inside
        }
        break;
      default:
        break;
    }
    return true;
  };
  json j;
  try {
    j = json::parse(text.begin(), text.end(), callback);
  } catch (const json::exception& e) {
    throw SafetensorsError(file, "header", std::string("not valid JSON: ") + e.what());
  }
  if (found && at_root) {
    throw SafetensorsError(file, duplicate == "__metadata__" ? duplicate : tensor_field(duplicate), "duplicate name");
  }
  if (found) {
    throw SafetensorsError(file, duplicate_in == "__metadata__" ? duplicate_in : tensor_field(duplicate_in),
                           "duplicate key " + squote(duplicate));
  }
  return j;
}

// A JSON value for an error message: scalars as written, containers by type only (dumping a
// hostile, deeply nested value would recurse without bound).
std::string brief(const json& v) {
  if (v.is_structured()) return std::string("an ") + v.type_name();
  std::string text = v.dump();
  return text.size() > 64 ? text.substr(0, 64) + "..." : text;
}

uint64_t offset_value(const json& v, const std::string& file, const std::string& field) {
  if (!v.is_number_unsigned()) {
    throw SafetensorsError(file, field + " data_offsets", "must hold non-negative integers (got " + brief(v) + ")");
  }
  return v.get<uint64_t>();
}

TensorInfo parse_entry(const std::string& name, const json& e, const std::string& file) {
  const std::string field = tensor_field(name);
  if (!e.is_object()) throw SafetensorsError(file, field, "must be an object (got " + std::string(e.type_name()) + ")");
  for (const auto& [key, value] : e.items()) {
    if (key != "dtype" && key != "shape" && key != "data_offsets") {
      throw SafetensorsError(file, field, "unknown field " + squote(key));
    }
  }
  for (const char* key : {"dtype", "shape", "data_offsets"}) {
    if (!e.contains(key)) throw SafetensorsError(file, field, std::string("missing ") + key);
  }
  TensorInfo t;
  t.name = name;
  const json& dtype = e["dtype"];
  if (!dtype.is_string()) throw SafetensorsError(file, field + " dtype", "must be a string (got " + brief(dtype) + ")");
  t.dtype = dtype.get<std::string>();
  std::optional<size_t> elem = safetensors_dtype_size(t.dtype);
  if (!elem) throw SafetensorsError(file, field + " dtype", "unknown dtype " + squote(t.dtype));
  t.ldtype = lockstep_dtype(t.dtype);

  const json& shape = e["shape"];
  if (!shape.is_array()) throw SafetensorsError(file, field + " shape", "must be an array (got " + brief(shape) + ")");
  for (const json& d : shape) {
    if (!d.is_number_unsigned() ||
        d.get<uint64_t>() > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      throw SafetensorsError(file, field + " shape",
                             "dims must be non-negative integers (got " + brief(shape) + ")");
    }
    t.shape.push_back(static_cast<int64_t>(d.get<uint64_t>()));
  }

  const json& offsets = e["data_offsets"];
  if (!offsets.is_array() || offsets.size() != 2) {
    throw SafetensorsError(file, field + " data_offsets", "must be [begin, end] (got " + brief(offsets) + ")");
  }
  t.begin = offset_value(offsets[0], file, field);
  t.end = offset_value(offsets[1], file, field);
  if (t.begin > t.end) {
    throw SafetensorsError(file, field + " data_offsets",
                           "begin > end in " + offsets.dump());
  }
  std::optional<uint64_t> need = checked_bytes(t.shape, *elem);
  if (!need) {
    throw SafetensorsError(file, field + " shape", "size of " + shape_text(t.shape) + " x " + t.dtype + " overflows");
  }
  if (*need != t.bytes()) {
    throw SafetensorsError(file, field,
                           "shape " + shape_text(t.shape) + " x " + t.dtype + " needs " + std::to_string(*need) +
                               " bytes but data_offsets " + offsets.dump() + " span " + std::to_string(t.bytes()));
  }
  return t;
}

}  // namespace

SafetensorsError::SafetensorsError(std::string file, std::string field, const std::string& problem)
    : Error(file + ": " + field + ": " + problem), file_(std::move(file)), field_(std::move(field)) {}

std::string shape_text(const std::vector<int64_t>& shape) {
  std::ostringstream os;
  os << "[";
  for (size_t i = 0; i < shape.size(); ++i) os << (i ? ", " : "") << shape[i];
  os << "]";
  return os.str();
}

std::optional<size_t> safetensors_dtype_size(std::string_view dtype) {
  for (const DTypeRow& row : kDTypes) {
    if (row.name == dtype) return row.size;
  }
  return std::nullopt;
}

std::optional<DType> lockstep_dtype(std::string_view dtype) {
  for (DType t : {DType::f32, DType::bf16, DType::f16, DType::u8, DType::i32, DType::u32}) {
    if (safetensors_dtype(t) == dtype) return t;
  }
  return std::nullopt;
}

std::string_view safetensors_dtype(DType t) {
  switch (t) {
    case DType::f32: return "F32";
    case DType::bf16: return "BF16";
    case DType::f16: return "F16";
    case DType::u8: return "U8";
    case DType::i32: return "I32";
    case DType::u32: return "U32";
  }
  return "?";
}

uint64_t TensorInfo::numel() const {
  uint64_t n = 1;
  for (int64_t d : shape) n *= static_cast<uint64_t>(d);  // validated not to overflow
  return n;
}

// ---- writing -------------------------------------------------------------------------------

std::vector<std::byte> serialize_safetensors(const std::vector<TensorEntry>& tensors,
                                             const std::map<std::string, std::string>& metadata,
                                             std::string_view path) {
  const std::string header = encode_header(tensors, metadata, path);
  std::vector<std::byte> out(reinterpret_cast<const std::byte*>(header.data()),
                             reinterpret_cast<const std::byte*>(header.data()) + header.size());
  for (const TensorEntry& t : tensors) {
    const auto* p = static_cast<const std::byte*>(t.data);
    if (t.bytes > 0) out.insert(out.end(), p, p + t.bytes);
  }
  return out;
}

void write_safetensors(const std::filesystem::path& path, const std::vector<TensorEntry>& tensors,
                       const std::map<std::string, std::string>& metadata) {
  const std::string header = encode_header(tensors, metadata, path.string());  // checks before any I/O
  try {
    WriteFile f(path, O_CREAT | O_TRUNC);
    f.write(header.data(), header.size());
    for (const TensorEntry& t : tensors) f.write(t.data, t.bytes);
    f.sync();
    f.close();
  } catch (...) {
    ::unlink(path.c_str());  // never leave a partial file under the final name
    throw;
  }
}

// ---- reading -------------------------------------------------------------------------------

SafetensorsFile SafetensorsFile::open(const std::filesystem::path& path) {
  return parse(read_file(path), path.string());
}

SafetensorsFile SafetensorsFile::parse(std::vector<std::byte> bytes, std::string name) {
  const std::string& file = name;
  const uint64_t size = bytes.size();
  if (size < 8) {
    throw SafetensorsError(file, "header length",
                           "file has " + std::to_string(size) + " bytes, fewer than the 8 of the header length");
  }
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<uint8_t>(bytes[i]);
  if (n > kMaxHeaderBytes) {
    throw SafetensorsError(file, "header length",
                           std::to_string(n) + " exceeds the limit of " + std::to_string(kMaxHeaderBytes) + " bytes");
  }
  if (n > size - 8) {
    throw SafetensorsError(file, "header length",
                           std::to_string(n) + " is larger than the " + std::to_string(size - 8) +
                               " bytes after it (file truncated or corrupt)");
  }
  const std::string_view text(reinterpret_cast<const char*>(bytes.data()) + 8, n);
  if (size_t at = invalid_utf8_at(text); at != std::string_view::npos) {
    throw SafetensorsError(file, "header", "not valid UTF-8 at byte " + std::to_string(at));
  }
  // JSON allows no raw control bytes but whitespace; nlohmann would stop at a NUL silently.
  for (size_t i = 0; i < text.size(); ++i) {
    const auto c = static_cast<unsigned char>(text[i]);
    if (c < 0x20 && c != '\t' && c != '\n' && c != '\r') {
      char hex[8];
      std::snprintf(hex, sizeof hex, "0x%02x", c);
      throw SafetensorsError(file, "header", std::string("control byte ") + hex + " at byte " + std::to_string(i));
    }
  }
  const json header = parse_header(text, file);
  if (!header.is_object()) {
    throw SafetensorsError(file, "header", std::string("must be a JSON object (got ") + header.type_name() + ")");
  }

  SafetensorsFile out;
  out.data_start_ = 8 + n;
  const uint64_t data_size = size - 8 - n;
  std::vector<TensorInfo> tensors;
  for (const auto& [key, value] : header.items()) {
    if (key == "__metadata__") {
      if (!value.is_object()) {
        throw SafetensorsError(file, "__metadata__", std::string("must be an object (got ") + value.type_name() + ")");
      }
      for (const auto& [mk, mv] : value.items()) {
        if (!mv.is_string()) {
          throw SafetensorsError(file, "__metadata__ " + squote(mk), "value must be a string (got " + brief(mv) + ")");
        }
        out.metadata_[mk] = mv.get<std::string>();
      }
      continue;
    }
    tensors.push_back(parse_entry(key, value, file));
  }

  // The offsets must tile [0, data_size) exactly. Empty tensors sort before a tensor that starts
  // at the same offset, so they fit anywhere on a boundary.
  std::sort(tensors.begin(), tensors.end(), [](const TensorInfo& a, const TensorInfo& b) {
    return std::tie(a.begin, a.end, a.name) < std::tie(b.begin, b.end, b.name);
  });
  uint64_t cursor = 0;
  const TensorInfo* previous = nullptr;
  for (const TensorInfo& t : tensors) {
    std::ostringstream range_os;  // (not "[" + to_string(..): GCC 12 misreports -Wrestrict)
    range_os << "[" << t.begin << ", " << t.end << "]";
    const std::string range = range_os.str();
    if (t.begin < cursor) {
      throw SafetensorsError(file, tensor_field(t.name) + " data_offsets",
                             range + " overlaps tensor " + squote(previous->name) + " which ends at " +
                                 std::to_string(cursor));
    }
    if (t.begin > cursor) {
      throw SafetensorsError(file, tensor_field(t.name) + " data_offsets",
                             range + " leaves a gap of " + std::to_string(t.begin - cursor) + " bytes after " +
                                 (previous ? "tensor " + squote(previous->name) : std::string("the header")));
    }
    if (t.end > data_size) {
      throw SafetensorsError(file, tensor_field(t.name) + " data_offsets",
                             range + " runs past the data buffer of " + std::to_string(data_size) +
                                 " bytes (file truncated?)");
    }
    cursor = t.end;
    previous = &t;
  }
  if (cursor != data_size) {
    throw SafetensorsError(file, "data", std::to_string(data_size - cursor) +
                                             " trailing bytes after the last tensor (the tensors cover " +
                                             std::to_string(cursor) + " of " + std::to_string(data_size) + ")");
  }

  out.name_ = std::move(name);
  out.bytes_ = std::move(bytes);
  out.tensors_ = std::move(tensors);
  for (size_t i = 0; i < out.tensors_.size(); ++i) out.by_name_.emplace(out.tensors_[i].name, i);
  return out;
}

const TensorInfo* SafetensorsFile::find(std::string_view name) const {
  auto it = by_name_.find(name);
  return it == by_name_.end() ? nullptr : &tensors_[it->second];
}

size_t SafetensorsFile::index_of(const TensorInfo& info) const {
  const TensorInfo* found = find(info.name);
  LS_CHECK(found != nullptr && found->begin == info.begin && found->end == info.end,
           name_ << ": tensor '" << info.name << "' is not a tensor of this file");
  return static_cast<size_t>(found - tensors_.data());
}

std::span<const std::byte> SafetensorsFile::data(const TensorInfo& info) const {
  const TensorInfo& t = tensors_[index_of(info)];
  return std::span<const std::byte>(bytes_).subspan(data_start_ + t.begin, t.bytes());
}

void SafetensorsFile::read(const TensorInfo& info, void* dst, size_t bytes) const {
  std::span<const std::byte> src = data(info);
  LS_CHECK(bytes == src.size(), name_ << ": tensor '" << info.name << "' has " << src.size()
                                      << " bytes, the destination " << bytes);
  if (bytes > 0) std::memcpy(dst, src.data(), bytes);
}

}  // namespace lockstep::engine
