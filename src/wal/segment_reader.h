// SegmentReader: reads one segment file through a bounded window (recovery
// and ReadFrom never hold a whole segment in memory).
//
// Thread safety: one thread at a time.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "common/status.h"
#include "wal/record.h"

namespace cairn::wal {

class SegmentReader {
 public:
  // `path` is for messages only. `window_bytes` is how much one read fetches.
  SegmentReader(int fd, uint64_t file_bytes, uint64_t seq, std::string path,
                size_t window_bytes = 1 << 20);

  // The file's bytes [offset, offset + n), shorter at the end of the file.
  // Valid until the next call.
  Result<std::string_view> Read(uint64_t offset, size_t n);

  // The record of this segment at `offset`: sets *bytes to its length in the
  // file (padding included), or to 0 if there is no valid record there.
  Status RecordAt(uint64_t offset, RecordView* out, uint64_t* bytes);

  // Valid records of this segment anywhere in [from, end of file), looked
  // for at every 8-byte boundary: what lies after the point where reading
  // the log stopped.
  struct ScanResult {
    uint64_t records = 0;
    uint64_t max_synced_index = 0;
    uint64_t first_offset = 0;  // of the first record found
    uint64_t end = 0;           // just past the last record found
  };
  Status Scan(uint64_t from, ScanResult* out);

  const std::string& path() const { return path_; }

 private:
  int fd_;
  uint64_t file_bytes_;
  uint64_t seq_;
  std::string path_;
  size_t window_bytes_;
  uint64_t window_offset_ = 0;
  std::string window_;
};

}  // namespace cairn::wal
