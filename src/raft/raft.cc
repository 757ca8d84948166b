#include "raft/raft.h"

#include <algorithm>
#include <sstream>

#include "common/check.h"
#include "raft/errors.h"

namespace cairn::raft {

const char* RoleName(Role role) {
  switch (role) {
    case Role::kFollower: return "follower";
    case Role::kPreCandidate: return "pre-candidate";
    case Role::kCandidate: return "candidate";
    case Role::kLeader: return "leader";
  }
  return "unknown";
}

std::string NodeStatus::ToString() const {
  std::ostringstream out;
  out << "id=" << id << " " << RoleName(role) << " term=" << term << " leader=" << leader
      << " vote=" << vote << " commit=" << commit << " applied=" << applied
      << " last=" << last_index << " persisted=" << persisted_index << " " << conf_state.ToString();
  for (const ProgressStatus& p : progress) {
    out << "\n  " << p.id << ": " << ProgressStateName(p.state) << " match=" << p.match
        << " next=" << p.next << (p.is_learner ? " learner" : "")
        << (p.recent_active ? " active" : "") << " inflight=" << p.inflight_msgs;
  }
  return out.str();
}

Raft::Raft(const Config& config, Storage* storage)
    : config_(config),
      id_(config.id),
      storage_(storage),
      random_(config.random),
      log_(storage, config.max_committed_bytes_per_ready) {
  if (random_ == nullptr) {
    owned_random_ = std::make_unique<SplitMix64>(config.id);
    random_ = owned_random_.get();
  }
}

Status Raft::Init() {
  auto initial = storage_->GetInitialState();
  if (!initial.ok()) return initial.status();
  const HardState& hs = initial->hard_state;
  if (Status s = log_.Init(hs.commit, config_.applied); !s.ok()) return s;

  // The membership: the snapshot's, then every change entry in the log.
  const uint64_t first = storage_->FirstIndex();
  const uint64_t last = storage_->LastIndex();
  membership_.Reset(first - 1, initial->conf_state);
  for (uint64_t lo = first; lo <= last;) {
    auto entries = log_.Slice(lo, last + 1, 4 << 20);
    if (!entries.ok()) return entries.status();
    CHECK(!entries->empty()) << "storage returned no entries from " << lo;
    for (const Entry& e : *entries) membership_.Append(e);
    lo = entries->back().index + 1;
  }
  membership_.CompactTo(log_.applied());

  term_ = hs.term;
  vote_ = hs.vote;
  BecomeFollower(term_, kNoNode);
  return Status::Ok();
}

// ---------------------------------------------------------------- transitions

void Raft::Reset(uint64_t term) {
  if (term_ != term) {
    term_ = term;
    vote_ = kNoNode;
  }
  leader_ = kNoNode;
  election_elapsed_ = 0;
  heartbeat_elapsed_ = 0;
  ResetRandomizedElectionTimeout();
  AbortLeaderTransfer();
  lease_revoked_ = false;
  votes_.clear();
  SyncProgress(/*reset_all=*/true);
  uncommitted_bytes_ = 0;
  broadcast_pending_ = false;
  // Pending reads are dropped: the host times them out and retries.
  read_only_.Reset();
  reads_waiting_for_term_commit_.clear();
}

void Raft::BecomeFollower(uint64_t term, NodeId leader) {
  Reset(term);
  role_ = Role::kFollower;
  leader_ = leader;
}

void Raft::BecomePreCandidate() {
  CHECK(role_ != Role::kLeader) << "leader cannot become pre-candidate";
  // Neither the term nor the vote changes: a pre-vote is only a question.
  votes_.clear();
  leader_ = kNoNode;
  role_ = Role::kPreCandidate;
}

void Raft::BecomeCandidate() {
  CHECK(role_ != Role::kLeader) << "leader cannot become candidate";
  Reset(term_ + 1);
  vote_ = id_;
  role_ = Role::kCandidate;
}

void Raft::BecomeLeader() {
  CHECK(role_ != Role::kFollower) << "follower cannot become leader without an election";
  Reset(term_);
  leader_ = id_;
  role_ = Role::kLeader;
  // §5.4.2 / §8: a leader commits entries of earlier terms only by committing
  // one of its own, so it appends an empty entry right away. Until that entry
  // is committed it refuses membership changes and defers reads.
  Entry noop;
  noop.term = term_;
  noop.index = log_.LastIndex() + 1;
  AppendToLog({std::move(noop)});
  broadcast_pending_ = true;
  // The uncommitted tail inherited from earlier terms counts towards
  // max_uncommitted_entries_bytes too; otherwise a leader that keeps losing
  // and regaining leadership grows it by the whole allowance each term.
  // (etcd-raft starts from zero.)
  if (config_.max_uncommitted_entries_bytes != 0 && log_.committed() < log_.LastIndex()) {
    auto tail = log_.Slice(log_.committed() + 1, log_.LastIndex() + 1, UINT64_MAX);
    CHECK(tail.ok()) << "uncommitted tail unavailable: " << tail.status().ToString();
    for (const Entry& e : *tail) uncommitted_bytes_ += EntryPayloadSize(e);
  }
}

void Raft::ResetRandomizedElectionTimeout() {
  const int base = config_.election_timeout_ticks;
  randomized_election_timeout_ = base + static_cast<int>(random_->Uniform(base));
}

// Keeps progress_ equal to the membership's members. A fresh leader starts
// every follower at "next = last + 1, match unknown" and probes back; a
// member added mid-term starts the same way.
void Raft::SyncProgress(bool reset_all) {
  if (reset_all) progress_.clear();
  const ConfState& conf = membership_.Current();
  for (auto it = progress_.begin(); it != progress_.end();) {
    it = conf.Contains(it->first) ? std::next(it) : progress_.erase(it);
  }
  auto add = [&](NodeId id, bool learner) {
    auto it = progress_.find(id);
    if (it == progress_.end()) {
      it = progress_
               .emplace(id, Progress(log_.LastIndex() + 1, config_.max_inflight_msgs,
                                     config_.max_inflight_bytes))
               .first;
      Progress& pr = it->second;
      // Mid-term additions may need a snapshot at once; a new term waits for
      // the follower to answer first.
      pr.recent_active = !reset_all || id == id_;
      if (id == id_) pr.match = log_.PersistedIndex();
    }
    it->second.is_learner = learner;
  };
  for (NodeId id : conf.voters) add(id, false);
  for (NodeId id : conf.learners) add(id, true);
  if (lead_transferee_ != kNoNode && !conf.IsVoter(lead_transferee_)) AbortLeaderTransfer();
}

void Raft::AppendToLog(std::vector<Entry> entries) {
  if (entries.empty()) return;
  bool membership_changed = false;
  const uint64_t from = entries.front().index;
  if (from <= membership_.LastChangeIndex()) {
    membership_.TruncateFrom(from);
    membership_changed = true;
  }
  for (const Entry& e : entries) {
    if (e.type == EntryType::kConfChange) {
      membership_.Append(e);
      membership_changed = true;
    }
  }
  log_.Append(std::move(entries));
  if (membership_changed) SyncProgress(/*reset_all=*/false);
}

// ---------------------------------------------------------------- elections

bool Raft::CanCampaign() const {
  if (Promotable()) return true;
  // Example: leader 4 of voters {4, 5} demotes itself and crashes before the
  // change commits. 5 never got the entry, so it still needs 4's vote, which
  // 4 refuses because its log is longer; unless 4 campaigns, no one can win.
  // It wins with 5's vote alone (its own does not count: Poll ignores
  // non-voters), commits the change, and steps down.
  const uint64_t last_change = membership_.LastChangeIndex();
  if (last_change <= log_.committed()) return false;
  auto previous = membership_.At(last_change - 1);
  return previous.ok() && previous->IsVoter(id_);
}

void Raft::Campaign() {
  if (role_ == Role::kLeader || !CanCampaign()) return;
  StartCampaign(config_.pre_vote ? CampaignType::kPreElection : CampaignType::kElection);
}

void Raft::StartCampaign(CampaignType type) {
  if (!CanCampaign()) return;
  MessageType vote_type;
  uint64_t term;
  if (type == CampaignType::kPreElection) {
    BecomePreCandidate();
    vote_type = MessageType::kPreVote;
    // The term we would campaign in; our own term does not change yet.
    term = term_ + 1;
  } else {
    BecomeCandidate();
    vote_type = MessageType::kVote;
    term = term_;
  }
  if (Poll(id_, true) == VoteResult::kWon) {
    // A single voter wins at once.
    if (type == CampaignType::kPreElection) {
      StartCampaign(CampaignType::kElection);
    } else {
      BecomeLeader();
    }
    return;
  }
  const std::vector<NodeId> voters = membership_.Current().voters;
  for (NodeId id : voters) {
    if (id == id_) continue;
    Message m;
    m.type = vote_type;
    m.to = id;
    m.term = term;
    m.index = log_.LastIndex();
    m.log_term = log_.LastTerm();
    m.leader_transfer = type == CampaignType::kTransfer;
    Send(std::move(m));
  }
}

Raft::VoteResult Raft::Poll(NodeId id, bool granted) {
  const ConfState& conf = membership_.Current();
  if (conf.IsVoter(id)) votes_.emplace(id, granted);  // the first answer counts
  size_t yes = 0;
  size_t no = 0;
  for (NodeId voter : conf.voters) {
    auto it = votes_.find(voter);
    if (it == votes_.end()) continue;
    (it->second ? yes : no)++;
  }
  const size_t quorum = conf.voters.size() / 2 + 1;
  if (yes >= quorum) return VoteResult::kWon;
  if (no > conf.voters.size() - quorum) return VoteResult::kLost;
  return VoteResult::kPending;
}

void Raft::HandleVoteRequest(const Message& m) {
  const bool pre = m.type == MessageType::kPreVote;
  // We can vote if this repeats our vote, if we have not voted and know of no
  // leader in this term, or if it is a pre-vote for a later term.
  const bool can_vote = vote_ == m.from || (vote_ == kNoNode && leader_ == kNoNode) ||
                        (pre && m.term > term_);
  // §5.4.1: and only for a candidate whose log is at least as up to date.
  const bool up_to_date =
      log_.IsUpToDate(m.index, m.log_term) || config_.testing.grant_votes_without_log_check;
  Message resp;
  resp.type = pre ? MessageType::kPreVoteResponse : MessageType::kVoteResponse;
  resp.to = m.from;
  if (can_vote && up_to_date) {
    // Answer with the request's term: for a pre-vote our own term may be
    // older, and the pre-candidate ignores answers from older terms.
    resp.term = m.term;
    if (!pre) {
      election_elapsed_ = 0;
      vote_ = m.from;
    }
  } else {
    resp.term = term_;
    resp.reject = true;
  }
  Send(std::move(resp));
}

// ---------------------------------------------------------------- Step

Status Raft::Step(Message m) {
  if (m.from == kNoNode) return errors::InvalidMessage("no sender");
  if (m.to != id_) return errors::InvalidMessage("addressed to " + std::to_string(m.to));
  if (m.term == 0) return errors::InvalidMessage("term 0");

  const bool vote_request = m.type == MessageType::kVote || m.type == MessageType::kPreVote;
  if (m.term > term_) {
    if (vote_request) {
      // Leader stickiness (§6 / thesis §4.2.3): while we have heard from a
      // leader within the minimum election timeout, a vote request is most
      // likely from a node that was cut off or removed; ignore it, unless
      // the leader itself asked for the election (transfer).
      //
      // With lease reads, a node that just (re)started may have made that
      // promise before it crashed; it keeps it for an election timeout.
      const int timeout = config_.election_timeout_ticks;
      const bool restarted_recently =
          config_.read_only_option == ReadOnlyOption::kLeaseBased && ticks_ < uint64_t(timeout);
      const bool in_lease = config_.check_quorum && election_elapsed_ < timeout &&
                            (leader_ != kNoNode || restarted_recently);
      if (in_lease && !m.leader_transfer) return Status::Ok();
    }
    if (m.type == MessageType::kPreVote) {
      // A pre-vote never changes our term.
    } else if (m.type == MessageType::kPreVoteResponse && !m.reject) {
      // Granted pre-votes carry the term we would campaign in; we move to it
      // only once we have a quorum.
    } else if (m.type == MessageType::kAppend || m.type == MessageType::kHeartbeat ||
               m.type == MessageType::kSnapshot) {
      BecomeFollower(m.term, m.from);
    } else {
      BecomeFollower(m.term, kNoNode);
    }
  } else if (m.term < term_) {
    if (m.type == MessageType::kHeartbeat || m.type == MessageType::kAppend) {
      // A leader of an older term: tell it our term so it steps down (§5.1:
      // "reply false ... with currentTerm"). etcd-raft only does this with
      // pre-vote or check quorum on, assuming the newer node will campaign
      // and so announce its term; a learner, or a node demoted or removed
      // after raising its term, never campaigns, and the two would ignore
      // each other for ever.
      Message resp;
      resp.type = MessageType::kAppendResponse;
      resp.to = m.from;
      Send(std::move(resp));
    } else if (m.type == MessageType::kPreVote) {
      Message resp;
      resp.type = MessageType::kPreVoteResponse;
      resp.to = m.from;
      resp.term = term_;
      resp.reject = true;
      Send(std::move(resp));
    }
    return Status::Ok();
  }

  if (vote_request) {
    HandleVoteRequest(m);
    return Status::Ok();
  }
  switch (role_) {
    case Role::kFollower: return StepFollower(m);
    case Role::kPreCandidate:
    case Role::kCandidate: return StepCandidate(m);
    case Role::kLeader: return StepLeader(m);
  }
  return Status::Ok();
}

Status Raft::StepFollower(Message& m) {
  switch (m.type) {
    case MessageType::kAppend:
      election_elapsed_ = 0;
      leader_ = m.from;
      HandleAppend(m);
      break;
    case MessageType::kHeartbeat:
      election_elapsed_ = 0;
      leader_ = m.from;
      HandleHeartbeat(m);
      break;
    case MessageType::kSnapshot:
      election_elapsed_ = 0;
      leader_ = m.from;
      HandleSnapshot(m);
      break;
    case MessageType::kTimeoutNow:
      // Leader transfer: campaign at once, skipping pre-vote (we know the
      // leader is alive and wants us to take over).
      StartCampaign(CampaignType::kTransfer);
      break;
    case MessageType::kReadIndexResponse:
      read_states_.push_back(ReadState{m.index, std::move(m.context)});
      break;
    default:
      break;  // stale or misdirected; the sender retries if it matters
  }
  return Status::Ok();
}

Status Raft::StepCandidate(Message& m) {
  const MessageType my_response = role_ == Role::kPreCandidate ? MessageType::kPreVoteResponse
                                                               : MessageType::kVoteResponse;
  switch (m.type) {
    case MessageType::kAppend:
      BecomeFollower(m.term, m.from);  // m.term == term_: a leader won this term
      HandleAppend(m);
      break;
    case MessageType::kHeartbeat:
      BecomeFollower(m.term, m.from);
      HandleHeartbeat(m);
      break;
    case MessageType::kSnapshot:
      BecomeFollower(m.term, m.from);
      HandleSnapshot(m);
      break;
    default:
      if (m.type != my_response) break;  // e.g. late pre-vote answers while a candidate
      switch (Poll(m.from, !m.reject)) {
        case VoteResult::kWon:
          if (role_ == Role::kPreCandidate) {
            StartCampaign(CampaignType::kElection);
          } else {
            BecomeLeader();
          }
          break;
        case VoteResult::kLost:
          BecomeFollower(term_, kNoNode);
          break;
        case VoteResult::kPending:
          break;
      }
  }
  return Status::Ok();
}

// ---------------------------------------------------------------- follower

void Raft::HandleAppend(Message& m) {
  Message resp;
  resp.type = MessageType::kAppendResponse;
  resp.to = m.from;
  if (m.index < log_.committed()) {
    // Everything up to our commit index matches the leader's log already.
    resp.index = log_.committed();
    Send(std::move(resp));
    return;
  }
  if (!log_.MatchTerm(m.index, m.log_term)) {
    // §5.3 with the fast back-off: point the leader at the last index whose
    // term is at most the term it asked about, so it skips a whole term of
    // mismatching entries per round trip.
    const uint64_t hint = std::min(m.index, log_.LastIndex());
    const auto [hint_index, hint_term] = log_.FindConflictByTerm(hint, m.log_term);
    resp.index = m.index;
    resp.reject = true;
    resp.reject_hint = hint_index;
    resp.log_term = hint_term;
    Send(std::move(resp));
    return;
  }
  const uint64_t last_new = m.index + m.entries.size();
  const uint64_t conflict = log_.FindConflict(m.entries);
  if (conflict != 0) {
    CHECK(conflict > log_.committed())
        << "entry " << conflict << " from " << m.from << " conflicts with committed entry, commit "
        << log_.committed();
    m.entries.erase(m.entries.begin(), m.entries.begin() + (conflict - (m.index + 1)));
    AppendToLog(std::move(m.entries));
  }
  log_.CommitTo(std::min(m.commit, last_new));
  // Sent only after the appended entries are durable (Ready::persisted_messages).
  resp.index = last_new;
  Send(std::move(resp));
}

void Raft::HandleHeartbeat(const Message& m) {
  // The leader sends min(our match, its commit), which our log has.
  log_.CommitTo(m.commit);
  Message resp;
  resp.type = MessageType::kHeartbeatResponse;
  resp.to = m.from;
  resp.read_round = m.read_round;
  Send(std::move(resp));
}

void Raft::HandleSnapshot(const Message& m) {
  if (!m.snapshot) return;
  Message resp;
  resp.type = MessageType::kAppendResponse;
  resp.to = m.from;
  resp.index = Restore(*m.snapshot) ? log_.LastIndex() : log_.committed();
  Send(std::move(resp));
}

bool Raft::Restore(const Snapshot& snapshot) {
  const SnapshotMetadata& meta = snapshot.metadata;
  if (meta.index <= log_.committed()) return false;
  if (log_.MatchTerm(meta.index, meta.term)) {
    // We have the entry: the snapshot tells us only that it is committed.
    log_.CommitTo(meta.index);
    return false;
  }
  log_.Restore(snapshot);
  membership_.Reset(meta.index, meta.conf_state);
  SyncProgress(/*reset_all=*/false);
  return true;
}

// ---------------------------------------------------------------- ticks

void Raft::Tick() {
  ++ticks_;
  if (role_ == Role::kLeader) {
    TickHeartbeat();
  } else {
    TickElection();
  }
}

void Raft::TickElection() {
  ++election_elapsed_;
  if (PastElectionTimeout() && CanCampaign()) {
    election_elapsed_ = 0;
    Campaign();
  }
}

void Raft::TickHeartbeat() {
  ++heartbeat_elapsed_;
  ++election_elapsed_;
  if (election_elapsed_ >= config_.election_timeout_ticks) {
    election_elapsed_ = 0;
    if (config_.check_quorum) {
      // Check quorum: without a quorum heard from in an election timeout, we
      // may have been replaced; stop acting as leader (and stop serving
      // lease reads).
      if (!QuorumActive()) {
        BecomeFollower(term_, kNoNode);
        return;
      }
      for (auto& [id, pr] : progress_) pr.recent_active = id == id_;
    }
    // A transfer that did not finish within an election timeout has failed.
    AbortLeaderTransfer();
  }
  if (heartbeat_elapsed_ >= config_.heartbeat_interval_ticks) {
    heartbeat_elapsed_ = 0;
    BroadcastHeartbeat();
  }
}

// ---------------------------------------------------------------- output

void Raft::Send(Message m) {
  m.from = id_;
  const bool sets_own_term = m.type == MessageType::kVote || m.type == MessageType::kPreVote ||
                             m.type == MessageType::kVoteResponse ||
                             m.type == MessageType::kPreVoteResponse;
  if (sets_own_term) {
    CHECK(m.term != 0) << "vote message without term: " << m.ToString();
  } else {
    m.term = term_;
  }
  // Messages that promise something about our durable state wait until the
  // Ready that carries that state is persisted: a vote (our term and vote),
  // a vote request (our own vote for ourselves), and an append
  // acknowledgment (the entries). Everything else may go at once; notably a
  // leader may send entries before it has persisted them itself (thesis
  // §10.2.1), because its own copy counts towards a quorum only once durable.
  switch (m.type) {
    case MessageType::kVote:
    case MessageType::kVoteResponse:
    case MessageType::kAppendResponse:
      msgs_after_persist_.push_back(std::move(m));
      break;
    default:
      msgs_.push_back(std::move(m));
  }
}

std::vector<Message> Raft::TakeMessages() {
  std::vector<Message> out;
  out.swap(msgs_);
  return out;
}

std::vector<Message> Raft::TakeMessagesAfterPersist() {
  std::vector<Message> out;
  out.swap(msgs_after_persist_);
  return out;
}

std::vector<ReadState> Raft::TakeReadStates() {
  std::vector<ReadState> out;
  out.swap(read_states_);
  return out;
}

NodeStatus Raft::GetStatus() const {
  NodeStatus s;
  s.id = id_;
  s.role = role_;
  s.leader = leader_;
  s.term = term_;
  s.vote = vote_;
  s.commit = log_.committed();
  s.applied = log_.applied();
  s.last_index = log_.LastIndex();
  s.persisted_index = log_.PersistedIndex();
  s.lead_transferee = lead_transferee_;
  s.conf_state = membership_.Current();
  if (role_ == Role::kLeader) {
    for (const auto& [id, pr] : progress_) {
      ProgressStatus p;
      p.id = id;
      p.match = pr.match;
      p.next = pr.next;
      p.state = pr.state;
      p.is_learner = pr.is_learner;
      p.recent_active = pr.recent_active;
      p.inflight_msgs = pr.inflights.count();
      p.inflight_bytes = pr.inflights.bytes();
      p.pending_snapshot = pr.pending_snapshot;
      s.progress.push_back(p);
    }
  }
  return s;
}

}  // namespace cairn::raft
