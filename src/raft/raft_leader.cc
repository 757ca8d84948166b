// The leader's half of the Raft state machine: replication with flow control,
// the commit rule, ReadIndex, leader transfer and membership changes.
#include <algorithm>

#include "common/check.h"
#include "raft/errors.h"
#include "raft/raft.h"

namespace cairn::raft {
namespace {

// The largest value that a majority of `voters` has reached: sort descending,
// take the (n/2 + 1)-th. 0 for an empty voter set.
template <typename ValueOf>
uint64_t MajorityValue(const std::vector<NodeId>& voters, ValueOf value_of) {
  const size_t n = voters.size();
  if (n == 0) return 0;
  uint64_t small[8];
  std::vector<uint64_t> large;
  uint64_t* values = small;
  if (n > 8) {
    large.resize(n);
    values = large.data();
  }
  for (size_t i = 0; i < n; ++i) values[i] = value_of(voters[i]);
  std::sort(values, values + n, std::greater<uint64_t>());
  return values[n / 2];
}

uint64_t PayloadBytes(const std::vector<Entry>& entries) {
  uint64_t bytes = 0;
  for (const Entry& e : entries) bytes += EntryPayloadSize(e);
  return bytes;
}

}  // namespace

// ---------------------------------------------------------------- Step

Status Raft::StepLeader(Message& m) {
  if (m.type == MessageType::kReadIndex) {
    if (read_only_.size() + reads_waiting_for_term_commit_.size() <
        config_.max_pending_read_requests) {
      HandleReadRequest(ReadRequest{m.from, std::move(m.context)});
    }
    return Status::Ok();
  }
  auto it = progress_.find(m.from);
  if (it == progress_.end()) return Status::Ok();  // not a member (any more)
  switch (m.type) {
    case MessageType::kAppendResponse:
      HandleAppendResponse(m, it->second);
      break;
    case MessageType::kHeartbeatResponse:
      HandleHeartbeatResponse(m, it->second);
      break;
    default:
      break;
  }
  return Status::Ok();
}

void Raft::HandleAppendResponse(const Message& m, Progress& pr) {
  pr.recent_active = true;
  if (m.reject) {
    // Fast back-off: the follower told us the last index where its log could
    // match (and that entry's term); skip our entries of later terms too.
    uint64_t next_probe = m.reject_hint;
    if (m.log_term > 0) next_probe = log_.FindConflictByTerm(m.reject_hint, m.log_term).first;
    if (pr.MaybeDecrTo(m.index, next_probe)) {
      if (pr.state == ProgressState::kReplicate) pr.BecomeProbe();
      MaybeSendAppend(m.from, /*send_if_empty=*/true);
    }
    return;
  }
  const bool was_paused = pr.IsPaused();
  if (!pr.MaybeUpdate(m.index)) return;  // stale
  switch (pr.state) {
    case ProgressState::kProbe:
      pr.BecomeReplicate();
      break;
    case ProgressState::kSnapshot:
      if (pr.match >= pr.pending_snapshot) pr.BecomeReplicate();
      break;
    case ProgressState::kReplicate:
      pr.inflights.FreeLE(m.index);
      break;
  }
  if (!MaybeCommit() && was_paused) {
    // It may lack the latest commit index; the next flush would not tell it
    // if it has no new entries.
    MaybeSendAppend(m.from, /*send_if_empty=*/true);
  }
  if (role_ != Role::kLeader) return;  // stepped down (removed itself)
  // Pipelining: use the room the acknowledgment freed.
  while (MaybeSendAppend(m.from, /*send_if_empty=*/false)) {
  }
  if (m.from == lead_transferee_ && pr.match == log_.LastIndex()) SendTimeoutNow(m.from);
}

void Raft::HandleHeartbeatResponse(const Message& m, Progress& pr) {
  pr.recent_active = true;
  pr.probe_sent = false;
  // If every Append in the window was lost, let one more through to find out.
  if (pr.state == ProgressState::kReplicate && pr.inflights.Full()) pr.inflights.FreeFirstOne();
  if (pr.match < log_.LastIndex()) MaybeSendAppend(m.from, /*send_if_empty=*/true);
  if (m.read_round != 0) {
    read_only_.Ack(m.from, m.read_round);
    ReleaseReads();
  }
}

// ---------------------------------------------------------------- replication

bool Raft::MaybeSendAppend(NodeId to, bool send_if_empty) {
  auto it = progress_.find(to);
  if (it == progress_.end() || to == id_) return false;
  Progress& pr = it->second;
  if (pr.IsPaused()) return false;
  const uint64_t prev_index = pr.next - 1;
  auto prev_term = log_.Term(prev_index);
  if (!prev_term.ok()) return MaybeSendSnapshot(to, pr);
  auto entries = log_.EntriesFrom(pr.next, config_.max_size_per_msg_bytes);
  if (!entries.ok()) return MaybeSendSnapshot(to, pr);
  if (entries->empty() && !send_if_empty) return false;
  Message m;
  m.type = MessageType::kAppend;
  m.to = to;
  m.index = prev_index;
  m.log_term = *prev_term;
  m.commit = log_.committed();
  if (!entries->empty()) {
    pr.SentAppend(entries->size(), entries->back().index, PayloadBytes(*entries));
  } else {
    pr.SentAppend(0, prev_index, 0);
  }
  m.entries = std::move(entries).value();
  Send(std::move(m));
  return true;
}

bool Raft::MaybeSendSnapshot(NodeId to, Progress& pr) {
  // Only to a follower that answers: a snapshot is expensive to send.
  if (!pr.recent_active) return false;
  auto snapshot = log_.GetSnapshot();
  if (!snapshot.ok()) return false;  // being built; retried on the next heartbeat answer
  CHECK(!snapshot->empty()) << "need a snapshot for " << to << " (next " << pr.next
                            << ") but storage has none";
  pr.BecomeSnapshot(snapshot->metadata.index);
  Message m;
  m.type = MessageType::kSnapshot;
  m.to = to;
  m.snapshot = std::make_shared<const Snapshot>(std::move(snapshot).value());
  Send(std::move(m));
  return true;
}

void Raft::SendHeartbeat(NodeId to, uint64_t read_round) {
  const Progress& pr = progress_.at(to);
  Message m;
  m.type = MessageType::kHeartbeat;
  m.to = to;
  // The follower's log may not reach our commit index yet; it must not
  // commit what it does not have.
  m.commit = std::min(pr.match, log_.committed());
  m.read_round = read_round;
  Send(std::move(m));
}

void Raft::BroadcastHeartbeat() {
  // Reads that arrived since the last flush ride along.
  const uint64_t round = read_only_.StartRound(log_.committed(), ticks_);
  for (const auto& [id, pr] : progress_) {
    if (id != id_) SendHeartbeat(id, round);
  }
  ReleaseReads();  // a single voter confirms itself
}

bool Raft::LeaseValid() const {
  if (config_.testing.lease_trusts_check_quorum) return true;  // deliberately wrong (tests)
  if (lease_revoked_) return false;
  const uint64_t latest = read_only_.latest_round();
  const uint64_t round = MajorityValue(membership_.Current().voters, [&](NodeId id) {
    return id == id_ ? latest : read_only_.AckedRound(id);
  });
  auto sent = read_only_.SentTick(round);
  return sent.has_value() && ticks_ < *sent + static_cast<uint64_t>(LeaseTicks());
}

void Raft::SendTimeoutNow(NodeId to) {
  lease_revoked_ = true;
  Message m;
  m.type = MessageType::kTimeoutNow;
  m.to = to;
  Send(std::move(m));
}

bool Raft::HasPendingFlush() const {
  if (role_ != Role::kLeader) return false;
  return broadcast_pending_ || read_only_.HasUnsent();
}

void Raft::FlushPending() {
  if (role_ != Role::kLeader) return;
  if (broadcast_pending_) {
    // Batching: all proposals since the last Ready go out in one Append per
    // follower (more if they exceed max_size_per_msg_bytes and the window
    // allows), carrying the latest commit index too.
    broadcast_pending_ = false;
    for (const auto& [id, pr] : progress_) {
      if (id == id_) continue;
      if (MaybeSendAppend(id, /*send_if_empty=*/true)) {
        while (MaybeSendAppend(id, /*send_if_empty=*/false)) {
        }
      }
    }
  }
  if (read_only_.HasUnsent()) {
    // One heartbeat round for every read that arrived since the last one.
    const uint64_t round = read_only_.StartRound(log_.committed(), ticks_);
    for (NodeId id : membership_.Current().voters) {
      if (id != id_) SendHeartbeat(id, round);
    }
    ReleaseReads();  // a single voter confirms itself
  }
}

// ---------------------------------------------------------------- commit

bool Raft::MaybeCommit() {
  const uint64_t quorum_index = MajorityValue(membership_.Current().voters, [&](NodeId id) {
    auto it = progress_.find(id);
    return it == progress_.end() ? 0 : it->second.match;
  });
  bool advanced = false;
  if (config_.testing.commit_entries_from_previous_terms) {
    // Deliberately wrong (test only): commit whatever a majority stores.
    if (quorum_index > log_.committed()) {
      log_.CommitTo(quorum_index);
      advanced = true;
    }
  } else {
    // §5.4.2: only an entry of the current term is committed by counting
    // replicas; earlier entries are committed with it, indirectly. Counting
    // an older entry is unsafe: a future leader may still overwrite it
    // (Figure 8).
    advanced = log_.MaybeCommit(quorum_index, term_);
  }
  if (advanced) OnCommitAdvanced();
  return advanced;
}

void Raft::OnCommitAdvanced() {
  broadcast_pending_ = true;  // followers learn the new commit index at the next flush
  if (!reads_waiting_for_term_commit_.empty() && CommittedEntryInCurrentTerm()) {
    std::vector<ReadRequest> waiting;
    waiting.swap(reads_waiting_for_term_commit_);
    for (ReadRequest& r : waiting) HandleReadRequest(std::move(r));
  }
  // Thesis §4.2.2: a leader that is not part of the membership steps down once
  // that membership is committed. It hands over to the most up-to-date voter
  // at once rather than leaving the cluster to time out.
  if (!Promotable() && log_.committed() >= membership_.LastChangeIndex()) {
    NodeId best = kNoNode;
    for (const auto& [id, pr] : progress_) {
      if (!pr.is_learner && id != id_ && pr.match == log_.LastIndex()) {
        best = id;
        break;
      }
    }
    if (best != kNoNode) SendTimeoutNow(best);
    BecomeFollower(term_, kNoNode);
  }
}

bool Raft::CommittedEntryInCurrentTerm() const {
  auto term = log_.Term(log_.committed());
  return term.ok() && *term == term_;
}

bool Raft::QuorumActive() const {
  const ConfState& conf = membership_.Current();
  size_t active = 0;
  for (NodeId id : conf.voters) {
    auto it = progress_.find(id);
    if (id == id_ || (it != progress_.end() && it->second.recent_active)) ++active;
  }
  return active >= conf.voters.size() / 2 + 1;
}

void Raft::OnPersisted() {
  if (role_ != Role::kLeader) return;
  auto it = progress_.find(id_);
  if (it == progress_.end()) return;
  // The leader's own copy counts towards the quorum only once durable.
  if (it->second.MaybeUpdate(log_.PersistedIndex())) MaybeCommit();
}

void Raft::OnApplied(uint64_t index) {
  log_.AppliedTo(index);
  membership_.CompactTo(std::min(log_.applied(), log_.committed()));
}

void Raft::ReduceUncommittedSize(const std::vector<Entry>& committed) {
  const uint64_t bytes = PayloadBytes(committed);
  uncommitted_bytes_ = bytes > uncommitted_bytes_ ? 0 : uncommitted_bytes_ - bytes;
}

// ---------------------------------------------------------------- proposals

Status Raft::CheckCanPropose() const {
  if (role_ != Role::kLeader) {
    return leader_ != kNoNode ? errors::NotLeader(leader_) : errors::NoLeader();
  }
  if (lead_transferee_ != kNoNode) return errors::LeaderTransferring(lead_transferee_);
  if (!Promotable()) return errors::ProposalDropped("leader is leaving the membership");
  return Status::Ok();
}

Result<uint64_t> Raft::Propose(std::vector<std::string> data) {
  if (Status s = CheckCanPropose(); !s.ok()) return s;
  if (data.empty()) return errors::InvalidArgument("empty proposal");
  uint64_t bytes = 0;
  for (const std::string& d : data) bytes += d.size();
  const uint64_t limit = config_.max_uncommitted_entries_bytes;
  // Always admit something when nothing is uncommitted, however large.
  if (limit != 0 && uncommitted_bytes_ > 0 && uncommitted_bytes_ + bytes > limit) {
    return errors::ProposalDropped("uncommitted log exceeds " + std::to_string(limit) + " bytes");
  }
  const uint64_t first = log_.LastIndex() + 1;
  std::vector<Entry> entries(data.size());
  for (size_t i = 0; i < data.size(); ++i) {
    entries[i].term = term_;
    entries[i].index = first + i;
    entries[i].data = std::move(data[i]);
  }
  AppendToLog(std::move(entries));
  uncommitted_bytes_ += bytes;
  broadcast_pending_ = true;
  return first;
}

Result<uint64_t> Raft::ProposeConfChange(const ConfChange& change) {
  if (Status s = CheckCanPropose(); !s.ok()) return s;
  // Thesis §4.1 plus the raft-dev 2015 fix: one change at a time, and only
  // after this leader committed an entry of its own term (so no change from a
  // previous leader can still be uncommitted and later overwritten).
  if (!CommittedEntryInCurrentTerm()) {
    return errors::ConfChangePending("leader has not committed an entry of its term yet");
  }
  if (membership_.LastChangeIndex() > log_.committed()) {
    return errors::ConfChangePending("change at index " +
                                     std::to_string(membership_.LastChangeIndex()) +
                                     " is not committed");
  }
  const ConfState& conf = membership_.Current();
  if (Status s = ValidateConfChange(conf, change); !s.ok()) return s;
  if (change.type == ConfChangeType::kAddVoter && conf.IsLearner(change.node_id)) {
    // A learner is promoted only once it has nearly caught up, so the
    // promotion does not leave the new voter set waiting for it: etcd's
    // rule (isLearnerReady), its match within 10% of the leader's.
    const Progress& pr = progress_.at(change.node_id);
    const uint64_t leader_match = log_.LastIndex();
    if (pr.match * 10 < leader_match * 9) {
      return errors::LearnerNotReady(change.node_id, pr.match, leader_match);
    }
  }
  Entry entry;
  entry.term = term_;
  entry.index = log_.LastIndex() + 1;
  entry.type = EntryType::kConfChange;
  entry.data = EncodeConfChange(change);
  const uint64_t index = entry.index;
  uncommitted_bytes_ += entry.data.size();
  AppendToLog({std::move(entry)});
  broadcast_pending_ = true;
  return index;
}

// ---------------------------------------------------------------- reads

Status Raft::ReadIndex(std::string request_context) {
  if (role_ == Role::kLeader) {
    if (read_only_.size() + reads_waiting_for_term_commit_.size() >=
        config_.max_pending_read_requests) {
      return errors::ProposalDropped("too many pending reads");
    }
    HandleReadRequest(ReadRequest{id_, std::move(request_context)});
    return Status::Ok();
  }
  if (leader_ == kNoNode) return errors::NoLeader();
  Message m;
  m.type = MessageType::kReadIndex;
  m.to = leader_;
  m.context = std::move(request_context);
  Send(std::move(m));
  return Status::Ok();
}

void Raft::HandleReadRequest(ReadRequest request) {
  // A new leader's commit index may lag what its predecessor committed (and
  // acknowledged to clients) until it commits an entry of its own term.
  if (!CommittedEntryInCurrentTerm() && !config_.testing.serve_reads_before_term_commit) {
    reads_waiting_for_term_commit_.push_back(std::move(request));
    return;
  }
  if (config_.read_only_option == ReadOnlyOption::kLeaseBased && LeaseValid()) {
    // No other leader can exist before the lease ends (if clocks tick at the
    // same rate: see ReadOnlyOption); without a valid lease, fall back to a
    // heartbeat round.
    RespondToRead(std::move(request), log_.committed());
    return;
  }
  read_only_.Add(std::move(request));
}

void Raft::RespondToRead(ReadRequest request, uint64_t index) {
  if (request.from == id_) {
    read_states_.push_back(ReadState{index, std::move(request.context)});
    return;
  }
  Message m;
  m.type = MessageType::kReadIndexResponse;
  m.to = request.from;
  m.index = index;
  m.context = std::move(request.context);
  Send(std::move(m));
}

void Raft::ReleaseReads() {
  const uint64_t latest = read_only_.latest_round();
  const uint64_t round = MajorityValue(membership_.Current().voters, [&](NodeId id) {
    return id == id_ ? latest : read_only_.AckedRound(id);
  });
  if (round == 0) return;
  for (auto& [request, index] : read_only_.Release(round)) RespondToRead(std::move(request), index);
}

// ---------------------------------------------------------------- transfer

Status Raft::TransferLeader(NodeId transferee) {
  if (role_ != Role::kLeader) {
    return leader_ != kNoNode ? errors::NotLeader(leader_) : errors::NoLeader();
  }
  if (transferee == id_) return Status::Ok();
  if (!membership_.Current().IsVoter(transferee)) {
    return errors::InvalidArgument("transferee " + std::to_string(transferee) + " is not a voter");
  }
  if (lead_transferee_ == transferee) return Status::Ok();  // already under way
  // The transfer must finish within an election timeout (TickHeartbeat).
  election_elapsed_ = 0;
  lead_transferee_ = transferee;
  const Progress& pr = progress_.at(transferee);
  if (pr.match == log_.LastIndex()) {
    SendTimeoutNow(transferee);
  } else {
    // Catch it up first; HandleAppendResponse sends TimeoutNow when it is.
    MaybeSendAppend(transferee, /*send_if_empty=*/true);
  }
  return Status::Ok();
}

Status Raft::StepDown() {
  if (role_ != Role::kLeader) {
    return leader_ != kNoNode ? errors::NotLeader(leader_) : errors::NoLeader();
  }
  // Prefer handing over to the most up-to-date voter that answers.
  NodeId best = kNoNode;
  uint64_t best_match = 0;
  for (const auto& [id, pr] : progress_) {
    if (id == id_ || pr.is_learner || !pr.recent_active) continue;
    if (best == kNoNode || pr.match > best_match) {
      best = id;
      best_match = pr.match;
    }
  }
  if (best != kNoNode) return TransferLeader(best);
  BecomeFollower(term_, kNoNode);
  return Status::Ok();
}

void Raft::ReportUnreachable(NodeId id) {
  if (role_ != Role::kLeader) return;
  auto it = progress_.find(id);
  // While pipelining, an unreachable follower has most likely lost Appends.
  if (it != progress_.end() && it->second.state == ProgressState::kReplicate) {
    it->second.BecomeProbe();
  }
}

void Raft::ReportSnapshot(NodeId id, bool failed) {
  if (role_ != Role::kLeader) return;
  auto it = progress_.find(id);
  if (it == progress_.end() || it->second.state != ProgressState::kSnapshot) return;
  Progress& pr = it->second;
  if (failed) pr.pending_snapshot = 0;  // probe from match, not from the snapshot
  pr.BecomeProbe();
  // Wait for the follower's answer (or a heartbeat) before the next Append.
  pr.probe_sent = true;
}

}  // namespace cairn::raft
