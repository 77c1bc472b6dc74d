// lockstep's one exception type and the argument check used across every layer.
// Library code throws; only tools/ turns an Error into an exit code, so a worker's failure can
// be carried to the driver intact (ARCHITECTURE decision 11).
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>

namespace lockstep {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

[[noreturn]] inline void throw_error(const char* file, int line, const std::string& what) {
  std::ostringstream os;
  os << what << " (" << file << ":" << line << ")";
  throw Error(os.str());
}

}  // namespace lockstep

// LS_CHECK(cond, message-stream): throws lockstep::Error naming the file and line.
#define LS_CHECK(cond, msg)                                                  \
  do {                                                                       \
    if (!(cond)) {                                                           \
      std::ostringstream ls_check_os_;                                       \
      ls_check_os_ << msg;                                                   \
      ::lockstep::throw_error(__FILE__, __LINE__, ls_check_os_.str());       \
    }                                                                        \
  } while (0)
