#pragma once
// Helpers shared by the fuzz targets: a failed property aborts with a message, so libFuzzer (and the
// replay runner) reports it as a crash with the input that caused it.
#include <cstdio>
#include <cstdlib>
#include <string_view>

namespace p2p::fuzz {

[[noreturn]] inline void fail(std::string_view what, std::string_view detail = {}) {
  std::fprintf(stderr, "fuzz property violated: %.*s %.*s\n", static_cast<int>(what.size()), what.data(),
               static_cast<int>(detail.size()), detail.data());
  std::abort();
}

inline void check(bool condition, std::string_view what, std::string_view detail = {}) {
  if (!condition) fail(what, detail);
}

}  // namespace p2p::fuzz
