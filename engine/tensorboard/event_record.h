// TensorBoard's event file format, encoded by hand: the few protobuf fields of an `Event` that
// scalar charts need, and TensorFlow's record framing around each serialized Event. There is no
// protobuf dependency; these are the only fields lockstep writes:
//
//   Event          wall_time = 1 (double), step = 2 (int64), file_version = 3 (string),
//                  summary = 5 (Summary), session_log = 7     tensorflow/core/util/event.proto
//   Summary        value = 1 (repeated Value)                  tensorflow/core/framework/summary.proto
//   Summary.Value  tag = 1 (string), simple_value = 2 (float)
//   SessionLog     status = 1 (enum; START = 1)
//
// A record (tensorflow/core/lib/io/record_writer.cc) is
//   uint64 length (little-endian) | uint32 masked CRC-32C of those 8 bytes |
//   `length` bytes of data        | uint32 masked CRC-32C of the data
// so a reader can tell a record cut short (a crash mid-write) from a whole one and stops there.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>

namespace lockstep::engine::tensorboard {

struct Scalar {
  std::string_view tag;  // e.g. "train/loss"
  float value;
};

// The first Event of every file: wall_time (seconds since the Unix epoch) and
// file_version "brain.Event:2", which TensorBoard's reader expects.
std::string encode_file_version_event(double wall_time);
// A SessionLog START at `step`: a run restarted from a checkpoint says where it continues, and
// TensorBoard then discards what earlier files logged at `step` or later (steps a crashed
// process logged after its last checkpoint, which the restarted run logs again).
std::string encode_session_start_event(double wall_time, int64_t step);
// One Event holding a Summary with one simple_value per scalar, all at `step`.
std::string encode_scalars_event(double wall_time, int64_t step, std::span<const Scalar> scalars);
// The record framing of one serialized Event.
std::string frame_record(std::string_view data);

}  // namespace lockstep::engine::tensorboard
