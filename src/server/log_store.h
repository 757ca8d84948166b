// LogStore: the Raft core's Storage over the member's write-ahead log
// (src/wal/).
//
// The log holds the entries after a *base*: the last entry dropped from it
// (index, term) and the membership in effect there. The base is the point
// the core treats as its snapshot: FirstIndex() is base.index + 1, Term of
// base.index is base.term, and GetInitialState's membership is the base's,
// which the core replays the log's membership changes onto. The base lives
// in the database (the host saves it through `save_base` before any entry
// before it leaves the log), so a crash between the two leaves entries in the
// files that the store simply hides.
//
// What the core reads often stays in memory: every kept entry's term, the
// memberships along the log, and the newest entries (up to `cache_bytes`),
// from which a leader's Appends and the committed entries a Ready hands out
// are served without reading the files.
//
// Contract with the host (the raft thread): Append, SetHardState and Sync
// are called in Ready order; everything appended is visible through the
// Storage methods at once, so the host calls Sync before its next RawNode
// call whenever it appended (the Storage contract is "visible means
// durable").
//
// Thread-safety: none; one thread (the raft thread) calls everything.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "raft/message.h"
#include "raft/storage.h"
#include "wal/wal.h"

namespace cairn::server {

struct LogBase {
  uint64_t index = 0;
  uint64_t term = 0;
  raft::ConfState conf_state;

  std::string Encode() const;
  static Result<LogBase> Decode(const std::string& data);
};

class LogStore final : public raft::Storage {
 public:
  // Persists a new base durably (a synced database write).
  using SaveBase = std::function<Status(const LogBase&)>;
  // Takes an image of the state machine (the database at its applied
  // index) for a follower that is behind the log; returns that index. The
  // image is the host's (data names it); the store fills in term and
  // membership.
  using SnapshotSource = std::function<Result<uint64_t>()>;

  // Reads the kept entries' terms and memberships, and fills the cache.
  // `wal` is not owned and must outlive the store. DataLoss if the log does
  // not reach the base or starts after it.
  static Result<std::unique_ptr<LogStore>> Open(wal::Wal* wal, LogBase base, SaveBase save_base,
                                                uint64_t cache_bytes = 64ULL << 20);
  void SetSnapshotSource(SnapshotSource source) { snapshot_source_ = std::move(source); }

  // --- Host side ---

  // Appends a Ready's entries, first dropping any stored entries from
  // entries.front().index on. kResourceExhausted (a full disk): nothing was
  // appended; the call may be repeated with the same entries.
  Status Append(const std::vector<raft::Entry>& entries);
  Status SetHardState(const raft::HardState& hard_state);
  // Writes and fdatasyncs everything appended (one write, one sync).
  Status Sync();
  // Drops the entries before `index` from the log: saves the new base, then
  // releases the whole segments that hold only older entries. REQUIRES:
  // index <= LastIndex() + 1, and everything before it applied and durable
  // in the database.
  Status CompactBefore(uint64_t index);
  // Whether CompactBefore(index) would release a segment.
  bool CanCompactBefore(uint64_t index) const { return wal_->CanReleaseBefore(index); }
  // A snapshot from the leader was installed in the database (which saved
  // `base` with it): the log starts over right after it.
  Status ResetToSnapshot(const LogBase& base);
  // The membership after the last entry in the log.
  const raft::ConfState& LastConfState() const;
  const LogBase& base() const { return base_; }

  // --- raft::Storage ---
  Result<raft::InitialState> GetInitialState() const override;
  Result<std::vector<raft::Entry>> Entries(uint64_t lo, uint64_t hi, uint64_t max_bytes) const override;
  Result<uint64_t> Term(uint64_t index) const override;
  uint64_t FirstIndex() const override { return base_.index + 1; }
  uint64_t LastIndex() const override { return base_.index + terms_.size() - 1; }
  // The database now, at its applied index (through the SnapshotSource);
  // kUnavailable without a source.
  Result<raft::Snapshot> GetSnapshot() const override;

 private:
  LogStore(wal::Wal* wal, LogBase base, SaveBase save_base, uint64_t cache_bytes);
  Status Load();
  // Bookkeeping for an entry now at the end of the log.
  void Track(const raft::Entry& entry);
  // Forgets everything from `index` on (the entries were overwritten).
  void ForgetFrom(uint64_t index);
  raft::ConfState ConfStateAt(uint64_t index) const;

  wal::Wal* const wal_;
  LogBase base_;
  SaveBase save_base_;
  SnapshotSource snapshot_source_;
  const uint64_t cache_bytes_;
  // terms_[i] is the term of entry base_.index + i (terms_[0] = base term).
  std::deque<uint64_t> terms_;
  // The membership after each change entry in the log, ascending index.
  std::deque<std::pair<uint64_t, raft::ConfState>> conf_changes_;
  // The newest entries, consecutive, ending at LastIndex().
  std::deque<raft::Entry> cache_;
  uint64_t cache_used_bytes_ = 0;
};

// A founding member's log: the initial membership as committed entries of
// term 1 (index 1, 2, ...), as every founder writes them; synced.
Status WriteFoundingEntries(wal::Wal* wal, const std::vector<raft::ConfChange>& changes);
// At start-up, before the core is created: the commit index rides the next
// sync, so after a crash the log's HardState may be behind what the database
// applied (every applied entry was committed): raise it to `applied`. A log
// that starts at a base whose term it never saw (a restored member's) starts
// in the base's term. Synced if changed.
Status AlignHardState(wal::Wal* wal, const LogBase& base, uint64_t applied);

// wal::Entry <-> raft::Entry.
wal::Entry ToWal(const raft::Entry& e);
raft::Entry FromWal(wal::Entry e);

}  // namespace cairn::server
