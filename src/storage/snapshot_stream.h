// A consistent, self-checking dump of a member's database, streamed by the
// Maintenance.Snapshot RPC and read back by `cairnctl snapshot restore`.
//
// Format: "CAIRNSNAP1\n", then records
//     u8 column, u32le key length, key, u32le value length, value
// then an end marker (u8 0xfe), zero padding to a multiple of 512 bytes, and
// the 32-byte SHA-256 of everything before it. The padding and trailer are
// what etcdctl's `snapshot save` checks (size % 512 == 32), so the real
// etcdctl saves cairn snapshots. The durable log is not included: a restored
// member starts at its applied index with an empty log.
//
// Thread: a SnapshotReader belongs to one thread at a time.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "common/status.h"
#include "storage/engine.h"

namespace cairn::storage {

class SnapshotReader {
 public:
  // Reads at `snapshot`, which must outlive the reader.
  SnapshotReader(Engine* engine, std::shared_ptr<const Snapshot> snapshot);
  ~SnapshotReader();
  // Appends up to about `max_bytes` of the stream to `out`; false once done.
  Result<bool> NextChunk(std::string* out, size_t max_bytes);
  // True once the trailer has been produced.
  bool done() const { return done_; }

  struct Hasher;

 private:
  Engine* engine_;
  std::shared_ptr<const Snapshot> snapshot_;
  int column_ = 0;
  std::unique_ptr<Iterator> it_;
  bool header_done_ = false;
  bool done_ = false;
  size_t total_bytes_ = 0;
  std::unique_ptr<Hasher> hasher_;
};

// Which records to restore; null keeps all.
using RestoreFilter = std::function<bool(Column column, std::string_view key)>;

// Verifies `snapshot_path` and creates a new database in `db_path` from it.
// Refuses a `db_path` that exists and is not empty; on failure leaves nothing
// behind.
Status RestoreSnapshot(const std::string& snapshot_path, const std::string& db_path,
                       const RestoreFilter& keep = nullptr);

// Whether `snapshot_path` is a whole cairn snapshot with a matching
// checksum (DataLoss otherwise).
Status VerifySnapshotFile(const std::string& snapshot_path);

// Verifies `snapshot_path` and then makes the contents of the live `engine`
// the snapshot's: every record is deleted except those `local` says to keep,
// and the snapshot's records are written, except those `local` names (the
// engine's own keep their value). Not atomic: the caller marks the install
// (and finishes it after a crash), keeps readers out, and syncs at the end.
// Nothing is changed if the file does not verify.
Status ReplaceWithSnapshot(Engine* engine, const std::string& snapshot_path, const RestoreFilter& local);

}  // namespace cairn::storage
