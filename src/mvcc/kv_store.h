// KvStore: etcd's multi-version key-value model on the storage engine.
//
// Every write transaction that changes something creates one new main
// revision; each change inside it gets a sub revision. Versions stay readable
// by revision until compacted. Nothing of the data set is held in memory: the
// current and compacted revisions are the only state outside the engine.
//
// Threads: Read() and everything on a ReadTxn may be called from any thread.
// Write(), Commit() and Compact*() only from the one apply thread.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <functional>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <unordered_set>
#include <vector>

#include "common/status.h"
#include "mvccpb/kv.pb.h"
#include "storage/engine.h"

namespace cairn::mvcc {

// `end` follows the wire: "" is the single key `key`; "\0" means every key
// >= `key`; anything else is the half-open range [key, end).
struct RangeOptions {
  int64_t limit = 0;     // 0 = no limit
  int64_t rev = 0;       // 0 = the reader's current revision
  bool count_only = false;
};

struct RangeResult {
  std::vector<mvccpb::KeyValue> kvs;
  int64_t count = 0;  // number of keys in the range at `rev`, ignoring limit
  int64_t rev = 0;    // the reader's current revision
};

// What the applier's Range, Txn and compare logic needs from a reader; both
// read-only and write transactions provide it (as etcd's mvcc.ReadView).
class ReadView {
 public:
  virtual ~ReadView() = default;
  virtual int64_t Rev() const = 0;       // the revision reads see
  virtual int64_t FirstRev() const = 0;  // the compacted revision
  virtual Result<RangeResult> Range(std::string_view key, std::string_view end,
                                    const RangeOptions& options) = 0;
};

class KvStore;

// A consistent read at one point in time. Not thread-safe; cheap to create.
class ReadTxn final : public ReadView {
 public:
  int64_t Rev() const override { return rev_; }
  int64_t FirstRev() const override { return compact_rev_; }
  Result<RangeResult> Range(std::string_view key, std::string_view end,
                            const RangeOptions& options) override;
  // Changes with revision in [from_rev, to_rev], at most max_events of them
  // (whole revisions only, unless one revision alone exceeds the cap). Each
  // event carries prev_kv when `with_prev_kv`.
  Result<std::vector<mvccpb::Event>> Events(int64_t from_rev, int64_t to_rev, size_t max_events,
                                            bool with_prev_kv, int64_t* next_rev);
  const storage::Snapshot* snapshot() const { return snapshot_.get(); }

 private:
  friend class KvStore;
  const KvStore* store_ = nullptr;
  std::shared_ptr<const storage::Snapshot> snapshot_;
  int64_t rev_ = 0;
  int64_t compact_rev_ = 0;
};

// A write transaction of the apply thread, staged in a WriteBatch. Reads see
// the transaction's own changes. Nothing is visible to others until the
// applier commits the batch with KvStore::Commit.
class WriteTxn final : public ReadView {
 public:
  // Begins at the store's current revision, or at `begin_rev` when several
  // transactions are staged in one batch before it is committed.
  WriteTxn(KvStore* store, storage::WriteBatch* batch, int64_t begin_rev = -1);
  int64_t Rev() const override { return changes_.empty() ? begin_rev_ : begin_rev_ + 1; }
  int64_t FirstRev() const override;
  Result<RangeResult> Range(std::string_view key, std::string_view end,
                            const RangeOptions& options) override;
  // Returns the revision of the change.
  Result<int64_t> Put(std::string_view key, std::string_view value, int64_t lease);
  // Returns {number deleted, revision}.
  Result<std::pair<int64_t, int64_t>> DeleteRange(std::string_view key, std::string_view end);
  // The latest live version of `key` as seen by this transaction.
  Result<bool> Get(std::string_view key, mvccpb::KeyValue* kv);
  // Keys attached to `lease` (latest state, through the batch).
  Result<std::vector<std::string>> LeaseKeys(int64_t lease);

  int64_t begin_rev() const { return begin_rev_; }
  // The events of this transaction, with prev_kv filled, in sub-revision order.
  const std::vector<mvccpb::Event>& changes() const { return changes_; }
  // The revision after commit.
  int64_t end_rev() const { return changes_.empty() ? begin_rev_ : begin_rev_ + 1; }

 private:
  void SetEventPrevKv(std::string_view key, const mvccpb::KeyValue* latest, mvccpb::Event* ev);

  KvStore* store_;
  storage::WriteBatch* batch_;
  int64_t begin_rev_;
  std::vector<mvccpb::Event> changes_;
  std::unordered_set<std::string> changed_keys_;
};

class KvStore {
 public:
  explicit KvStore(storage::Engine* engine);

  // Loads the revisions from the engine and finishes an interrupted physical
  // compaction. Call once before anything else.
  Status Open();

  int64_t CurrentRevision() const { return current_rev_.load(); }
  int64_t CompactRevision() const { return compact_rev_.load(); }

  std::unique_ptr<ReadTxn> Read() const;

  // Runs `replace` (which rewrites the whole engine, e.g. installing a
  // snapshot from the leader) with no reader taking a snapshot meanwhile,
  // then reloads the revisions (as Open). Readers that started before keep
  // their consistent view of the old contents.
  Status ReplaceContents(const std::function<Status()>& replace);

  // Writes `batch` (which holds zero or more WriteTxns' changes and whatever
  // else the applier added) atomically and makes `new_rev` the current
  // revision, so that no reader sees the data without the revision or the
  // other way round.
  Status Commit(storage::WriteBatch& batch, int64_t new_rev, bool sync);

  // Validates and records a compaction at `rev` in `batch` (etcd's errors:
  // compacted when rev <= the compacted revision, future when > current).
  // The new compacted revision becomes visible at Commit via
  // SetCompactRevisionAfterCommit.
  Status ScheduleCompaction(storage::WriteBatch* batch, int64_t rev);
  void SetCompactRevisionAfterCommit(int64_t rev);
  // Physically removes versions no read can ask for any more. Idempotent;
  // writes in chunks. Apply thread only.
  Status CompactPhysical(int64_t rev);

  // crc32c over all versions up to `rev` (0 = current) that survive compaction.
  Result<uint32_t> HashKV(int64_t rev, int64_t* hash_rev, int64_t* compact_rev) const;

  storage::Engine* engine() const { return engine_; }

  // Meta keys (column kMeta).
  static constexpr std::string_view kMetaCurrentRev = "current_rev";
  static constexpr std::string_view kMetaCompactRev = "compact_rev";
  static constexpr std::string_view kMetaScheduledCompactRev = "scheduled_compact_rev";
  static constexpr std::string_view kMetaFinishedCompactRev = "finished_compact_rev";

 private:
  friend class ReadTxn;
  friend class WriteTxn;

  storage::Engine* engine_;
  mutable std::shared_mutex commit_mu_;  // orders Commit against Read's snapshot
  std::atomic<int64_t> current_rev_{1};
  std::atomic<int64_t> compact_rev_{-1};  // etcd starts at -1: Compact(0) is valid once
};

// Shared by ReadTxn and WriteTxn: range over any iterator source.
// Internal; exposed for tests.
Result<bool> ParseVersion(std::string_view encoded_key, std::string_view value,
                          mvccpb::KeyValue* kv, bool* tombstone);

}  // namespace cairn::mvcc
