// Go's time.ParseDuration subset etcd's flags and options use: a sequence of
// <number><unit> with units h, m, s, ms ("30m", "1h30m", "1.5s").
#pragma once

#include <cstdint>
#include <string>

#include "common/status.h"

namespace cairn {

// Milliseconds; an error for an empty string, a missing unit or another unit.
Result<int64_t> ParseGoDurationMs(const std::string& duration);

}  // namespace cairn
