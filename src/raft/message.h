// The values the Raft core consumes and produces: log entries, persistent
// state, snapshots and the messages peers exchange.
//
// Plain structs with no behaviour beyond small helpers, so a host can map them
// to any wire format (a later issue maps them to protobuf). Nouns follow the
// Raft paper and etcd-raft: Term, Index, HardState, ConfState.
//
// Thread-safety: values; no shared state.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/status.h"

namespace cairn::raft {

// Node ids are nonzero; kNoNode means "none" (no vote, no known leader).
using NodeId = uint64_t;
inline constexpr NodeId kNoNode = 0;

enum class EntryType : uint8_t {
  kNormal = 0,      // application data (empty data: a leader's no-op)
  kConfChange = 1,  // data is an EncodeConfChange() blob
};

struct Entry {
  uint64_t term = 0;
  uint64_t index = 0;
  EntryType type = EntryType::kNormal;
  std::string data;

  bool operator==(const Entry&) const = default;
};

// Bytes an entry counts for in flow control and size limits.
inline uint64_t EntryPayloadSize(const Entry& entry) { return entry.data.size(); }

// State that must be durable before certain messages are sent (see Ready).
struct HardState {
  uint64_t term = 0;
  NodeId vote = kNoNode;
  uint64_t commit = 0;

  bool operator==(const HardState&) const = default;
  bool empty() const { return term == 0 && vote == kNoNode && commit == 0; }
};

// A cluster membership: who votes and who only replicates. Both sorted,
// disjoint.
struct ConfState {
  std::vector<NodeId> voters;
  std::vector<NodeId> learners;

  bool operator==(const ConfState&) const = default;
  bool IsVoter(NodeId id) const;
  bool IsLearner(NodeId id) const;
  bool Contains(NodeId id) const { return IsVoter(id) || IsLearner(id); }
  std::string ToString() const;
};

// One membership change. Changes are applied one at a time (see
// membership.h): each changes the voter set by at most one node.
enum class ConfChangeType : uint8_t {
  kAddVoter = 0,    // add a voter, or promote a learner
  kAddLearner = 1,  // add a learner, or demote a voter
  kRemoveNode = 2,  // remove a voter or a learner
};

struct ConfChange {
  ConfChangeType type = ConfChangeType::kAddVoter;
  NodeId node_id = kNoNode;
  std::string context;  // opaque to Raft; e.g. the member's URLs

  bool operator==(const ConfChange&) const = default;
};

// ConfChange <-> Entry::data. Decoding fails on malformed input.
std::string EncodeConfChange(const ConfChange& change);
Result<ConfChange> DecodeConfChange(const std::string& data);

struct SnapshotMetadata {
  uint64_t index = 0;
  uint64_t term = 0;
  ConfState conf_state;  // the membership in effect at `index`

  bool operator==(const SnapshotMetadata&) const = default;
};

struct Snapshot {
  SnapshotMetadata metadata;
  std::string data;  // the host's state machine image; opaque to Raft

  bool empty() const { return metadata.index == 0; }
  bool operator==(const Snapshot&) const = default;
};

enum class MessageType : uint8_t {
  kAppend = 0,             // leader -> follower: entries after (index, log_term)
  kAppendResponse = 1,     // follower -> leader: accepted up to index, or reject
  kVote = 2,               // candidate -> voter
  kVoteResponse = 3,
  kPreVote = 4,            // pre-candidate -> voter; changes no state
  kPreVoteResponse = 5,
  kHeartbeat = 6,          // leader -> follower: commit, read round
  kHeartbeatResponse = 7,
  kSnapshot = 8,           // leader -> follower: install `snapshot`
  kTimeoutNow = 9,         // leader -> transferee: campaign now
  kReadIndex = 10,         // follower -> leader: a read request (context)
  kReadIndexResponse = 11, // leader -> follower: read at index (context)
};

const char* MessageTypeName(MessageType type);

// One message between two nodes. Which fields matter depends on `type`:
//   kAppend:            index/log_term of the entry before `entries`, commit
//   kAppendResponse:    index (accepted up to, or the rejected index); on reject
//                       reject_hint/log_term point at the probable conflict
//   kVote, kPreVote:    index/log_term of the candidate's last entry,
//                       leader_transfer when started by a TimeoutNow
//   kHeartbeat(+Resp):  commit, read_round (ReadIndex batching, 0 = none)
//   kSnapshot:          snapshot
//   kReadIndex(+Resp):  context (the host's request id), index (response)
struct Message {
  MessageType type = MessageType::kAppend;
  NodeId from = kNoNode;
  NodeId to = kNoNode;
  uint64_t term = 0;
  uint64_t log_term = 0;
  uint64_t index = 0;
  uint64_t commit = 0;
  std::vector<Entry> entries;
  bool reject = false;
  uint64_t reject_hint = 0;
  uint64_t read_round = 0;
  bool leader_transfer = false;
  std::string context;
  // Shared so that copying a message (duplication in a network, fan-out)
  // does not copy the image.
  std::shared_ptr<const Snapshot> snapshot;

  std::string ToString() const;
};

}  // namespace cairn::raft
