#include "engine/tensorboard/event_writer.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <system_error>

namespace lockstep::engine::tensorboard {

namespace fs = std::filesystem;

namespace {

double unix_time_now() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

std::string host_name() {
  char buf[256] = {};
  if (::gethostname(buf, sizeof buf - 1) != 0 || buf[0] == '\0') return "localhost";
  return buf;
}

// Attempts at a fresh name before giving up: more resumed runs than this within as many seconds
// of each other do not happen; an error is clearer than a loop without end.
constexpr int kNameAttempts = 1000;

}  // namespace

std::string event_file_name(int64_t unix_seconds, const std::string& host) {
  char digits[32];
  std::snprintf(digits, sizeof digits, "%010lld", static_cast<long long>(unix_seconds));
  return std::string("events.out.tfevents.") + digits + "." + host;
}

EventWriter::EventWriter(const fs::path& dir) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec || !fs::is_directory(dir))
    throw Error("cannot create TensorBoard folder '" + dir.string() + "': " +
                (ec ? ec.message() : std::string("a file of that name exists")));
  const double now = unix_time_now();
  const std::string host = host_name();
  for (int k = 0; k < kNameAttempts && !file_; ++k) {
    path_ = dir / event_file_name(static_cast<int64_t>(now) + k, host);
    try {
      file_.emplace(path_, O_CREAT | O_EXCL | O_APPEND);
    } catch (const IoError& e) {
      if (e.error_code() != EEXIST) throw;
    }
  }
  if (!file_) throw Error("cannot create an event file in '" + dir.string() + "': every name is taken");
  write_record(encode_file_version_event(now));
}

void EventWriter::add_scalars(int64_t step, std::span<const Scalar> scalars) {
  write_record(encode_scalars_event(unix_time_now(), step, scalars));
}

void EventWriter::add_session_start(int64_t step) { write_record(encode_session_start_event(unix_time_now(), step)); }

void EventWriter::write_record(const std::string& event) {
  if (!file_) throw Error("event file '" + path_.string() + "' is closed");
  const std::string record = frame_record(event);
  file_->write(record.data(), record.size());
}

void EventWriter::close() {
  if (!file_) return;
  file_->sync();
  file_->close();
  file_.reset();
}

}  // namespace lockstep::engine::tensorboard
