#include "engine/tensorboard/event_record.h"

#include <bit>
#include <cstring>

#include "engine/tensorboard/crc32c.h"

namespace lockstep::engine::tensorboard {

namespace {

static_assert(std::endian::native == std::endian::little, "the encoders below copy little-endian bytes");

// Protobuf wire types.
constexpr uint32_t kVarint = 0, kFixed64 = 1, kLengthDelimited = 2, kFixed32 = 5;

void put_varint(std::string& out, uint64_t v) {
  while (v >= 0x80) {
    out.push_back(static_cast<char>((v & 0x7F) | 0x80));
    v >>= 7;
  }
  out.push_back(static_cast<char>(v));
}

void put_key(std::string& out, uint32_t field, uint32_t wire_type) { put_varint(out, (field << 3) | wire_type); }

template <typename T>
void put_raw(std::string& out, T v) {
  char bytes[sizeof(T)];
  std::memcpy(bytes, &v, sizeof(T));
  out.append(bytes, sizeof(T));
}

void put_bytes(std::string& out, uint32_t field, std::string_view bytes) {
  put_key(out, field, kLengthDelimited);
  put_varint(out, bytes.size());
  out.append(bytes);
}

void put_double(std::string& out, uint32_t field, double v) {
  put_key(out, field, kFixed64);
  put_raw(out, v);
}

void put_float(std::string& out, uint32_t field, float v) {
  put_key(out, field, kFixed32);
  put_raw(out, v);
}

// Event's field numbers (event.proto) and Summary's (summary.proto).
constexpr uint32_t kEventWallTime = 1, kEventStep = 2, kEventFileVersion = 3, kEventSummary = 5, kEventSessionLog = 7;
constexpr uint32_t kSummaryValue = 1, kValueTag = 1, kValueSimpleValue = 2;
constexpr uint32_t kSessionLogStatus = 1, kSessionStart = 1;

// wall_time and step, the head of every Event but the first.
std::string event_head(double wall_time, int64_t step) {
  std::string e;
  put_double(e, kEventWallTime, wall_time);
  put_key(e, kEventStep, kVarint);
  put_varint(e, static_cast<uint64_t>(step));  // int64: negatives as their two's complement, as protobuf does
  return e;
}

}  // namespace

std::string encode_file_version_event(double wall_time) {
  std::string e;
  put_double(e, kEventWallTime, wall_time);
  put_bytes(e, kEventFileVersion, "brain.Event:2");
  return e;
}

std::string encode_scalars_event(double wall_time, int64_t step, std::span<const Scalar> scalars) {
  std::string summary, value;
  for (const Scalar& s : scalars) {
    value.clear();
    put_bytes(value, kValueTag, s.tag);
    put_float(value, kValueSimpleValue, s.value);
    put_bytes(summary, kSummaryValue, value);
  }
  std::string e = event_head(wall_time, step);
  put_bytes(e, kEventSummary, summary);
  return e;
}

std::string encode_session_start_event(double wall_time, int64_t step) {
  std::string session_log;
  put_key(session_log, kSessionLogStatus, kVarint);
  put_varint(session_log, kSessionStart);
  std::string e = event_head(wall_time, step);
  put_bytes(e, kEventSessionLog, session_log);
  return e;
}

std::string frame_record(std::string_view data) {
  std::string r;
  r.reserve(data.size() + 16);
  put_raw<uint64_t>(r, data.size());
  put_raw<uint32_t>(r, masked_crc32c(r));  // the CRC of the 8 length bytes
  r.append(data);
  put_raw<uint32_t>(r, masked_crc32c(data));
  return r;
}

}  // namespace lockstep::engine::tensorboard
