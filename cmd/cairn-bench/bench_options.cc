#include "bench_options.h"

namespace cairn::bench {

std::string CommonOptions::Validate() const {
  if (endpoints.empty()) return "--endpoints: at least one endpoint";
  if (clients < 1 || clients > 10000) return "--clients: must be in [1, 10000]";
  if (conns < 1 || conns > 1024) return "--conns: must be in [1, 1024]";
  if (duration_seconds < 0) return "--duration: must be >= 0";
  if (duration_seconds == 0 && total < 1) return "--total: must be >= 1";
  if (request_timeout_seconds <= 0) return "--timeout: must be > 0";
  if (cert.empty() != key.empty()) return "--cert and --key: give both or neither";
  if (!cert.empty() && cacert.empty()) return "--cert: needs --cacert (TLS)";
  if (!user.empty() && user.find(':') == std::string::npos) return "--user: must be name:password";
  return "";
}

std::string KeyOptions::Validate() const {
  if (key_size < 1 || key_size > 1 << 20) return "--key-size: must be in [1, 1 MiB]";
  if (value_size < 0 || value_size > 64 << 20) return "--val-size: must be in [0, 64 MiB]";
  if (key_space < 1) return "--key-space: must be >= 1";
  return "";
}

std::string RangeOptions::Validate() const {
  if (keys_per_range < 1 || keys_per_range > 10000000) {
    return "--keys-per-range: must be in [1, 10000000]";
  }
  return "";
}

std::string MixedOptions::Validate() const {
  if (read_fraction < 0 || read_fraction > 1) return "--read-fraction: must be in [0, 1]";
  return "";
}

std::string WatchOptions::Validate() const {
  if (watchers < 1 || watchers > 1000000) return "--watchers: must be in [1, 1000000]";
  if (streams < 1 || streams > watchers) return "--streams: must be in [1, watchers]";
  if (put_rate < 0) return "--put-rate: must be >= 0 (0: as fast as it can)";
  if (max_puts_in_flight < 1 || max_puts_in_flight > 100000) {
    return "--max-puts-in-flight: must be in [1, 100000]";
  }
  if (drain_timeout_seconds < 0) return "--drain-timeout: must be >= 0";
  return "";
}

bool ParseConsistency(const std::string& text, Consistency* out) {
  if (text == "l" || text == "linearizable") {
    *out = Consistency::kLinearizable;
    return true;
  }
  if (text == "s" || text == "serializable") {
    *out = Consistency::kSerializable;
    return true;
  }
  return false;
}

const char* ConsistencyName(Consistency consistency) {
  return consistency == Consistency::kLinearizable ? "linearizable" : "serializable";
}

}  // namespace cairn::bench
