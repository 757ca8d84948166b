// The safety properties of Raft (Figure 3 of the paper), checked incrementally
// after every simulation step from what the hosts observe:
//
//   Election Safety:      at most one leader per term.
//   Log Matching:         two logs with an entry of the same index and term
//                         are identical up to it. Checked with chain hashes:
//                         each (index, term) ever persisted anywhere maps to
//                         one hash of the whole prefix.
//   Leader Completeness:  a new leader of term T holds every entry committed
//                         in a term before T. (Entries committed in later
//                         terms need not be there: a candidate may win term
//                         T on late votes after term T+1 committed something,
//                         and can then commit nothing.)
//   State Machine Safety: no two nodes apply different entries at an index,
//                         and no node reports a different committed prefix.
//   Linearizable reads:   a ReadIndex read is served at an index that covers
//                         every write committed before the read started.
//
// Every check is O(1) or O(new entries) per observation, so a run can check
// after every step. The first violation is kept; later ones are ignored.
//
// Thread-safety: none (the simulation is single-threaded).
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "raft/message.h"

namespace cairn::sim {

using raft::NodeId;

// H(prefix before entry, entry): the chain hash of a log prefix, also the
// state hash of a state machine that applied that prefix.
uint64_t ChainHash(uint64_t previous, const raft::Entry& entry);

// One node's log as the checker sees it: from a base (snapshot or zero)
// followed by entries, with the chain hash at every index.
class LogShadow {
 public:
  void Reset(uint64_t base_index, uint64_t base_term, uint64_t base_hash);
  uint64_t base_index() const { return base_index_; }
  uint64_t last_index() const { return base_index_ + hashes_.size(); }
  bool Has(uint64_t index) const { return index >= base_index_ && index <= last_index(); }
  uint64_t HashAt(uint64_t index) const;
  uint64_t TermAt(uint64_t index) const;
  // Replaces entries from entries.front().index on. Returns false if that
  // leaves a gap.
  bool Append(const std::vector<raft::Entry>& entries);

 private:
  uint64_t base_index_ = 0;
  uint64_t base_term_ = 0;
  uint64_t base_hash_ = 0;
  std::vector<uint64_t> hashes_;
  std::vector<uint64_t> terms_;
};

class SafetyChecker {
 public:
  bool ok() const { return !violation_.has_value(); }
  const std::string& violation() const { return *violation_; }

  // --- Observations. `step` is the simulation step, for the report. ---
  void OnLeader(uint64_t step, NodeId id, uint64_t term, const LogShadow& log);
  // Entries that became durable on a node, with their chain hashes: Log
  // Matching. (Entries a node held only in memory and lost in a crash never
  // existed for anybody else, so they are not compared.)
  struct EntryMark {
    uint64_t index;
    uint64_t term;
    uint64_t hash;
  };
  void OnDurableEntries(uint64_t step, NodeId id, const std::vector<EntryMark>& entries);
  // A node's commit index, observed while it was in `term`: its log up to
  // there is committed, by a leader of `term` or earlier.
  void OnCommit(uint64_t step, NodeId id, uint64_t term, const LogShadow& log, uint64_t commit);
  // A state machine reached `index` with `state_hash` (by applying an entry
  // or restoring a snapshot).
  void OnApplied(uint64_t step, NodeId id, uint64_t index, uint64_t state_hash);
  // A node restarted; its committed prefix is re-reported from scratch.
  void OnRestart(NodeId id) { reported_commit_[id] = 0; }

  // Reads: the highest index known committed anywhere when the read starts,
  // then the index it was served at.
  uint64_t MaxCommitted() const { return committed_.empty() ? 0 : committed_.size() - 1; }
  void OnReadServed(uint64_t step, NodeId id, const std::string& context, uint64_t read_index,
                    uint64_t committed_at_start, uint64_t applied);

  void Fail(uint64_t step, const std::string& what);

  uint64_t leaders_elected() const { return leaders_.size(); }
  uint64_t reads_served() const { return reads_served_; }

 private:
  // Records or compares the committed chain hash at `index`.
  void CheckCommitted(uint64_t step, NodeId id, uint64_t index, uint64_t hash, const char* what);

  std::optional<std::string> violation_;
  std::map<uint64_t, NodeId> leaders_;  // term -> leader
  // (index, term) -> chain hash, for Log Matching.
  std::unordered_map<uint64_t, uint64_t> seen_;
  // committed_[i]: the chain hash of the committed prefix up to i (0: unknown).
  std::vector<uint64_t> committed_;
  std::unordered_map<NodeId, uint64_t> reported_commit_;
  // term -> the highest commit index observed on a node in that term.
  std::map<uint64_t, uint64_t> commit_seen_in_term_;
  uint64_t reads_served_ = 0;
};

}  // namespace cairn::sim
