// A reader of TensorFlow record files and of the Event fields lockstep writes, for the tests only:
// it checks what the writer promises from the other side (framing, both CRCs, the protobuf
// fields), independently of the writer's encoders. TensorBoard's own reader is the Python test
// (tests/tools/check_tensorboard.py).
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "engine/tensorboard/crc32c.h"

namespace lockstep::engine::tensorboard::test {

struct RecordFile {
  std::vector<std::string> records;  // the data of every whole record
  bool truncated = false;            // the file ends inside a record
  bool corrupt = false;              // a CRC did not match (reading stopped there)
};

template <typename T>
T load(std::string_view bytes, size_t at) {
  T v;
  std::memcpy(&v, bytes.data() + at, sizeof(T));
  return v;
}

inline RecordFile read_records(std::string_view file) {
  RecordFile out;
  size_t at = 0;
  while (at < file.size()) {
    if (file.size() - at < 12) return out.truncated = true, out;
    const auto length = load<uint64_t>(file, at);
    if (load<uint32_t>(file, at + 8) != mask_crc(crc32c(file.data() + at, 8))) return out.corrupt = true, out;
    if (file.size() - at - 12 < length + 4) return out.truncated = true, out;
    const std::string_view data = file.substr(at + 12, length);
    if (load<uint32_t>(file, at + 12 + length) != mask_crc(crc32c(data))) return out.corrupt = true, out;
    out.records.emplace_back(data);
    at += 12 + length + 4;
  }
  return out;
}

// The Event fields lockstep writes, decoded with a minimal protobuf reader.
struct Event {
  double wall_time = 0;
  int64_t step = 0;
  std::string file_version;
  std::vector<std::pair<std::string, float>> scalars;  // (tag, simple_value)
  bool session_start = false;                          // a SessionLog with status START
};

struct ProtoReader {
  std::string_view in;
  size_t at = 0;
  bool done() const { return at >= in.size(); }
  uint64_t varint() {
    uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      if (at >= in.size()) throw std::runtime_error("varint runs past the end");
      const auto b = static_cast<unsigned char>(in[at++]);
      v |= uint64_t{b & 0x7Fu} << shift;
      if (!(b & 0x80)) return v;
    }
    throw std::runtime_error("varint longer than 10 bytes");
  }
  std::string_view bytes(size_t n) {
    if (in.size() - at < n) throw std::runtime_error("field runs past the end");
    std::string_view s = in.substr(at, n);
    at += n;
    return s;
  }
  std::string_view length_delimited() { return bytes(varint()); }
};

inline Event decode_event(std::string_view data) {
  Event e;
  ProtoReader r{data};
  while (!r.done()) {
    const uint64_t key = r.varint();
    const uint64_t field = key >> 3, wire = key & 7;
    if (field == 1 && wire == 1) {
      e.wall_time = load<double>(r.bytes(8), 0);
    } else if (field == 2 && wire == 0) {
      e.step = static_cast<int64_t>(r.varint());
    } else if (field == 3 && wire == 2) {
      e.file_version = std::string(r.length_delimited());
    } else if (field == 5 && wire == 2) {
      ProtoReader summary{r.length_delimited()};
      while (!summary.done()) {
        if (summary.varint() != ((1 << 3) | 2)) throw std::runtime_error("Summary: not a value field");
        ProtoReader value{summary.length_delimited()};
        std::pair<std::string, float> tv;
        while (!value.done()) {
          const uint64_t k = value.varint();
          if (k == ((1 << 3) | 2)) tv.first = std::string(value.length_delimited());
          else if (k == ((2 << 3) | 5)) tv.second = load<float>(value.bytes(4), 0);
          else throw std::runtime_error("Summary.Value: unexpected key " + std::to_string(k));
        }
        e.scalars.push_back(tv);
      }
    } else if (field == 7 && wire == 2) {
      ProtoReader log{r.length_delimited()};
      if (log.varint() != ((1 << 3) | 0)) throw std::runtime_error("SessionLog: not a status field");
      e.session_start = log.varint() == 1 && log.done();
    } else {
      throw std::runtime_error("Event: unexpected key " + std::to_string(key));
    }
  }
  return e;
}

}  // namespace lockstep::engine::tensorboard::test
