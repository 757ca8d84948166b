// Protobuf wire-format helpers for the watch responses cairn serializes by
// hand (see event_block.h for why). Internal to src/watch/.
#pragma once

#include <cstdint>
#include <string>

namespace cairn::watch::wire {

inline void AppendVarint(std::string* out, uint64_t v) {
  while (v >= 0x80) {
    out->push_back(static_cast<char>(v | 0x80));
    v >>= 7;
  }
  out->push_back(static_cast<char>(v));
}

// A proto3 scalar field (int64, uint64, bool, enum): nothing when zero, as
// protobuf's own serializer.
inline void AppendVarintField(std::string* out, uint32_t field, uint64_t v) {
  if (v == 0) return;
  AppendVarint(out, static_cast<uint64_t>(field) << 3);
  AppendVarint(out, v);
}

// A proto3 string or bytes field: nothing when empty.
inline void AppendBytesField(std::string* out, uint32_t field, const std::string& v) {
  if (v.empty()) return;
  AppendVarint(out, (static_cast<uint64_t>(field) << 3) | 2);
  AppendVarint(out, v.size());
  out->append(v);
}

}  // namespace cairn::watch::wire
