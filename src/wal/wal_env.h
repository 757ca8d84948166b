// WalEnv: the WAL's file operations that can fail in ways worth testing
// (ENOSPC while preparing a segment, EIO on sync), behind one small
// interface so tests can inject those failures (as leveldb's Env does).
//
// Thread safety: implementations must be thread-safe (the preparer and the
// writer call them concurrently).
#pragma once

#include <cstddef>
#include <cstdint>

namespace cairn::wal {

class WalEnv {
 public:
  virtual ~WalEnv() = default;
  // Each returns 0 or an errno value.
  // Reserves [0, bytes) of the file (fallocate); EOPNOTSUPP is fine.
  virtual int Allocate(int fd, uint64_t bytes);
  // Writes all of [data, data + n) at `offset` (pwrite until done).
  virtual int Write(int fd, const char* data, size_t n, uint64_t offset);
  // fdatasync.
  virtual int SyncData(int fd);

  // The process-wide POSIX implementation.
  static WalEnv* Posix();
};

}  // namespace cairn::wal
