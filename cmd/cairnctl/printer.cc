#include "printer.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>

namespace cairn::ctl {

std::string RenderTable(const std::vector<std::string>& header,
                        const std::vector<std::vector<std::string>>& rows) {
  std::vector<size_t> width(header.size());
  for (size_t i = 0; i < header.size(); i++) {
    width[i] = header[i].size();
    for (const auto& row : rows) {
      if (i < row.size()) width[i] = std::max(width[i], row[i].size());
    }
  }
  std::string line = "+";
  for (size_t w : width) line += std::string(w + 2, '-') + "+";
  line += "\n";

  std::string out = line + "|";
  for (size_t i = 0; i < header.size(); i++) {
    std::string title = header[i];
    for (char& c : title) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    const size_t left = (width[i] - title.size()) / 2;
    out += " " + std::string(left, ' ') + title + std::string(width[i] - title.size() - left, ' ') +
           " |";
  }
  out += "\n" + line;
  for (const auto& row : rows) {
    out += "|";
    for (size_t i = 0; i < header.size(); i++) {
      const std::string cell = i < row.size() ? row[i] : "";
      out += " " + std::string(width[i] - cell.size(), ' ') + cell + " |";
    }
    out += "\n";
  }
  out += line;
  return out;
}

std::string HumanBytes(uint64_t bytes) {
  static const char* const kSizes[] = {"B", "kB", "MB", "GB", "TB", "PB", "EB"};
  if (bytes < 10) return std::to_string(bytes) + " B";
  const double s = static_cast<double>(bytes);
  const int e = std::min(6, static_cast<int>(std::floor(std::log(s) / std::log(1000.0))));
  const double val = std::floor(s / std::pow(1000.0, e) * 10 + 0.5) / 10;
  char buf[64];
  std::snprintf(buf, sizeof(buf), val < 10 ? "%.1f %s" : "%.0f %s", val, kSizes[e]);
  return buf;
}

std::string Hex(uint64_t v) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%llx", static_cast<unsigned long long>(v));
  return buf;
}

}  // namespace cairn::ctl
