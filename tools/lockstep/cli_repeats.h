// An option given more than once on a subcommand's command line takes its last value, as
// argparse and most command lines do (a script's defaults followed by an override keep working),
// but not silently: a note names the option and every value it was given.
#pragma once

#include <cxxopts.hpp>

#include <ostream>
#include <string>
#include <utility>
#include <vector>

namespace lockstep::cli {

inline void note_repeats(const cxxopts::ParseResult& r, const std::string& command, std::ostream& notes) {
  std::vector<std::pair<std::string, std::vector<std::string>>> given;  // in first-seen order
  for (const cxxopts::KeyValue& kv : r.arguments()) {
    auto at = given.begin();
    while (at != given.end() && at->first != kv.key()) ++at;
    if (at == given.end()) at = given.insert(given.end(), {kv.key(), {}});
    at->second.push_back(kv.value());
  }
  for (const auto& [key, values] : given) {
    if (values.size() < 2) continue;
    notes << "lockstep " << command << ": --" << key << " given " << values.size() << " times (";
    for (size_t i = 0; i < values.size(); ++i) notes << (i ? ", then '" : "'") << values[i] << "'";
    notes << "): using '" << values.back() << "', the last\n";
  }
}

}  // namespace lockstep::cli
