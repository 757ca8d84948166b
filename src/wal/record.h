// The WAL's on-disk format: segment headers and records (see wal.h for the
// rules that tie them together, docs/architecture.md "Log" for the why).
//
// All integers are little-endian. A segment file is
//
//   [segment header, 64 bytes][record][record]...[zeros or stale bytes]
//
// Segment header:
//   0  u32 crc32c of bytes [4, 64)
//   4  u32 magic 0x4c41574e ("NWAL")
//   8  u32 version (1)
//   12 u32 flags (kSegmentTruncates, kSegmentResets)
//   16 u64 seq, equal to the number in the file name
//   24 u64 first_index: the index of the first entry this segment holds
//   32 zeros up to 64
//
// Record, starting at a multiple of 8:
//   0  u32 crc32c of bytes [4, length)
//   4  u32 length: header and body, at least kRecordHeaderBytes; never 0, so
//      a zero-filled region never reads as a record
//   8  u8  type (kEntry, kHardState)
//   9  u8  entry type (opaque to the log: Raft's EntryType; 0 otherwise)
//   10 u16 zero
//   12 u32 the segment's seq (low 32 bits): a recycled file's old records
//      carry another seq and never read as records of the new incarnation
//   16 u64 synced index: the last index that was durable when this record was
//      appended; tells a torn unacknowledged tail from damage (wal.h)
//   24 body: kEntry: u64 index, u64 term, data; kHardState: u64 term,
//      u64 vote, u64 commit
//   then zeros up to the next multiple of 8.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace cairn::wal {

struct Entry {
  uint64_t index = 0;
  uint64_t term = 0;
  uint8_t type = 0;  // opaque to the log (Raft's EntryType)
  std::string data;

  bool operator==(const Entry&) const = default;
};

// Raft's HardState: what must be durable before a vote or an acknowledgment
// leaves the node.
struct HardState {
  uint64_t term = 0;
  uint64_t vote = 0;
  uint64_t commit = 0;

  bool operator==(const HardState&) const = default;
  bool empty() const { return term == 0 && vote == 0 && commit == 0; }
};

inline constexpr uint64_t kBlockBytes = 4096;
inline constexpr size_t kSegmentHeaderBytes = 64;
inline constexpr size_t kRecordHeaderBytes = 24;
inline constexpr size_t kEntryFixedBytes = 16;
inline constexpr size_t kHardStateBodyBytes = 24;
inline constexpr size_t kRecordAlign = 8;

// Segment header flags.
// The segment's first_index may be at or below the previous segments' last
// index: entries from first_index on in earlier segments are void
// (TruncateAfter).
inline constexpr uint32_t kSegmentTruncates = 1;
// Every earlier segment is void (Reset).
inline constexpr uint32_t kSegmentResets = 2;

enum class RecordType : uint8_t { kEntry = 1, kHardState = 2 };

struct SegmentHeader {
  uint64_t seq = 0;
  uint64_t first_index = 0;
  uint32_t flags = 0;
};

uint32_t Crc32c(std::string_view data);

inline uint64_t AlignUp(uint64_t v, uint64_t a) { return (v + a - 1) / a * a; }
inline uint64_t AlignDown(uint64_t v, uint64_t a) { return v / a * a; }

// Appends the 64-byte header.
void EncodeSegmentHeader(const SegmentHeader& header, std::string* out);
// True if `bytes` (at least kSegmentHeaderBytes) hold a valid header.
bool DecodeSegmentHeader(std::string_view bytes, SegmentHeader* out);

// Bytes a record takes in the file, padding included.
inline size_t EntryRecordBytes(size_t data_bytes) {
  return AlignUp(kRecordHeaderBytes + kEntryFixedBytes + data_bytes, kRecordAlign);
}
inline constexpr size_t HardStateRecordBytes() {
  return (kRecordHeaderBytes + kHardStateBodyBytes + kRecordAlign - 1) / kRecordAlign * kRecordAlign;
}

void EncodeEntry(uint64_t seq, uint64_t synced_index, const Entry& entry, std::string* out);
void EncodeHardState(uint64_t seq, uint64_t synced_index, const HardState& hs, std::string* out);

struct RecordView {
  RecordType type = RecordType::kEntry;
  uint8_t entry_type = 0;
  uint64_t synced_index = 0;
  // kEntry
  uint64_t index = 0;
  uint64_t term = 0;
  std::string_view data;
  // kHardState
  HardState hard_state;
};

// The record's length field if the first kRecordHeaderBytes of `bytes` could
// start a record of segment `seq` (a cheap test before the CRC); else 0.
// REQUIRES: bytes.size() >= kRecordHeaderBytes.
uint32_t PlausibleRecordLength(std::string_view bytes, uint64_t seq);
// Decodes and verifies the record at the start of `bytes`, which holds at
// least the record's length (from PlausibleRecordLength). False if it is not
// a valid record of segment `seq`.
bool DecodeRecord(std::string_view bytes, uint64_t seq, RecordView* out);

}  // namespace cairn::wal
