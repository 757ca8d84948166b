// Engine: the one place that includes RocksDB.
//
// cairn keeps everything of a node in one RocksDB instance with a column
// family per kind of record, so one atomic write can change several kinds
// (for example an MVCC change, the lease attachments and the applied index).
//
// Thread safety: Engine is thread-safe. A WriteBatch and an Iterator belong
// to one thread at a time. Snapshots may be shared between threads.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "common/status.h"

namespace rocksdb {
class DB;
class ColumnFamilyHandle;
class Iterator;
class Snapshot;
class WriteBatchWithIndex;
}  // namespace rocksdb

namespace cairn::storage {

enum class Column : int {
  kMeta = 0,      // node metadata: applied index, revisions, ids, format marker
  kKey = 1,       // MVCC versions by (key, revision), newest first
  kRev = 2,       // MVCC change log by revision -> key, for watch replay
  kLease = 3,     // lease id -> lease record
  kLeaseKey = 4,  // lease id + key -> "" (attachments)
  kLog = 5,       // the log of data dirs written before src/wal/: read once, then emptied
  kCount = 6,
};

struct EngineOptions {
  std::string path;
  // Bytes of block cache shared by all columns. Default: 64 MiB.
  size_t block_cache_bytes = 64 << 20;
  // Create the database if it does not exist. Default: true.
  bool create_if_missing = true;
  // Sync the RocksDB WAL on every write of sync=true. Tests of crash safety
  // rely on this being the only durability knob.
};

class Engine;

// A read view at one point in time. Cheap to copy (shared).
class Snapshot {
 public:
  ~Snapshot();
  const rocksdb::Snapshot* raw() const { return snap_; }

 private:
  friend class Engine;
  Snapshot(rocksdb::DB* db, const rocksdb::Snapshot* snap) : db_(db), snap_(snap) {}
  rocksdb::DB* db_;
  const rocksdb::Snapshot* snap_;
};

// A forward/backward iterator over one column, bounded to [lower, upper).
class Iterator {
 public:
  ~Iterator();
  void Seek(std::string_view target);
  void SeekForPrev(std::string_view target);
  void SeekToFirst();
  void SeekToLast();
  bool Valid() const;
  void Next();
  void Prev();
  std::string_view key() const;
  std::string_view value() const;
  Status status() const;

 private:
  friend class Engine;
  friend class WriteBatch;
  Iterator() = default;
  std::unique_ptr<rocksdb::Iterator> it_;
  std::unique_ptr<struct IteratorBounds> bounds_;
};

// A batch of changes applied atomically by Engine::Write. Reads through the
// batch (Get, NewIterator) see the batch's own puts and deletes on top of the
// latest committed state; DeleteRange is not visible to such reads.
class WriteBatch {
 public:
  explicit WriteBatch(Engine* engine);
  ~WriteBatch();
  void Put(Column c, std::string_view key, std::string_view value);
  void Delete(Column c, std::string_view key);
  void DeleteRange(Column c, std::string_view begin, std::string_view end);
  Result<bool> Get(Column c, std::string_view key, std::string* value) const;
  std::unique_ptr<Iterator> NewIterator(Column c, std::string_view lower = {},
                                        std::string_view upper = {}) const;
  size_t Count() const;
  size_t ByteSize() const;
  void Clear();
  // Marks the current state; RollbackToSavePoint undoes every change since
  // the last mark (and removes it). Used to drop one failed request out of a
  // batch of several. REQUIRES: no DeleteRange in the batch (RocksDB cannot
  // rebuild its index over one).
  void SetSavePoint();
  void RollbackToSavePoint();
  void PopSavePoint();

 private:
  friend class Engine;
  Engine* engine_;
  std::unique_ptr<rocksdb::WriteBatchWithIndex> batch_;
};

class Engine {
 public:
  // Opens (or creates) the database at options.path.
  static Result<std::unique_ptr<Engine>> Open(const EngineOptions& options);
  ~Engine();

  // Applies the batch atomically. With sync=true the call returns only once
  // the batch (and everything written before it) is on stable storage.
  Status Write(WriteBatch& batch, bool sync);

  // Makes every write so far durable (RocksDB's WAL fsync), including
  // those written with sync=false.
  Status SyncWal();

  // Point read of the latest state (snapshot == nullptr) or of a snapshot.
  Result<bool> Get(Column c, std::string_view key, std::string* value,
                   const Snapshot* snapshot = nullptr) const;
  // Point reads of many keys at once (RocksDB's MultiGet: one pass over the
  // memtables and files for the batch). (*values)[i] is set where
  // (*found)[i]; the first error is returned.
  Status MultiGet(Column c, const std::vector<std::string>& keys, std::vector<std::string>* values,
                  std::vector<bool>* found, const Snapshot* snapshot = nullptr) const;
  std::shared_ptr<const Snapshot> GetSnapshot() const;
  std::unique_ptr<Iterator> NewIterator(Column c, const Snapshot* snapshot = nullptr,
                                        std::string_view lower = {},
                                        std::string_view upper = {}) const;

  // Bytes the database occupies (SST files and memtables).
  uint64_t TotalSizeBytes() const;
  // Estimated bytes of live data.
  uint64_t LiveDataSizeBytes() const;
  // Compacts every column fully (the Defragment RPC): rewrites files to drop
  // deleted data. Runs in RocksDB's background threads; the call waits.
  Status CompactAll();
  // Flushes memtables and writes a consistent copy of the database into
  // `dir` (hard links where possible).
  Status Checkpoint(const std::string& dir);
  const std::string& path() const { return path_; }

  rocksdb::ColumnFamilyHandle* handle(Column c) const;
  rocksdb::DB* db() const { return db_.get(); }

 private:
  Engine() = default;
  std::string path_;
  std::unique_ptr<rocksdb::DB> db_;
  std::vector<rocksdb::ColumnFamilyHandle*> handles_;
};

// Big-endian fixed encodings keep numeric order equal to byte order.
void PutFixed64BE(std::string* dst, uint64_t v);
uint64_t DecodeFixed64BE(std::string_view src);

}  // namespace cairn::storage
