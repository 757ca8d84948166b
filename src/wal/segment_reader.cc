#include "wal/segment_reader.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

namespace cairn::wal {

SegmentReader::SegmentReader(int fd, uint64_t file_bytes, uint64_t seq, std::string path,
                             size_t window_bytes)
    : fd_(fd), file_bytes_(file_bytes), seq_(seq), path_(std::move(path)),
      window_bytes_(window_bytes) {}

Result<std::string_view> SegmentReader::Read(uint64_t offset, size_t n) {
  if (offset >= file_bytes_) return std::string_view();
  n = static_cast<size_t>(std::min<uint64_t>(n, file_bytes_ - offset));
  if (offset >= window_offset_ && offset + n <= window_offset_ + window_.size()) {
    return std::string_view(window_.data() + (offset - window_offset_), n);
  }
  size_t want = static_cast<size_t>(std::min<uint64_t>(std::max(n, window_bytes_), file_bytes_ - offset));
  window_.resize(want);
  size_t got = 0;
  while (got < want) {
    ssize_t r = pread(fd_, window_.data() + got, want - got, static_cast<off_t>(offset + got));
    if (r < 0) {
      if (errno == EINTR) continue;
      window_.clear();
      return Status(Code::kInternal, "wal: read " + path_ + ": " + strerror(errno));
    }
    if (r == 0) break;
    got += static_cast<size_t>(r);
  }
  window_.resize(got);
  window_offset_ = offset;
  return std::string_view(window_.data(), std::min(n, got));
}

Status SegmentReader::RecordAt(uint64_t offset, RecordView* out, uint64_t* bytes) {
  *bytes = 0;
  auto head = Read(offset, kRecordHeaderBytes);
  if (!head.ok()) return head.status();
  if (head->size() < kRecordHeaderBytes) return Status::Ok();
  uint32_t length = PlausibleRecordLength(*head, seq_);
  if (length == 0 || offset + length > file_bytes_) return Status::Ok();
  auto whole = Read(offset, length);
  if (!whole.ok()) return whole.status();
  if (whole->size() < length || !DecodeRecord(*whole, seq_, out)) return Status::Ok();
  *bytes = AlignUp(length, kRecordAlign);
  return Status::Ok();
}

Status SegmentReader::Scan(uint64_t from, ScanResult* out) {
  *out = ScanResult();
  uint64_t offset = AlignUp(from, kRecordAlign);
  const uint32_t seq32 = static_cast<uint32_t>(seq_);
  while (offset + kRecordHeaderBytes <= file_bytes_) {
    auto chunk = Read(offset, window_bytes_);
    if (!chunk.ok()) return chunk.status();
    std::string_view c = *chunk;
    // Cheap test at each boundary (the length is not 0 and the seq is this
    // segment's); only candidates pay for a CRC.
    size_t p = 0;
    bool candidate = false;
    for (; p + kRecordHeaderBytes <= c.size(); p += kRecordAlign) {
      uint32_t length, seq;
      std::memcpy(&length, c.data() + p + 4, 4);
      std::memcpy(&seq, c.data() + p + 12, 4);
      if (length != 0 && seq == seq32) {
        candidate = true;
        break;
      }
    }
    if (!candidate) {
      if (p == 0) break;  // fewer than a header's bytes left
      offset += p;
      continue;
    }
    offset += p;
    RecordView v;
    uint64_t n = 0;
    Status s = RecordAt(offset, &v, &n);
    if (!s.ok()) return s;
    if (n == 0) {
      offset += kRecordAlign;
      continue;
    }
    if (out->records == 0) out->first_offset = offset;
    out->records++;
    out->max_synced_index = std::max(out->max_synced_index, v.synced_index);
    out->end = offset + n;
    offset += n;
  }
  return Status::Ok();
}

}  // namespace cairn::wal
