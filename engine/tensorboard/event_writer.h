// EventWriter: one TensorBoard event file of scalar charts (event_record.h has the format).
//
// Promises:
//   - The file is <dir>/events.out.tfevents.<unix seconds, 10 digits>.<host>, created new (never
//     appended to, never replaced). When a file of that name exists (a resumed run started in
//     the same second) the next second is taken, so the names of a run's files sort in the order
//     they were written: TensorBoard reads a folder's files in name order, and a resumed run's
//     steps must come after those of the run it continues.
//   - Its first record is the file_version Event; then one Event per add_scalars() or
//     add_session_start().
//   - Every Event reaches the operating system as one write() when it is added: a live
//     TensorBoard sees it at once (more than the "at least every 30 s" a run's charts need),
//     and a crashed run keeps everything it logged, like log.jsonl. Writes happen at the
//     logging rate (--log-every steps), never inside a training step. close() also fsyncs.
//   - A failed write throws lockstep::Error naming the file and the reason.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <span>
#include <string>

#include "engine/checkpoint/atomic_dir.h"
#include "engine/tensorboard/event_record.h"

namespace lockstep::engine::tensorboard {

class EventWriter {
 public:
  // Creates `dir` (and parents) and the event file; throws lockstep::Error when it cannot.
  explicit EventWriter(const std::filesystem::path& dir);
  EventWriter(const EventWriter&) = delete;
  EventWriter& operator=(const EventWriter&) = delete;

  const std::filesystem::path& path() const { return path_; }
  // One Event with these scalars at `step` (TensorBoard's x axis).
  void add_scalars(int64_t step, std::span<const Scalar> scalars);
  // A SessionLog START at `step` (event_record.h): a restarted run's first event.
  void add_session_start(int64_t step);
  // fsync and close; adding after it is an error. The destructor closes without the fsync.
  void close();

 private:
  void write_record(const std::string& event);
  std::filesystem::path path_;
  std::optional<WriteFile> file_;
};

// "events.out.tfevents.<seconds, 10 digits>.<host>": TensorFlow's name for an event file.
std::string event_file_name(int64_t unix_seconds, const std::string& host);

}  // namespace lockstep::engine::tensorboard
