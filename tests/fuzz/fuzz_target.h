// What every fuzz target shares: the libFuzzer entry point's signature, and the rule that a
// target may only end in one of lockstep's own errors (kernels/error.h: a clear message naming
// the file, flag or field). Any other exception escaping a parser is a finding: it would reach
// the user as "error: stoi" or a json.exception instead of naming what was wrong.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <typeinfo>

#include "kernels/error.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

namespace lockstep::fuzz {

// Runs f; lockstep::Error is an expected outcome, anything else aborts with its type and text.
template <typename F>
void expect_clean(const char* what, F&& f) {
  try {
    f();
  } catch (const Error&) {
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s: escaped %s: %s\n", what, typeid(e).name(), e.what());
    std::abort();
  }
}

}  // namespace lockstep::fuzz
