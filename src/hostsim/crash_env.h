// CrashEnv: the log's file operations over real files, with a simulated power
// loss. Every write not yet covered by an fdatasync of its file is recorded
// with the bytes it overwrote; Crash() keeps an ordered prefix of those writes
// (the last kept one possibly torn at a 512-byte sector) and undoes the rest,
// newest first, so the files hold exactly what a disk could hold after losing
// power at that moment. Until Restart() every later write is discarded (the
// process is dead).
//
// File creation, rename and unlink are not recorded: the log syncs the
// directory after each, so they are durable when it relies on them.
//
// `lying_sync` (a mutation for the simulator's own test): SyncData reports
// success but makes nothing durable, so a crash loses acknowledged writes.
//
// Thread-safety: thread-safe (the log's Maintain may run on another thread).
#pragma once

#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

#include "raft/random.h"
#include "wal/wal_env.h"

namespace cairn::hostsim {

class CrashEnv final : public wal::WalEnv {
 public:
  explicit CrashEnv(bool lying_sync = false) : lying_sync_(lying_sync) {}

  int Allocate(int fd, uint64_t bytes) override;
  int Write(int fd, const char* data, size_t n, uint64_t offset) override;
  int SyncData(int fd) override;

  // The power fails during the next fdatasync (or write): it reports
  // success, makes nothing durable, and the env is dead from then on; the
  // simulator notices crashed() after the host's turn and crashes the member.
  void ArmCrash();
  void Disarm() {
    std::lock_guard<std::mutex> lock(mu_);
    armed_ = false;
  }
  bool crashed() const {
    std::lock_guard<std::mutex> lock(mu_);
    return crashed_;
  }

  // Loses what was not synced (a random part of it survives, in order);
  // returns how many writes were undone. The files must still be open.
  size_t Crash(raft::SplitMix64& rng);
  void Restart();

  uint64_t writes() const { return writes_; }

 private:
  struct Undo {
    uint64_t ino = 0;
    std::string path;
    uint64_t offset = 0;
    std::string old_bytes;   // what [offset, offset + n) held within the old size
    uint64_t old_size = 0;   // the file's size before the write
    size_t n = 0;
    std::string new_bytes;
  };

  mutable std::mutex mu_;
  const bool lying_sync_;
  bool crashed_ = false;
  bool armed_ = false;
  uint64_t writes_ = 0;
  std::vector<Undo> unsynced_;  // oldest first
};

}  // namespace cairn::hostsim
