// Configuration of one Raft node. One plain struct with documented defaults
// and a Validate(); the host builds it (from flags, in cmd/) and passes it to
// RawNode::Create. Nothing here is read from globals.
//
// Thread-safety: a value; RawNode copies it (except `random`, not owned).
#pragma once

#include <cstddef>
#include <cstdint>

#include "common/status.h"
#include "raft/message.h"
#include "raft/random.h"

namespace cairn::raft {

// How the leader confirms it is still the leader before answering a ReadIndex.
enum class ReadOnlyOption {
  // A heartbeat round acknowledged by a quorum (Raft thesis §6.4). Safe under
  // any clock behaviour.
  kSafe,
  // The leader's lease (thesis §6.4.1): no round trip while the lease holds.
  // A follower that answers a heartbeat ignores vote requests for
  // election_timeout_ticks (leader stickiness, check_quorum), and after a
  // restart for election_timeout_ticks too (it may have answered before the
  // crash). The leader's lease runs from when it sent the newest heartbeat
  // round a quorum answered, for election_timeout_ticks - 2 of its own ticks;
  // a leader transfer revokes it. Sound only if all nodes' Tick() rates differ
  // by less than that two-tick margin over an election timeout (about 20% at
  // the default 10 ticks) and a tick is never delayed by more than one tick
  // period (no long pauses): bounded clock drift. Without a valid lease the
  // read falls back to a heartbeat round. REQUIRES check_quorum.
  kLeaseBased,
};

// Rule breakers for tests only: each one disables a safety rule so a test can
// show the simulator notices. Never set outside tests.
struct TestingKnobs {
  // §5.4.2: let the leader commit entries of earlier terms by counting replicas.
  bool commit_entries_from_previous_terms = false;
  // §6.4: let a new leader answer ReadIndex before it committed an entry of
  // its own term (its commit index may be stale).
  bool serve_reads_before_term_commit = false;
  // §5.4.1: grant votes without the "candidate's log is up to date" check.
  bool grant_votes_without_log_check = false;
  // §6.4.1, etcd-raft's lease: trust the lease whenever check quorum has not
  // demoted the leader, instead of timing it from an acknowledged heartbeat.
  // (A leader cut off may stay leader for up to two election timeouts, while
  // followers may elect another after one.)
  bool lease_trusts_check_quorum = false;
};

struct Config {
  // This node's id. REQUIRES: nonzero.
  NodeId id = kNoNode;

  // Ticks without hearing from a leader before a follower campaigns; the actual
  // timeout is drawn from [election_timeout_ticks, 2 * election_timeout_ticks).
  // Also the check-quorum period of a leader. Default: 10.
  int election_timeout_ticks = 10;
  // Ticks between a leader's heartbeats. REQUIRES: < election_timeout_ticks.
  // Default: 1.
  int heartbeat_interval_ticks = 1;

  // The last index the host's state machine has applied (on restart); entries
  // after it are delivered again in Ready::committed_entries. Default: 0.
  uint64_t applied = 0;

  // Upper bound on entry bytes in one Append message (at least one entry is
  // always sent). Default: 1 MiB.
  uint64_t max_size_per_msg_bytes = 1 << 20;
  // Flow control per follower while replicating: at most this many Append
  // messages in flight... Default: 256.
  size_t max_inflight_msgs = 256;
  // ...and at most this many entry bytes in flight (0: unlimited). Default: 32 MiB.
  uint64_t max_inflight_bytes = 32 << 20;
  // The leader refuses proposals (kProposalDropped) while its uncommitted tail
  // exceeds this many bytes (0: unlimited). Default: 64 MiB.
  uint64_t max_uncommitted_entries_bytes = 64 << 20;
  // Upper bound on bytes of committed entries in one Ready (at least one entry
  // is always delivered). Default: 64 MiB.
  uint64_t max_committed_bytes_per_ready = 64 << 20;
  // ReadIndex requests waiting at the leader (or forwarded by a follower)
  // beyond this are refused with kProposalDropped. Default: 4096.
  size_t max_pending_read_requests = 4096;

  // Pre-vote (thesis §9.6): a node first asks whether it could win before
  // bumping its term, so a partitioned node does not disrupt the cluster when
  // it comes back. Default: true.
  bool pre_vote = true;
  // Check quorum (thesis §6.2): a leader that has not heard from a quorum for
  // an election timeout steps down, and followers that heard from a leader
  // within the timeout ignore vote requests. Default: true.
  bool check_quorum = true;
  // Default: kSafe.
  ReadOnlyOption read_only_option = ReadOnlyOption::kSafe;

  // The randomness for election timeouts. Not owned; must outlive the node.
  // Default: null, meaning a SplitMix64 seeded with `id`, owned by the node.
  RandomSource* random = nullptr;

  TestingKnobs testing;

  Status Validate() const;
};

}  // namespace cairn::raft
