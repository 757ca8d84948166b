#include "wal/record.h"

#include <bit>
#include <cstring>

#include <boost/crc.hpp>

namespace cairn::wal {

static_assert(std::endian::native == std::endian::little, "the WAL format is little-endian");

namespace {
constexpr uint32_t kMagic = 0x4c41574e;
constexpr uint32_t kVersion = 1;

void PutU32(std::string* out, uint32_t v) { out->append(reinterpret_cast<const char*>(&v), 4); }
void PutU64(std::string* out, uint64_t v) { out->append(reinterpret_cast<const char*>(&v), 8); }
uint32_t GetU32(const char* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}
uint64_t GetU64(const char* p) {
  uint64_t v;
  std::memcpy(&v, p, 8);
  return v;
}
void SetU32(std::string* out, size_t at, uint32_t v) { std::memcpy(out->data() + at, &v, 4); }

// Writes the header of a record of `body_bytes` at the end of `out`, leaves
// the CRC for FinishRecord. Returns the record's start.
size_t StartRecord(RecordType type, uint8_t entry_type, uint64_t seq, uint64_t synced_index,
                   size_t body_bytes, std::string* out) {
  size_t start = out->size();
  PutU32(out, 0);
  PutU32(out, static_cast<uint32_t>(kRecordHeaderBytes + body_bytes));
  out->push_back(static_cast<char>(type));
  out->push_back(static_cast<char>(entry_type));
  out->append(2, '\0');
  PutU32(out, static_cast<uint32_t>(seq));
  PutU64(out, synced_index);
  return start;
}

void FinishRecord(size_t start, std::string* out) {
  std::string_view rec(out->data() + start + 4, out->size() - start - 4);
  SetU32(out, start, Crc32c(rec));
  out->append(AlignUp(out->size() - start, kRecordAlign) - (out->size() - start), '\0');
}
}  // namespace

uint32_t Crc32c(std::string_view data) {
  // Castagnoli, reflected, as in iSCSI, ext4 and RocksDB.
  boost::crc_optimal<32, 0x1EDC6F41, 0xFFFFFFFF, 0xFFFFFFFF, true, true> crc;
  crc.process_bytes(data.data(), data.size());
  return crc.checksum();
}

void EncodeSegmentHeader(const SegmentHeader& header, std::string* out) {
  size_t start = out->size();
  PutU32(out, 0);
  PutU32(out, kMagic);
  PutU32(out, kVersion);
  PutU32(out, header.flags);
  PutU64(out, header.seq);
  PutU64(out, header.first_index);
  out->append(kSegmentHeaderBytes - (out->size() - start), '\0');
  SetU32(out, start, Crc32c(std::string_view(out->data() + start + 4, kSegmentHeaderBytes - 4)));
}

bool DecodeSegmentHeader(std::string_view bytes, SegmentHeader* out) {
  if (bytes.size() < kSegmentHeaderBytes) return false;
  const char* p = bytes.data();
  if (GetU32(p + 4) != kMagic || GetU32(p + 8) != kVersion) return false;
  if (Crc32c(bytes.substr(4, kSegmentHeaderBytes - 4)) != GetU32(p)) return false;
  out->flags = GetU32(p + 12);
  out->seq = GetU64(p + 16);
  out->first_index = GetU64(p + 24);
  return true;
}

void EncodeEntry(uint64_t seq, uint64_t synced_index, const Entry& entry, std::string* out) {
  size_t start = StartRecord(RecordType::kEntry, entry.type, seq, synced_index,
                             kEntryFixedBytes + entry.data.size(), out);
  PutU64(out, entry.index);
  PutU64(out, entry.term);
  out->append(entry.data);
  FinishRecord(start, out);
}

void EncodeHardState(uint64_t seq, uint64_t synced_index, const HardState& hs, std::string* out) {
  size_t start = StartRecord(RecordType::kHardState, 0, seq, synced_index, kHardStateBodyBytes, out);
  PutU64(out, hs.term);
  PutU64(out, hs.vote);
  PutU64(out, hs.commit);
  FinishRecord(start, out);
}

uint32_t PlausibleRecordLength(std::string_view bytes, uint64_t seq) {
  const char* p = bytes.data();
  uint32_t length = GetU32(p + 4);
  if (length < kRecordHeaderBytes + kEntryFixedBytes) return 0;
  if (GetU32(p + 12) != static_cast<uint32_t>(seq)) return 0;
  uint8_t type = static_cast<uint8_t>(p[8]);
  if (type != static_cast<uint8_t>(RecordType::kEntry) &&
      type != static_cast<uint8_t>(RecordType::kHardState)) {
    return 0;
  }
  return length;
}

bool DecodeRecord(std::string_view bytes, uint64_t seq, RecordView* out) {
  uint32_t length = PlausibleRecordLength(bytes, seq);
  if (length == 0 || bytes.size() < length) return false;
  const char* p = bytes.data();
  if (Crc32c(bytes.substr(4, length - 4)) != GetU32(p)) return false;
  out->type = static_cast<RecordType>(p[8]);
  out->entry_type = static_cast<uint8_t>(p[9]);
  out->synced_index = GetU64(p + 16);
  const char* body = p + kRecordHeaderBytes;
  size_t body_bytes = length - kRecordHeaderBytes;
  if (out->type == RecordType::kEntry) {
    out->index = GetU64(body);
    out->term = GetU64(body + 8);
    out->data = std::string_view(body + kEntryFixedBytes, body_bytes - kEntryFixedBytes);
    return true;
  }
  if (body_bytes != kHardStateBodyBytes) return false;
  out->hard_state.term = GetU64(body);
  out->hard_state.vote = GetU64(body + 8);
  out->hard_state.commit = GetU64(body + 16);
  return true;
}

}  // namespace cairn::wal
