// Wal: the durable log of a member, in preallocated, zero-filled segment
// files, so that an acknowledged write costs one fdatasync that overwrites
// blocks already written (no size or extent change for the file system to
// journal). See docs/architecture.md "Log" for the measurements behind it.
//
// The log holds entries with consecutive indexes [first_index, last_index]
// and the latest HardState (Raft's term, vote and commit). Append and
// SetHardState only buffer; Sync writes everything buffered with one write
// and one fdatasync (group commit: the caller batches). Segment files live in
// one folder, named <seq>.wal (16 hex digits); each holds a header and
// records framed with a length and a CRC32C (record.h).
//
// Recovery (Open) reads the segments in seq order:
//  * a segment whose header is missing or damaged is unused (a spare) and
//    may only be followed by more unused ones;
//  * records are read up to the first one that is not valid (zeros, torn,
//    bad CRC, a recycled file's old record). In the LAST used segment that is
//    the end of the log: a torn write of a batch nobody was told is durable.
//    But every record carries the index that was durable when it was
//    appended; if any valid record after the break says the broken spot had
//    already been synced, the damage is in acknowledged data: DataLoss.
//  * in an earlier segment the break must be where the next segment starts
//    (its first_index follows on), with nothing valid after it: else DataLoss.
// Open refuses with Code::kDataLoss and a message naming the file and offset.
//
// Segments are prepared ahead of need by Maintain() (from a thread the
// caller owns): a new file is fallocated and every byte written with zeros
// and synced, or a released segment is renamed to a new seq (its old records
// carry the old seq, so they never read as new ones). If no segment is
// ready at rollover, Append prepares one itself and logs the cost.
//
// ENOSPC (or EDQUOT) anywhere comes back as Code::kResourceExhausted; Append
// fails before changing anything, so the caller may refuse the batch and go
// on. Any other I/O failure of Append, Sync, TruncateAfter or Reset leaves
// the log in an unknown state: the caller must stop using it (and restart,
// which recovers from the files).
//
// Thread safety: Maintain() may run on any thread at the same time as the
// other calls; every other call must come from one thread at a time.
#pragma once

#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <vector>

#include "common/status.h"
#include "wal/record.h"
#include "wal/wal_env.h"

namespace cairn::wal {

struct WalOptions {
  // Bytes of one segment file. A multiple of 4096, at least 64 KiB; an entry
  // too large for it gets a segment of its own size. Default: 64 MiB.
  uint64_t segment_bytes = 64ULL << 20;
  // Segments kept prepared beyond the active one. Default: 1.
  size_t spare_segments = 1;
  // Appended bytes buffered in memory before Append writes them to the file
  // (without sync). Default: 4 MiB.
  size_t max_buffer_bytes = 4 << 20;
  // File operations; nullptr = WalEnv::Posix(). Not owned.
  WalEnv* env = nullptr;

  Status Validate() const;
};

class Wal {
 public:
  // Opens (creating the folder if needed) and recovers the log in `dir`.
  static Result<std::unique_ptr<Wal>> Open(const std::string& dir, const WalOptions& options);
  ~Wal();
  Wal(const Wal&) = delete;
  Wal& operator=(const Wal&) = delete;

  // An empty log has last_index() == first_index() - 1; a new one starts at 1.
  uint64_t first_index() const { return first_index_; }
  uint64_t last_index() const { return last_index_; }
  bool empty() const { return last_index_ < first_index_; }
  // The last index made durable by Sync (or recovered).
  uint64_t synced_index() const { return synced_index_; }
  // The latest HardState set (durable once Sync returns).
  const HardState& hard_state() const { return hard_state_; }

  // Buffers `entries`. REQUIRES (else kInvalidArgument): their indexes are
  // consecutive and the first is last_index() + 1. kResourceExhausted when a
  // new segment is needed and there is no room for it; the log is unchanged.
  Status Append(std::span<const Entry> entries);
  // Buffers a HardState record. Errors as Append.
  Status SetHardState(const HardState& hard_state);
  // Writes everything buffered and fdatasyncs it: one write and one sync for
  // any number of appended entries (more only when a segment fills up).
  // No-op if nothing is buffered.
  Status Sync();

  // Drops entries after `index` (a Raft follower's conflicting suffix) by
  // starting a new segment whose header voids them; durable on return, as is
  // the current HardState. REQUIRES: first_index() - 1 <= index <= last_index().
  Status TruncateAfter(uint64_t index);
  // Drops every entry; the log continues at `next_index` (after a restored
  // snapshot). Durable on return; keeps the HardState.
  Status Reset(uint64_t next_index);

  // Whether ReleaseBefore(index) would release a segment.
  bool CanReleaseBefore(uint64_t index) const;
  // Releases whole segments that hold only entries below `index` (never the
  // active one); Maintain() then recycles or deletes their files. Returns how
  // many were released. first_index() moves to the first kept entry.
  size_t ReleaseBefore(uint64_t index);

  // Entries from `index` on, as many as fit in `max_bytes` of data (at least
  // one), only durable ones (up to synced_index()): an index past it gives
  // none, one below first_index() kOutOfRange (released).
  Result<std::vector<Entry>> ReadFrom(uint64_t index, size_t max_bytes) const;

  // Recycles or deletes released segments, then prepares spares until
  // options.spare_segments are ready. Thread-safe; may block for as long as
  // writing a segment of zeros takes.
  Status Maintain();

  // For tests and metrics.
  size_t segment_count() const { return segments_.size(); }
  size_t spare_count() const;
  const std::string& dir() const { return dir_; }

 private:
  struct Segment;
  struct Spare {
    uint64_t seq = 0;
    uint64_t bytes = 0;
  };
  struct Recovery;

  Wal(std::string dir, const WalOptions& options);
  Status Recover();
  Status RecoverSegment(Recovery* r, uint64_t seq, uint64_t bytes);
  std::string SegmentPath(uint64_t seq) const;

  // Spares for the segments `bytes_needed` (in order); prepares inline what
  // the pool lacks. On failure returns every taken spare to the pool.
  Status TakeSpares(const std::vector<uint64_t>& bytes_needed, std::deque<Spare>* out);
  void ReturnSpares(std::deque<Spare>* spares);
  // REQUIRES: prepare_mu_ held. Creates a zero-filled segment file.
  Status CreateSegmentFile(uint64_t seq, uint64_t bytes);
  // Writes zeros over [from, to) of `fd`, paced; returns 0 or an errno value.
  int WriteZeros(int fd, uint64_t from, uint64_t to);
  Status SyncDir();
  // Syncs the active segment, then makes `spare` active, starting at
  // last_index_ + 1 (or first_index with `flags`).
  Status Activate(const Spare& spare, uint64_t first_index, uint32_t flags);
  // Writes the buffer as whole blocks; with `sync` also fdatasyncs.
  Status WriteBuffer(bool sync);
  // Starts a new segment whose header voids everything at or after
  // `first_index` (kSegmentTruncates) or everything (kSegmentResets).
  Status StartOverride(uint64_t first_index, uint32_t flags);
  void AppendHardStateRecord();
  // How many bytes a new segment needs to take `record_bytes` as its first
  // record.
  uint64_t SegmentBytesFor(uint64_t record_bytes) const;

  const std::string dir_;
  const WalOptions options_;
  WalEnv* const env_;

  // Writer state (the one thread calling everything but Maintain).
  std::deque<std::unique_ptr<Segment>> segments_;  // in seq order; back() is active
  uint64_t first_index_ = 1;
  uint64_t last_index_ = 0;
  uint64_t synced_index_ = 0;
  HardState hard_state_;
  // Bytes of the active segment not yet durable: file bytes [buf_offset_,
  // end). buf_offset_ is block-aligned, so the buffer may start with the
  // durable beginning of a partly written block, which is written again:
  // whole-block writes never make the kernel read a block first.
  std::string buf_;
  uint64_t buf_offset_ = 0;
  bool buf_dirty_ = false;  // bytes appended since the last write
  bool unsynced_ = false;   // written since the last fdatasync

  // Shared with Maintain.
  std::mutex prepare_mu_;  // one segment preparation (or recycling) at a time
  mutable std::mutex mu_;
  std::deque<Spare> spares_;        // GUARDED_BY(mu_), by seq
  std::deque<Spare> released_;      // GUARDED_BY(mu_), oldest first
  uint64_t next_seq_ = 1;           // GUARDED_BY(mu_)
};

}  // namespace cairn::wal
