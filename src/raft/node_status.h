// What a host can observe about a node: its role and leader (SoftState, which
// need not be persisted) and a full status snapshot for monitoring.
//
// Thread-safety: values; a copy taken on the node's thread may be handed to
// any other.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "raft/message.h"
#include "raft/progress.h"

namespace cairn::raft {

enum class Role { kFollower, kPreCandidate, kCandidate, kLeader };
const char* RoleName(Role role);

// Volatile state, reported in a Ready when it changes.
struct SoftState {
  NodeId leader = kNoNode;
  Role role = Role::kFollower;

  bool operator==(const SoftState&) const = default;
};

// The leader's view of one member (see progress.h for the states).
struct ProgressStatus {
  NodeId id = kNoNode;
  uint64_t match = 0;
  uint64_t next = 0;
  ProgressState state = ProgressState::kProbe;
  bool is_learner = false;
  bool recent_active = false;
  size_t inflight_msgs = 0;
  uint64_t inflight_bytes = 0;
  uint64_t pending_snapshot = 0;
};

struct NodeStatus {
  NodeId id = kNoNode;
  Role role = Role::kFollower;
  NodeId leader = kNoNode;
  uint64_t term = 0;
  NodeId vote = kNoNode;
  uint64_t commit = 0;
  uint64_t applied = 0;
  uint64_t last_index = 0;
  // Highest index durable and acknowledged by the host (AckPersisted).
  uint64_t persisted_index = 0;
  NodeId lead_transferee = kNoNode;
  // The membership in effect (the latest in the log, possibly uncommitted).
  ConfState conf_state;
  // One per member, on the leader only; sorted by id.
  std::vector<ProgressStatus> progress;

  std::string ToString() const;
};

}  // namespace cairn::raft
