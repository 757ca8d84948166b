// Minimal leveled logging to stderr, one line per call, JSON-ish like etcd's zap output.
// Thread-safe (each line is written with one call).
#pragma once

#include <sstream>
#include <string>

namespace cairn {

enum class LogLevel { kDebug = 0, kInfo = 1, kWarn = 2, kError = 3 };

void SetLogLevel(LogLevel level);
bool ParseLogLevel(const std::string& name, LogLevel* out);
bool LogEnabled(LogLevel level);
void LogLine(LogLevel level, const std::string& message);

class LogMessage {
 public:
  explicit LogMessage(LogLevel level) : level_(level) {}
  ~LogMessage() { LogLine(level_, stream_.str()); }
  std::ostream& stream() { return stream_; }

 private:
  LogLevel level_;
  std::ostringstream stream_;
};

}  // namespace cairn

#define CAIRN_LOG(level)                                     \
  if (!::cairn::LogEnabled(::cairn::LogLevel::level)) {      \
  } else                                                     \
    ::cairn::LogMessage(::cairn::LogLevel::level).stream()
