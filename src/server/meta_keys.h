// The records a member keeps about itself in the database's kMeta column
// (beside the applier's: applied index, alarms, member table). Read and
// written by Node; a restore (server/restore.h) writes the ids and the log
// base of a new cluster.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "storage/engine.h"

namespace cairn::server::meta {

inline constexpr std::string_view kFormat = "format";
inline constexpr std::string_view kFormatV1 = "cairn-v1";
inline constexpr std::string_view kClusterId = "cluster_id";
inline constexpr std::string_view kMemberId = "member_id";
// The Raft log's base (LogBase::Encode): absent in data dirs of the
// single-member version, whose log entries are plain requests.
inline constexpr std::string_view kLogBase = "raft_log_base";
// Set while a snapshot from the leader is being written into the database:
// the image file and the log base it ends at. Cleared in the install's last
// (synced) write; found at start-up, the install is done again.
inline constexpr std::string_view kInstalling = "installing_snapshot";

// Stages the member's cluster and member ids (8 bytes big-endian each).
inline void PutIds(storage::WriteBatch* batch, uint64_t cluster_id, uint64_t member_id) {
  std::string v;
  storage::PutFixed64BE(&v, cluster_id);
  batch->Put(storage::Column::kMeta, kClusterId, v);
  v.clear();
  storage::PutFixed64BE(&v, member_id);
  batch->Put(storage::Column::kMeta, kMemberId, v);
}

}  // namespace cairn::server::meta
