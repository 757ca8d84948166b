// RaftHost: the one thread that drives a member's Raft core (etcd's raftNode
// loop). It owns the RawNode; everything else reaches it through a bounded
// inbox (proposals, peer messages) or reads the atomics it publishes.
//
// One turn of the loop:
//   1. take what the inbox holds (waiting at most until the next tick);
//   2. Tick() when a tick period (the heartbeat interval) has passed, on the
//      injected clock;
//   3. propose the waiting proposals as one batch (one Append per follower,
//      one log write);
//   4. for each Ready: send `messages` at once (the leader sends before its
//      own fsync, as etcd does: its copy counts only after AckPersisted);
//      append the entries and the HardState to the log and make them durable
//      with one fdatasync; then send `persisted_messages`; acknowledge; hand
//      `committed_entries` to the apply worker (which may block this thread
//      when the apply worker is far behind: the apply queue is bounded);
//   5. acknowledge what the apply worker has applied and drop log entries
//      far enough behind it.
// Step 4 keeps the core's rule "apply only what is durable here": committed
// entries leave for the apply worker only after the Ready that carries them
// (and every earlier one) is on disk.
//
// Proposals the core refuses because no leader is known yet (an election)
// wait here, bounded, and are tried again each turn; their waiters time out
// if no leader comes.
//
// Thread-safety: Propose, Step and the accessors are thread-safe; hooks run on
// the raft thread and must not block (except `apply`, see above).
#pragma once

#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <variant>
#include <vector>

#include "common/bounded_queue.h"
#include "common/clock.h"
#include "raft/config.h"
#include "raft/raw_node.h"
#include "server/log_store.h"

namespace cairn::server {

// Sends to peers. Nothing here may block (drop and report unreachable
// instead: Raft retransmits; a dropped forwarded proposal times out).
class Transport {
 public:
  virtual ~Transport() = default;
  virtual void Send(std::vector<raft::Message> messages) = 0;
  // Proposals for the leader `to`: (this member's waiter id, serialized
  // InternalRequest or conf change).
  virtual void Forward(raft::NodeId to, std::vector<std::pair<uint64_t, std::string>> proposals) = 0;
  // Tells follower `to` that the proposal it forwarded as `id` was refused.
  virtual void Refuse(raft::NodeId to, uint64_t id, const Status& status) = 0;
  // Lease keep-alives for the leader `to`.
  virtual void ForwardLeaseRenewals(raft::NodeId to, std::vector<int64_t> lease_ids) = 0;
};

struct RaftHostOptions {
  raft::Config raft;
  // One tick of the Raft core. Default: 100 ms (etcd's --heartbeat-interval).
  int64_t tick_interval_ms = 100;
  // Proposals and messages waiting for the raft thread; Propose fails beyond.
  size_t max_inbox = 16384;
  // Proposals appended as one batch.
  size_t max_batch_entries = 1024;
  // Proposals held while no leader is known; more fail at once.
  size_t max_parked_proposals = 16384;
  // Log entries kept behind the applied index for slow followers.
  uint64_t log_retention_entries = 10000;
  // A linearizable read not confirmed after this long is asked again...
  int64_t read_retry_ms = 500;
  // ...and fails ("request timed out") after this long.
  int64_t request_timeout_ms = 7000;
  // false: Start() starts no thread; the owner (the simulator) calls Turn()
  // whenever it wants the host to act, with the injected clock at the time
  // it chooses. Everything else is the same code.
  bool own_thread = true;
};

struct RaftHostHooks {
  // Committed entries, in order, durable here. May block (bounded queue).
  // Returns false when the apply worker is stopping.
  std::function<bool(std::vector<raft::Entry>)> apply;
  // The index the apply worker has applied.
  std::function<uint64_t()> applied_index;
  // Makes everything applied durable (before log entries are dropped).
  std::function<Status()> sync_applied;
  // A proposal was placed at (term, index) / refused before reaching the log.
  std::function<void(uint64_t id, uint64_t term, uint64_t index)> accepted;
  std::function<void(uint64_t id, const Status& status)> refused;
  std::function<void(uint64_t id)> forwarded;
  // Each tick, with the clock's time.
  std::function<void(int64_t now_ms)> on_tick;
  // The log's write+fdatasync of one Ready took `seconds`.
  std::function<void(double seconds)> on_log_sync;
  // The known leader or the term changed.
  std::function<void(raft::NodeId leader, uint64_t term)> on_leader_change;
  // The log could not take entries (disk full); the host retries.
  std::function<void(const Status&)> on_log_full;
  // A snapshot from the leader to install (Ready::snapshot): replace the
  // state machine with the image `snapshot.data` names, at its index, and
  // start the log over after it. The host waits for it. Must succeed (a
  // failure stops the member; recovery finishes the install).
  std::function<Status(const raft::Snapshot& snapshot)> install_snapshot;
  // A linearizable read round was confirmed at `index`: run each of `reads`
  // once this member has applied `index`.
  std::function<void(uint64_t index, std::vector<std::function<void(const Status&)>> reads)> on_read_index;
  // For the simulator's checker (optional): a Ready's snapshot, entries and
  // HardState are in the log (and synced if rd.must_sync); called before its
  // persisted_messages go out and before its committed entries are applied.
  std::function<void(const raft::Ready& rd)> on_persisted;
};

class RaftHost {
 public:
  struct Proposal {
    uint64_t id = 0;   // the waiter's (the origin's, when forwarded)
    std::string data;  // a serialized InternalRequest
    // Sent by follower `origin`: proposed here only if this member leads
    // (never forwarded again); a refusal goes back to the origin.
    bool forwarded = false;
    raft::NodeId origin = 0;
  };
  using ReadCallback = std::function<void(const Status&)>;
  // A membership change travels as a proposal whose data is this marker
  // byte and an EncodeConfChange() blob (a serialized InternalRequest never
  // starts with 0xff: that would be field 31 of wire type 7), so a follower
  // forwards it like any other proposal and the leader tells them apart.
  static constexpr char kConfChangeMarker = '\xff';
  static bool IsConfChangeProposal(const std::string& data) {
    return !data.empty() && data[0] == kConfChangeMarker;
  }

  // `store`, `transport` and `clock` are not owned and must outlive the host.
  RaftHost(RaftHostOptions options, LogStore* store, Transport* transport, Clock* clock,
           RaftHostHooks hooks);
  ~RaftHost();

  // Creates the core from the log and starts the raft thread. A member that
  // is the only voter campaigns at once (no election timeout to wait for).
  Status Start();
  // Stops the thread; proposals not yet in the log are refused with
  // "server stopped".
  void Stop();
  // One turn of the loop (see the top of this file) over what the inbox
  // holds now, without waiting. Only with own_thread = false, from one thread.
  void Turn();

  // Queues a proposal; false (nothing queued) if the inbox is full or the
  // host is stopping.
  bool Propose(Proposal proposal);
  // A message from a peer; dropped if the inbox is full (Raft retransmits).
  void Step(raft::Message message);
  // The transport could not deliver to `id`.
  void ReportUnreachable(raft::NodeId id);
  // The outcome of sending a snapshot to `id` (the leader waits for it
  // before it sends another).
  void ReportSnapshot(raft::NodeId id, bool delivered);
  // A linearizable read: `done` runs with OK once the leader confirmed its
  // commit index and this member applied it (through on_read_index), or with
  // an error (timed out, stopping, inbox full). Reads waiting in the same turn
  // share one ReadIndex round.
  void ReadIndex(ReadCallback done);
  // Maintenance.MoveLeader: this member (the leader) hands leadership to
  // `to`; `done` runs with OK once `to` leads, "not leader" if this member
  // does not lead, or etcd's leader-transfer timeout.
  void TransferLeader(raft::NodeId to, ReadCallback done);

  uint64_t term() const { return term_.load(); }
  raft::NodeId leader() const { return leader_.load(); }
  bool is_leader() const { return is_leader_.load(); }
  uint64_t commit_index() const { return commit_index_.load(); }
  // ReadIndex rounds that timed out (etcd_server_slow_read_indexes_total)
  // and read requests refused by the core (read_indexes_failed_total).
  uint64_t read_index_timeouts() const { return read_index_timeouts_.load(std::memory_order_relaxed); }
  uint64_t read_index_failures() const { return read_index_failures_.load(std::memory_order_relaxed); }
  // Whether this member is the cluster's only voter (the membership at the
  // end of its log).
  bool sole_voter() const { return sole_voter_.load(); }

 private:
  struct Unreachable {
    raft::NodeId id;
  };
  struct ReadRequest {
    ReadCallback done;
  };
  struct SnapshotReport {
    raft::NodeId id;
    bool delivered;
  };
  struct Transfer {
    raft::NodeId to;
    ReadCallback done;
    int64_t deadline_ms = 0;
  };
  using Input = std::variant<Proposal, raft::Message, Unreachable, ReadRequest, SnapshotReport, Transfer>;
  void CheckTransfers(int64_t now_ms);
  std::vector<Transfer> transfers_;  // raft thread only
  struct ReadRound {
    std::vector<ReadCallback> reads;
    int64_t first_asked_ms = 0;  // when the oldest read arrived
    int64_t asked_ms = 0;        // when this round was requested
  };
  void Loop();
  // Steps 1-5 of a turn over `inputs` (taken from the inbox).
  void RunTurn(std::vector<Input>& inputs);
  // At stop: every waiting proposal, read and transfer gets "server stopped".
  void FailPending();
  void Take(Input& in);
  void RequestReads(int64_t now_ms);
  void CheckReads(int64_t now_ms);
  void ServeReadStates(std::vector<raft::ReadState>& states);
  void ProposeParked();
  void ProcessReadys();
  void Persist(const raft::Ready& rd);
  void AckAppliedAndCompact();
  void Park(Proposal p);
  // Answers a refused proposal: its waiter here, or the follower it came from.
  void Refuse(const Proposal& p, const Status& status);

  RaftHostOptions options_;
  LogStore* const store_;
  Transport* const transport_;
  Clock* const clock_;
  RaftHostHooks hooks_;
  std::unique_ptr<raft::RawNode> node_;  // raft thread only after Start
  BoundedQueue<Input> inbox_;
  std::deque<Proposal> parked_;          // raft thread only
  std::vector<ReadCallback> unasked_reads_;  // raft thread only: the next round
  int64_t unasked_since_ms_ = 0;
  std::map<std::string, ReadRound> read_rounds_;  // raft thread only: by context
  uint64_t next_read_context_ = 0;
  std::string read_context_prefix_;  // unique per start
  uint64_t acked_applied_ = 0;           // raft thread only
  int64_t next_tick_ms_ = 0;             // raft thread only
  std::atomic<uint64_t> term_{0};
  std::atomic<raft::NodeId> leader_{raft::kNoNode};
  std::atomic<bool> is_leader_{false};
  std::atomic<uint64_t> commit_index_{0};
  std::atomic<bool> sole_voter_{false};
  std::atomic<uint64_t> read_index_timeouts_{0};
  std::atomic<uint64_t> read_index_failures_{0};
  std::atomic<bool> stopping_{false};
  std::thread thread_;
};

}  // namespace cairn::server
