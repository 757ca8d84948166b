// The Raft core's expected failures, as cairn::Status values.
//
// Each error has a kind (ErrorKindOf) so a host can branch on it without
// matching strings, and a gRPC-style code so src/api/ can map it to a wire
// error. The message starts with a fixed prefix per kind ("raft: not leader")
// followed by details.
//
// Thread-safety: pure functions.
#pragma once

#include <cstdint>
#include <string>

#include "common/status.h"
#include "raft/message.h"

namespace cairn::raft {

enum class ErrorKind {
  kNone = 0,               // an ok Status
  kNotLeader,              // proposal/read/transfer on a non-leader; leader hint in message
  kNoLeader,               // no known leader (election in progress); retry later
  kProposalDropped,        // the leader refused: e.g. uncommitted-size cap reached
  kLeaderTransferring,     // leader transfer in progress; proposals refused until it ends
  kConfChangePending,      // a previous membership change is not committed yet
  kInvalidConfChange,      // the change is not allowed from the current membership
  kLearnerNotReady,        // promotion of a learner that has not caught up
  kCompacted,              // storage: the index was compacted away
  kUnavailable,            // storage: entries/snapshot temporarily unavailable
  kSnapshotOutOfDate,      // storage: snapshot older than the existing one
  kInvalidMessage,         // Step() got a message it cannot accept
  kInvalidConfig,          // Config::Validate()
  kInvalidArgument,        // e.g. a leader transfer to a node that is not a voter
  kOther,
};

// The kind of a Status produced by this module; kOther for foreign ones.
ErrorKind ErrorKindOf(const Status& status);
inline bool IsError(const Status& status, ErrorKind kind) { return ErrorKindOf(status) == kind; }

namespace errors {
Status NotLeader(NodeId leader_hint);
Status NoLeader();
Status ProposalDropped(const std::string& why);
Status LeaderTransferring(NodeId transferee);
Status ConfChangePending(const std::string& why);
Status InvalidConfChange(const std::string& why);
Status LearnerNotReady(NodeId id, uint64_t match, uint64_t leader_match);
Status Compacted();
Status Unavailable();
Status SnapshotOutOfDate();
Status InvalidMessage(const std::string& why);
Status InvalidConfig(const std::string& why);
Status InvalidArgument(const std::string& why);
}  // namespace errors

}  // namespace cairn::raft
