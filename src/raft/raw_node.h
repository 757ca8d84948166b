// RawNode: the Raft core as a host drives it (etcd-raft's RawNode, raft-rs's
// RawNode with asynchronous Ready).
//
// The core does no I/O, owns no thread and reads no clock: the host feeds it
// messages (Step), time (Tick) and requests (Propose, ReadIndex, ...), and
// collects its output as a Ready. docs/raft.md walks through a host loop.
//
// Thread-safety: none. One thread drives a RawNode; every call, including the
// const ones, must come from it (or be externally serialized).
//
// Ownership: the Storage passed to Create is not owned and must outlive the
// node; so must Config::random if set.
//
// THE READY CONTRACT. A Ready is a numbered batch of work:
//
//   1. Persist, in this order and atomically with respect to a crash (one
//      fsync is enough): `snapshot` (if any), `entries` (replacing any stored
//      entries from entries.front().index on), `hard_state` (if any). The
//      writes of successive Readys must become durable in Ready order.
//   2. `messages` may be sent right away, before anything is durable (a
//      leader's Appends: its own copy counts towards the quorum only after
//      step 4). `persisted_messages` may be sent only after this Ready and
//      every earlier one are durable (votes, append acknowledgments, and
//      everything while the node's current term and vote are not durable).
//   3. Once this Ready is durable: apply `snapshot` (if any) to the state
//      machine, then `committed_entries` in order; answer `read_states` once
//      the applied index reaches their index.
//   4. Acknowledge: AckPersisted(number) once this Ready is durable (and its
//      data visible through the Storage), AckApplied(index) once applied.
//      Advance(ready) does both for a host that does everything in line.
//
// A host may take the next Ready before acknowledging the previous one
// (pipelining fsyncs with the network); it must still keep step 1's order.
//
// PROPOSALS. Only the leader accepts proposals; a follower or candidate
// returns kNotLeader (with the leader's id in the message and in GetStatus()) or
// kNoLeader, and a leader returns kLeaderTransferring during a transfer. The
// core never forwards a proposal: the host forwards or redirects the client.
// An accepted proposal returns its position (term, first/last index). It is
// committed if an entry with that index *and that term* shows up in
// committed_entries; if the index shows up with another term, the proposal
// was lost in a leader change and the client must retry. Proposals are
// batched: all proposals between two Readys go out as one Append per follower.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/status.h"
#include "raft/config.h"
#include "raft/errors.h"
#include "raft/message.h"
#include "raft/node_status.h"
#include "raft/read_only.h"
#include "raft/storage.h"

namespace cairn::raft {

class Raft;

struct Ready {
  // 1, 2, 3, ... per RawNode; the handle for AckPersisted.
  uint64_t number = 0;
  // Set when the role or known leader changed since the previous Ready.
  std::optional<SoftState> soft_state;
  // Set when term, vote or commit changed; persist before persisted_messages.
  std::optional<HardState> hard_state;
  // A snapshot to persist and then apply (a follower installing one).
  std::optional<Snapshot> snapshot;
  // Log entries to persist.
  std::vector<Entry> entries;
  // Send now.
  std::vector<Message> messages;
  // Send after this Ready (and all earlier ones) are durable.
  std::vector<Message> persisted_messages;
  // Apply after this Ready is durable, after `snapshot`.
  std::vector<Entry> committed_entries;
  // Reads confirmed by the leader: serve each once applied >= index.
  std::vector<ReadState> read_states;
  // Whether the writes need an fsync before persisted_messages are sent and
  // AckPersisted is called (false if only the commit index changed).
  bool must_sync = false;
};

// Where an accepted proposal landed.
struct ProposalPosition {
  uint64_t term = 0;
  uint64_t first_index = 0;
  uint64_t last_index = 0;
};

enum class SnapshotStatus { kFinished, kFailed };

class RawNode {
 public:
  // Creates a node from the state in `storage` (a restart, or a fresh node:
  // see MemoryStorage::Bootstrap for founding members; a node joining later
  // starts with empty storage and learns the membership from the leader).
  static Result<std::unique_ptr<RawNode>> Create(const Config& config, Storage* storage);
  ~RawNode();
  RawNode(const RawNode&) = delete;
  RawNode& operator=(const RawNode&) = delete;

  // One unit of logical time. Election timeouts and heartbeats are counted
  // in ticks (Config::*_ticks); the host calls this at a steady rate.
  void Tick();
  // A message from a peer. kInvalidMessage if it is not addressed to this
  // node or malformed; stale messages are dropped silently (ok).
  Status Step(Message message);

  // Appends `data` as one entry. Leader only; see PROPOSALS above.
  Result<ProposalPosition> Propose(std::string data);
  // Appends several entries at once (consecutive indexes, one term).
  Result<ProposalPosition> ProposeBatch(std::vector<std::string> data);
  // Proposes a membership change (see membership.h for the rules): one change
  // at a time (kConfChangePending while the previous one is uncommitted or the
  // leader has not committed an entry of its term), a learner is promoted only
  // once its log reaches the commit index (kLearnerNotReady), and the change
  // must make sense (kInvalidConfChange). The change takes effect when its
  // entry is appended, on every node; removing the leader itself is allowed:
  // it keeps leading until the change commits, then hands over and steps down.
  Result<ProposalPosition> ProposeConfChange(const ConfChange& change);

  // Requests a linearizable read: once the leader has confirmed it is still
  // the leader, a ReadState{index, request_context} appears in a Ready (on
  // this node, also when it is a follower: the request is forwarded). The host
  // serves the read from its state machine once applied >= index. Requests
  // are never answered with an error later: if leadership changes or a
  // message is lost the request is silently dropped, and the host retries
  // after a timeout. kNoLeader if no leader is known; kProposalDropped if
  // Config::max_pending_read_requests are waiting.
  Status ReadIndex(std::string request_context);

  // Starts an election now (pre-vote first if enabled). No-op on a leader or a
  // node that is not a voter.
  void Campaign();
  // Leader only: hands leadership to `transferee` (a voter), catching its log
  // up first. Proposals are refused while the transfer runs; it is abandoned
  // after an election timeout.
  Status TransferLeader(NodeId transferee);
  // Leader only: gives up leadership, handing it to the most up-to-date
  // active voter if there is one, else becoming a follower in the same term.
  Status StepDown();

  // The transport could not deliver to `id`.
  void ReportUnreachable(NodeId id);
  // The outcome of sending a snapshot message to `id`.
  void ReportSnapshot(NodeId id, SnapshotStatus status);

  bool HasReady() const;
  // The next batch of work; see THE READY CONTRACT. Returns an empty Ready if
  // HasReady() is false.
  Ready GetReady();
  // Everything in Readys up to and including `ready_number` is durable and
  // visible through the Storage. REQUIRES: ready_number was returned.
  void AckPersisted(uint64_t ready_number);
  // The state machine has applied every entry up to `index`.
  // REQUIRES: index was handed out (committed_entries or a snapshot).
  void AckApplied(uint64_t index);
  // AckPersisted(ready.number) and AckApplied of everything in `ready`.
  void Advance(const Ready& ready);

  NodeStatus GetStatus() const;
  // Term, vote and commit as they would be persisted.
  HardState hard_state() const;
  SoftState soft_state() const;
  // The membership in effect at `index`, for the ConfState of a snapshot the
  // host takes at its applied index. kCompacted if older than the applied
  // index at the last AckApplied, or than a snapshot the node accepted from
  // the leader (the host is about to install that one; skip its own).
  Result<ConfState> ConfStateAt(uint64_t index) const;

 private:
  explicit RawNode(std::unique_ptr<Raft> raft);

  struct PendingWrite {
    uint64_t number;
    uint64_t snapshot_index;  // 0: none
    uint64_t last_index;      // 0: no entries
    uint64_t last_term;
    uint64_t term;            // the hard state's term and vote in this Ready
    NodeId vote;
  };

  std::unique_ptr<Raft> raft_;
  uint64_t next_ready_number_ = 1;
  SoftState prev_soft_state_;
  HardState prev_hard_state_;
  // Term and vote known durable (acknowledged). Until the current ones are,
  // every message waits for persistence: a single voter elects itself without
  // sending anything, and its Appends must not outrun its vote for itself.
  uint64_t durable_term_ = 0;
  NodeId durable_vote_ = kNoNode;
  std::vector<PendingWrite> pending_writes_;  // handed out, not yet acknowledged
};

}  // namespace cairn::raft
