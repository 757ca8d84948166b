#include "common/duration.h"

#include <cctype>
#include <cstdlib>

namespace cairn {

Result<int64_t> ParseGoDurationMs(const std::string& d) {
  if (d.empty()) return Status(Code::kInvalidArgument, "bad duration: empty");
  if (d == "0") return 0;  // as Go: the one unitless duration
  int64_t total = 0;
  size_t i = 0;
  while (i < d.size()) {
    size_t j = i;
    while (j < d.size() && (std::isdigit(static_cast<unsigned char>(d[j])) || d[j] == '.')) j++;
    if (j == i) return Status(Code::kInvalidArgument, "bad duration: " + d);
    const double n = std::strtod(d.substr(i, j - i).c_str(), nullptr);
    size_t k = j;
    while (k < d.size() && std::isalpha(static_cast<unsigned char>(d[k]))) k++;
    const std::string unit = d.substr(j, k - j);
    double ms;
    if (unit == "h") ms = n * 3600000;
    else if (unit == "m") ms = n * 60000;
    else if (unit == "s") ms = n * 1000;
    else if (unit == "ms") ms = n;
    else return Status(Code::kInvalidArgument, "bad duration unit in: " + d);
    total += static_cast<int64_t>(ms);
    i = k;
  }
  return total;
}

}  // namespace cairn
