// The durable log as the Raft core reads it.
//
// The host owns the storage and writes to it (entries, hard state, snapshots
// from Ready, compaction); the Raft core only reads through this interface.
// Contract: everything visible through a Storage is durable. The host makes a
// Ready's writes visible here only once they are on disk (and before it
// acknowledges them with RawNode::AckPersisted).
//
// Thread-safety: called only from the thread driving the RawNode; the host must
// not mutate the storage concurrently with a RawNode call.
#pragma once

#include <cstdint>
#include <vector>

#include "common/status.h"
#include "raft/message.h"

namespace cairn::raft {

struct InitialState {
  HardState hard_state;
  // The membership at the latest snapshot (empty for a fresh or bootstrapped
  // node: bootstrap writes the initial membership as log entries).
  ConfState conf_state;
};

class Storage {
 public:
  virtual ~Storage() = default;

  virtual Result<InitialState> GetInitialState() const = 0;
  // Entries with index in [lo, hi), at most max_bytes of payload but at least
  // one entry. Error kCompacted if lo < FirstIndex().
  // REQUIRES: hi <= LastIndex() + 1.
  virtual Result<std::vector<Entry>> Entries(uint64_t lo, uint64_t hi,
                                             uint64_t max_bytes) const = 0;
  // The term of entry `index`, for index in [FirstIndex() - 1, LastIndex()]
  // (the entry before the first is the snapshot's). kCompacted below that
  // range, kUnavailable above.
  virtual Result<uint64_t> Term(uint64_t index) const = 0;
  // The index of the first entry available (the snapshot's index + 1).
  virtual uint64_t FirstIndex() const = 0;
  virtual uint64_t LastIndex() const = 0;
  // The latest snapshot. kUnavailable if it is being built; the leader then
  // retries later.
  virtual Result<Snapshot> GetSnapshot() const = 0;
};

}  // namespace cairn::raft
