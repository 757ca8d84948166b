// The Raft state machine of one node: elections (§5.2, pre-vote, check
// quorum), replication (§5.3), the commit rule (§5.4), ReadIndex, leader
// transfer and membership changes. Pure: input through Step/Tick/the
// proposal calls, output collected by RawNode into a Ready.
//
// Internal to the Raft core; hosts use RawNode (raw_node.h). Thread-safety:
// none. The split over files: raft.cc (state transitions, Step dispatch,
// follower and candidate), raft_leader.cc (replication, commit, reads,
// transfer, membership).
#pragma once

#include <algorithm>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "common/status.h"
#include "raft/config.h"
#include "raft/membership.h"
#include "raft/message.h"
#include "raft/node_status.h"
#include "raft/progress.h"
#include "raft/raft_log.h"
#include "raft/random.h"
#include "raft/read_only.h"
#include "raft/storage.h"

namespace cairn::raft {

class Raft {
 public:
  Raft(const Config& config, Storage* storage);
  Raft(const Raft&) = delete;
  Raft& operator=(const Raft&) = delete;

  // Loads the durable state from storage. Called once, before anything else.
  Status Init();

  // --- Inputs. ---
  Status Step(Message m);
  void Tick();
  // Starts an election now (pre-vote first if enabled).
  void Campaign();
  // Appends `data` as normal entries (leader only). Returns the index of the
  // first one; they are consecutive in the current term.
  Result<uint64_t> Propose(std::vector<std::string> data);
  Result<uint64_t> ProposeConfChange(const ConfChange& change);
  Status ReadIndex(std::string request_context);
  Status TransferLeader(NodeId transferee);
  Status StepDown();
  void ReportUnreachable(NodeId id);
  void ReportSnapshot(NodeId id, bool failed);
  // The host acknowledged writes; the log's stable marks are already moved.
  void OnPersisted();
  void OnApplied(uint64_t index);
  // Committed entries handed to the host no longer count as uncommitted.
  void ReduceUncommittedSize(const std::vector<Entry>& committed);

  // --- Output, taken by RawNode. ---
  // Work deferred to the next Ready: the Appends for new proposals and commit
  // advances (batching), and the heartbeat round for new reads.
  bool HasPendingFlush() const;
  void FlushPending();
  bool HasMessages() const { return !msgs_.empty() || !msgs_after_persist_.empty(); }
  std::vector<Message> TakeMessages();
  std::vector<Message> TakeMessagesAfterPersist();
  bool HasReadStates() const { return !read_states_.empty(); }
  std::vector<ReadState> TakeReadStates();

  RaftLog& log() { return log_; }
  const RaftLog& log() const { return log_; }
  NodeId id() const { return id_; }
  uint64_t term() const { return term_; }
  Role role() const { return role_; }
  NodeId leader() const { return leader_; }
  HardState hard_state() const { return HardState{term_, vote_, log_.committed()}; }
  SoftState soft_state() const { return SoftState{leader_, role_}; }
  const ConfState& conf_state() const { return membership_.Current(); }
  Result<ConfState> ConfStateAt(uint64_t index) const { return membership_.At(index); }
  NodeStatus GetStatus() const;

 private:
  enum class CampaignType { kPreElection, kElection, kTransfer };
  enum class VoteResult { kPending, kLost, kWon };

  // raft.cc: transitions and the shared part of Step.
  void Reset(uint64_t term);
  void BecomeFollower(uint64_t term, NodeId leader);
  void BecomePreCandidate();
  void BecomeCandidate();
  void BecomeLeader();
  void StartCampaign(CampaignType type);
  VoteResult Poll(NodeId id, bool granted);
  void HandleVoteRequest(const Message& m);
  Status StepFollower(Message& m);
  Status StepCandidate(Message& m);
  void HandleAppend(Message& m);
  void HandleHeartbeat(const Message& m);
  void HandleSnapshot(const Message& m);
  bool Restore(const Snapshot& snapshot);
  void TickElection();
  void TickHeartbeat();
  void ResetRandomizedElectionTimeout();
  // A voter in the latest membership.
  bool Promotable() const { return membership_.Current().IsVoter(id_); }
  // May start elections: a voter, or a voter of the membership before an
  // uncommitted change that removed or demoted it (thesis §4.2.2: it may still
  // be needed to commit that change).
  bool CanCampaign() const;
  bool PastElectionTimeout() const { return election_elapsed_ >= randomized_election_timeout_; }
  void Send(Message m);
  // Appends to the log and keeps the membership in step with it.
  void AppendToLog(std::vector<Entry> entries);
  // Rebuilds the progress map for the current membership.
  void SyncProgress(bool reset_all);

  // raft_leader.cc.
  Status StepLeader(Message& m);
  void HandleAppendResponse(const Message& m, Progress& pr);
  void HandleHeartbeatResponse(const Message& m, Progress& pr);
  void HandleReadRequest(ReadRequest request);
  void RespondToRead(ReadRequest request, uint64_t index);
  void ReleaseReads();
  bool MaybeSendAppend(NodeId to, bool send_if_empty);
  bool MaybeSendSnapshot(NodeId to, Progress& pr);
  void SendHeartbeat(NodeId to, uint64_t read_round);
  // A heartbeat round to every member (a fresh ReadOnly round).
  void BroadcastHeartbeat();
  // Lease reads: whether a quorum acknowledged a round sent less than
  // LeaseTicks() ago (see ReadOnlyOption and read_only.h).
  bool LeaseValid() const;
  int LeaseTicks() const { return std::max(1, config_.election_timeout_ticks - 2); }
  void SendTimeoutNow(NodeId to);
  void AbortLeaderTransfer() { lead_transferee_ = kNoNode; }
  bool MaybeCommit();
  void OnCommitAdvanced();
  bool QuorumActive() const;
  bool CommittedEntryInCurrentTerm() const;
  Status CheckCanPropose() const;

  // Immutable configuration.
  const Config config_;
  const NodeId id_;
  Storage* const storage_;
  std::unique_ptr<RandomSource> owned_random_;
  RandomSource* random_;

  // Persistent state (with the log).
  uint64_t term_ = 0;
  NodeId vote_ = kNoNode;
  RaftLog log_;

  // Volatile state.
  Role role_ = Role::kFollower;
  NodeId leader_ = kNoNode;
  MembershipLog membership_;
  std::map<NodeId, Progress> progress_;  // leader: every member; ordered for determinism
  std::map<NodeId, bool> votes_;         // candidate: answers received
  uint64_t ticks_ = 0;  // since this node started; the leader's lease clock
  int election_elapsed_ = 0;
  int heartbeat_elapsed_ = 0;
  int randomized_election_timeout_ = 0;
  NodeId lead_transferee_ = kNoNode;
  // A TimeoutNow makes its target campaign past the followers' leases, so a
  // leader that sent one holds no lease for the rest of its term.
  bool lease_revoked_ = false;
  uint64_t uncommitted_bytes_ = 0;
  // Leader: new entries or a new commit index to send at the next flush.
  bool broadcast_pending_ = false;
  ReadOnly read_only_;
  // Leader: reads that arrived before an entry of this term was committed.
  std::vector<ReadRequest> reads_waiting_for_term_commit_;

  std::vector<Message> msgs_;
  std::vector<Message> msgs_after_persist_;
  std::vector<ReadState> read_states_;
};

}  // namespace cairn::raft
