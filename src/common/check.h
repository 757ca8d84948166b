// CHECK: a broken invariant stops the process with context. A store that keeps
// going after its own state is wrong loses data, so these stay on in release.
#pragma once

#include <cstdlib>
#include <iostream>
#include <sstream>

namespace cairn::internal {
class CheckFailure {
 public:
  CheckFailure(const char* file, int line, const char* cond) {
    stream_ << "CHECK failed at " << file << ":" << line << ": " << cond << " ";
  }
  [[noreturn]] ~CheckFailure() {
    std::cerr << stream_.str() << std::endl;
    std::abort();
  }
  std::ostream& stream() { return stream_; }

 private:
  std::ostringstream stream_;
};
}  // namespace cairn::internal

#define CHECK(cond) \
  if (cond) {       \
  } else            \
    ::cairn::internal::CheckFailure(__FILE__, __LINE__, #cond).stream()
