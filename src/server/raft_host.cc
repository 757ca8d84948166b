#include "server/raft_host.h"

#include <algorithm>
#include <chrono>
#include <random>

#include "common/check.h"
#include "common/logging.h"
#include "common/thread_name.h"
#include "common/trace_points.h"
#include "raft/errors.h"

namespace cairn::server {

namespace {
double SecondsSince(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

// Trace points for appends (with their last entry's index) and their
// answers (with the index accepted); common/trace_points.h.
void TraceMessage(const raft::Message& m, const char* append_stage, const char* response_stage) {
  if (!trace::Recorder::Get().enabled()) return;
  if (m.type == raft::MessageType::kAppend && !m.entries.empty()) {
    trace::Point(append_stage, m.entries.back().index);
  } else if (m.type == raft::MessageType::kAppendResponse && !m.reject) {
    trace::Point(response_stage, m.index);
  }
}

// The client's answer for a proposal the core refused.
Status RefusalFor(const Status& s) {
  switch (raft::ErrorKindOf(s)) {
    case raft::ErrorKind::kNotLeader: return errors::NotLeader();
    case raft::ErrorKind::kNoLeader: return errors::NoLeader();
    case raft::ErrorKind::kLeaderTransferring: return errors::LeaderChanged();
    case raft::ErrorKind::kProposalDropped: return errors::TooManyRequests();
    // etcd turns a second concurrent change into an empty entry and its
    // caller times out; here the caller gets that answer at once.
    case raft::ErrorKind::kConfChangePending: return errors::Timeout();
    case raft::ErrorKind::kLearnerNotReady: return errors::LearnerNotReady();
    default: return errors::Internal("raft: " + s.message());
  }
}
}  // namespace

RaftHost::RaftHost(RaftHostOptions options, LogStore* store, Transport* transport, Clock* clock,
                   RaftHostHooks hooks)
    : options_(std::move(options)),
      store_(store),
      transport_(transport),
      clock_(clock),
      hooks_(std::move(hooks)),
      inbox_(options_.max_inbox) {}

RaftHost::~RaftHost() { Stop(); }

Status RaftHost::Start() {
  auto node = raft::RawNode::Create(options_.raft, store_);
  if (!node.ok()) return node.status();
  node_ = std::move(*node);
  acked_applied_ = options_.raft.applied;
  // Read contexts must not repeat across restarts: a leader's answer to a
  // round asked before a restart may still arrive, and must not be taken for
  // the answer to a new round (found by the host simulator, seed 37 small).
  const uint64_t nonce = options_.raft.random != nullptr ? options_.raft.random->Uniform(UINT64_MAX)
                                                         : (uint64_t{std::random_device{}()} << 32) ^ std::random_device{}();
  read_context_prefix_ = std::to_string(nonce) + ".";
  const raft::ConfState& conf = store_->LastConfState();
  sole_voter_ = conf.voters.size() == 1 && conf.voters[0] == options_.raft.id;
  if (sole_voter_) node_->Campaign();
  term_ = node_->hard_state().term;
  commit_index_ = node_->hard_state().commit;
  next_tick_ms_ = clock_->NowMs() + options_.tick_interval_ms;
  if (options_.own_thread) {
    thread_ = std::thread([this] {
      SetThreadName("cairn-raft");
      Loop();
    });
  }
  return Status::Ok();
}

void RaftHost::Stop() {
  if (stopping_.exchange(true)) return;
  inbox_.Close();
  if (thread_.joinable()) {
    thread_.join();
  } else if (node_) {
    FailPending();  // no thread: the owner drove the turns
  }
}

void RaftHost::Turn() {
  CHECK(!options_.own_thread) << "Turn() is for hosts without a thread";
  std::vector<Input> inputs;
  if (stopping_.load() || !inbox_.PopBatch(&inputs, options_.max_inbox, std::chrono::milliseconds(0))) return;
  RunTurn(inputs);
}

bool RaftHost::Propose(Proposal proposal) {
  Input in(std::move(proposal));
  return !stopping_.load() && inbox_.TryPush(in);
}

void RaftHost::Step(raft::Message message) {
  Input in(std::move(message));
  inbox_.TryPush(in);
}

void RaftHost::ReportUnreachable(raft::NodeId id) {
  Input in(Unreachable{id});
  inbox_.TryPush(in);
}

void RaftHost::ReportSnapshot(raft::NodeId id, bool delivered) {
  Input in(SnapshotReport{id, delivered});
  // Must not be lost (the leader would wait for it): wait for room.
  inbox_.Push(std::move(in));
}

void RaftHost::ReadIndex(ReadCallback done) {
  Input in(ReadRequest{std::move(done)});
  if (stopping_.load() || !inbox_.TryPush(in)) {
    std::get<ReadRequest>(in).done(stopping_.load() ? errors::Stopped() : errors::TooManyRequests());
  }
}

void RaftHost::TransferLeader(raft::NodeId to, ReadCallback done) {
  Input in(Transfer{to, std::move(done), clock_->NowMs() + options_.request_timeout_ms});
  if (stopping_.load() || !inbox_.TryPush(in)) {
    std::get<Transfer>(in).done(stopping_.load() ? errors::Stopped() : errors::TooManyRequests());
  }
}

void RaftHost::CheckTransfers(int64_t now_ms) {
  for (auto it = transfers_.begin(); it != transfers_.end();) {
    if (leader_.load() == it->to) {
      it->done(Status::Ok());
    } else if (now_ms > it->deadline_ms) {
      it->done(errors::LeaderTransferTimeout());
    } else {
      ++it;
      continue;
    }
    it = transfers_.erase(it);
  }
}

void RaftHost::Take(Input& in) {
  if (auto* p = std::get_if<Proposal>(&in)) {
    Park(std::move(*p));
  } else if (auto* m = std::get_if<raft::Message>(&in)) {
    TraceMessage(*m, "step_app", "step_resp");
    Status s = node_->Step(std::move(*m));
    if (!s.ok()) CAIRN_LOG(kDebug) << "raft: message dropped: " << s.message();
  } else if (auto* u = std::get_if<Unreachable>(&in)) {
    node_->ReportUnreachable(u->id);
  } else if (auto* sr = std::get_if<SnapshotReport>(&in)) {
    node_->ReportSnapshot(sr->id, sr->delivered ? raft::SnapshotStatus::kFinished : raft::SnapshotStatus::kFailed);
  } else if (auto* t = std::get_if<Transfer>(&in)) {
    Status s = node_->TransferLeader(t->to);
    if (s.ok()) {
      transfers_.push_back(std::move(*t));
    } else {
      t->done(raft::IsError(s, raft::ErrorKind::kNotLeader) ? errors::NotLeader() : errors::BadLeaderTransferee());
    }
  } else if (auto* r = std::get_if<ReadRequest>(&in)) {
    if (unasked_reads_.empty()) unasked_since_ms_ = clock_->NowMs();
    unasked_reads_.push_back(std::move(r->done));
  }
}

void RaftHost::RequestReads(int64_t now_ms) {
  if (unasked_reads_.empty()) return;
  const std::string context = read_context_prefix_ + std::to_string(++next_read_context_);
  Status s = node_->ReadIndex(context);
  if (!s.ok()) {
    // No leader (an election): ask again next turn; CheckReads times out.
    if (raft::IsError(s, raft::ErrorKind::kNoLeader)) return;
    const Status refusal = RefusalFor(s);
    read_index_failures_.fetch_add(1, std::memory_order_relaxed);
    for (auto& done : unasked_reads_) done(refusal);
    unasked_reads_.clear();
    return;
  }
  ReadRound& round = read_rounds_[context];
  round.reads = std::move(unasked_reads_);
  round.first_asked_ms = unasked_since_ms_;
  round.asked_ms = now_ms;
  unasked_reads_.clear();
}

void RaftHost::CheckReads(int64_t now_ms) {
  // A round is never answered with an error: on a leader change or a lost
  // message it is dropped. Ask again after a while (etcd: every 500 ms),
  // and give up at the request timeout.
  for (auto it = read_rounds_.begin(); it != read_rounds_.end();) {
    ReadRound& round = it->second;
    if (now_ms - round.first_asked_ms > options_.request_timeout_ms) {
      read_index_timeouts_.fetch_add(1, std::memory_order_relaxed);
      for (auto& done : round.reads) done(errors::Timeout());
      it = read_rounds_.erase(it);
    } else if (now_ms - round.asked_ms >= options_.read_retry_ms) {
      unasked_since_ms_ = unasked_reads_.empty() ? round.first_asked_ms
                                                  : std::min(unasked_since_ms_, round.first_asked_ms);
      for (auto& done : round.reads) unasked_reads_.push_back(std::move(done));
      it = read_rounds_.erase(it);
    } else {
      ++it;
    }
  }
  if (!unasked_reads_.empty() && now_ms - unasked_since_ms_ > options_.request_timeout_ms) {
    read_index_timeouts_.fetch_add(1, std::memory_order_relaxed);
    for (auto& done : unasked_reads_) done(errors::Timeout());
    unasked_reads_.clear();
  }
}

void RaftHost::ServeReadStates(std::vector<raft::ReadState>& states) {
  for (auto& rs : states) {
    auto it = read_rounds_.find(rs.request_context);
    if (it == read_rounds_.end()) continue;  // retried under another context
    hooks_.on_read_index(rs.index, std::move(it->second.reads));
    read_rounds_.erase(it);
  }
}

void RaftHost::Park(Proposal p) {
  if (parked_.size() >= options_.max_parked_proposals) {
    Refuse(p, errors::TooManyRequests());
    return;
  }
  parked_.push_back(std::move(p));
}

void RaftHost::Refuse(const Proposal& p, const Status& status) {
  if (p.forwarded) {
    transport_->Refuse(p.origin, p.id, status);
  } else {
    hooks_.refused(p.id, status);
  }
}

void RaftHost::Loop() {
  std::vector<Input> inputs;
  while (true) {
    inputs.clear();
    const int64_t wait = std::max<int64_t>(0, next_tick_ms_ - clock_->NowMs());
    if (!inbox_.PopBatch(&inputs, options_.max_batch_entries, std::chrono::milliseconds(wait))) break;
    RunTurn(inputs);
  }
  FailPending();
}

void RaftHost::RunTurn(std::vector<Input>& inputs) {
  const int64_t tick = options_.tick_interval_ms;
  for (Input& in : inputs) Take(in);
  const int64_t now = clock_->NowMs();
  if (now >= next_tick_ms_) {
    node_->Tick();
    // After a long stall, one tick: a paused member must not fire a burst
    // of ticks (and elections) on waking.
    next_tick_ms_ = std::max(next_tick_ms_ + tick, now);
    if (hooks_.on_tick) hooks_.on_tick(now);
    CheckReads(now);
  }
  ProposeParked();
  RequestReads(now);
  ProcessReadys();
  AckAppliedAndCompact();
  if (!transfers_.empty()) CheckTransfers(clock_->NowMs());
}

void RaftHost::FailPending() {
  for (auto& t : transfers_) t.done(errors::Stopped());
  transfers_.clear();
  // (Forwarded ones are dropped: the follower is not stopping, and its
  // waiters time out or complete under the next leader.)
  for (auto& p : parked_) {
    if (!p.forwarded) hooks_.refused(p.id, errors::Stopped());
  }
  parked_.clear();
  for (auto& done : unasked_reads_) done(errors::Stopped());
  unasked_reads_.clear();
  for (auto& [context, round] : read_rounds_) {
    for (auto& done : round.reads) done(errors::Stopped());
  }
  read_rounds_.clear();
  // Proposals still in the inbox (closed: PopBatch drains it).
  std::vector<Input> inputs;
  while (inbox_.PopBatch(&inputs, 1024, std::chrono::milliseconds(0)) && !inputs.empty()) {
    for (Input& in : inputs) {
      if (auto* p = std::get_if<Proposal>(&in); p && !p->forwarded) hooks_.refused(p->id, errors::Stopped());
      if (auto* r = std::get_if<ReadRequest>(&in)) r->done(errors::Stopped());
      if (auto* t = std::get_if<Transfer>(&in)) t->done(errors::Stopped());
    }
    inputs.clear();
  }
}

void RaftHost::ProposeParked() {
  while (!parked_.empty()) {
    const size_t n = std::min(parked_.size(), options_.max_batch_entries);
    const raft::NodeId leader = leader_.load();
    // No leader yet (an election): keep them for a later turn; their
    // waiters time out if none comes.
    if (leader == raft::kNoNode) return;
    if (!is_leader_.load()) {
      // A follower: the leader proposes them, and this member's waiters
      // complete when it applies the entries (or time out if the leader
      // drops them). Proposals forwarded to this member are not passed on.
      std::vector<std::pair<uint64_t, std::string>> own;
      for (size_t i = 0; i < n; i++) {
        if (parked_[i].forwarded) continue;
        own.emplace_back(parked_[i].id, std::move(parked_[i].data));
        if (hooks_.forwarded) hooks_.forwarded(parked_[i].id);
      }
      if (!own.empty()) transport_->Forward(leader, std::move(own));
    } else {
      // Runs of ordinary proposals go in one batch each; a membership change
      // goes alone (ProposeConfChange).
      size_t i = 0;
      while (i < n) {
        if (IsConfChangeProposal(parked_[i].data)) {
          auto change = raft::DecodeConfChange(parked_[i].data.substr(1));
          Result<raft::ProposalPosition> pos =
              change.ok() ? node_->ProposeConfChange(*change) : Result<raft::ProposalPosition>(change.status());
          if (!pos.ok()) {
            Refuse(parked_[i], RefusalFor(pos.status()));
          } else if (!parked_[i].forwarded) {
            hooks_.accepted(parked_[i].id, pos->term, pos->first_index);
          }
          i++;
          continue;
        }
        size_t j = i;
        std::vector<std::string> data;
        while (j < n && !IsConfChangeProposal(parked_[j].data)) data.push_back(std::move(parked_[j++].data));
        auto pos = node_->ProposeBatch(std::move(data));
        if (!pos.ok()) {
          const Status refusal = RefusalFor(pos.status());
          for (size_t k = i; k < j; k++) Refuse(parked_[k], refusal);
        } else {
          for (size_t k = i; k < j; k++) {
            if (!parked_[k].forwarded) hooks_.accepted(parked_[k].id, pos->term, pos->first_index + (k - i));
          }
        }
        i = j;
      }
    }
    parked_.erase(parked_.begin(), parked_.begin() + static_cast<ptrdiff_t>(n));
  }
}

void RaftHost::Persist(const raft::Ready& rd) {
  const auto t0 = std::chrono::steady_clock::now();
  if (rd.snapshot) {
    // Before the entries that follow it in this Ready.
    Status s = hooks_.install_snapshot(*rd.snapshot);
    CHECK(s.ok()) << "installing the snapshot at index " << rd.snapshot->metadata.index
                  << " failed: " << s.ToString();
    commit_index_ = std::max(commit_index_.load(), rd.snapshot->metadata.index);
  }
  if (rd.entries.empty() && !rd.hard_state) return;
  while (true) {
    Status s = store_->Append(rd.entries);
    if (s.ok() && rd.hard_state) s = store_->SetHardState(*rd.hard_state);
    if (s.ok()) break;
    // A full disk: the log refused the batch before changing anything. The
    // entries are needed (the core handed them out), so wait for room; the
    // API refuses new writes meanwhile (on_log_full).
    CHECK(s.code() == Code::kResourceExhausted) << "log append failed: " << s.ToString();
    if (hooks_.on_log_full) hooks_.on_log_full(s);
    if (stopping_.load()) return;  // nothing acknowledged; recovery re-reads the log
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  if (!rd.must_sync) return;  // only the commit index moved: rides the next sync
  Status s = store_->Sync();
  // A failed fdatasync leaves the file's state unknown (the kernel may have
  // dropped the dirty pages): stop, and let recovery read what is there.
  CHECK(s.ok()) << "log sync failed: " << s.ToString();
  if (hooks_.on_log_sync) hooks_.on_log_sync(SecondsSince(t0));
}

void RaftHost::ProcessReadys() {
  while (node_->HasReady() && !stopping_.load()) {
    raft::Ready rd = node_->GetReady();
    if (rd.soft_state) {
      const bool changed = rd.soft_state->leader != leader_.load();
      leader_ = rd.soft_state->leader;
      is_leader_ = rd.soft_state->role == raft::Role::kLeader;
      if (changed && hooks_.on_leader_change) hooks_.on_leader_change(leader_.load(), node_->hard_state().term);
    }
    if (rd.hard_state) term_ = rd.hard_state->term;
    for (const auto& m : rd.messages) TraceMessage(m, "send_app", "send_resp");
    if (!rd.messages.empty()) transport_->Send(std::move(rd.messages));
    if (!rd.entries.empty()) trace::Point("persist_start", rd.entries.back().index);
    Persist(rd);
    if (!rd.entries.empty()) trace::Point("persisted", rd.entries.back().index);
    if (stopping_.load()) return;
    if (hooks_.on_persisted) hooks_.on_persisted(rd);
    if (!rd.entries.empty()) {
      const raft::ConfState& conf = store_->LastConfState();
      sole_voter_ = conf.voters.size() == 1 && conf.voters[0] == options_.raft.id;
    }
    for (const auto& m : rd.persisted_messages) TraceMessage(m, "send_app", "send_resp");
    if (!rd.persisted_messages.empty()) transport_->Send(std::move(rd.persisted_messages));
    node_->AckPersisted(rd.number);
    if (rd.hard_state) commit_index_ = rd.hard_state->commit;
    if (!rd.committed_entries.empty()) {
      trace::Point("commit", rd.committed_entries.back().index);
      if (!hooks_.apply(std::move(rd.committed_entries))) return;
    }
    // After the committed entries: a read waits for the index it was
    // confirmed at, which the apply worker now has in its queue.
    if (!rd.read_states.empty()) ServeReadStates(rd.read_states);
  }
}

void RaftHost::AckAppliedAndCompact() {
  const uint64_t applied = hooks_.applied_index();
  if (applied <= acked_applied_) return;
  node_->AckApplied(applied);
  acked_applied_ = applied;
  if (applied <= options_.log_retention_entries) return;
  const uint64_t keep_from = applied - options_.log_retention_entries;
  if (!store_->CanCompactBefore(keep_from)) return;
  // The apply writes are not synced: entries may leave the log only once
  // their effects are durable.
  Status s = hooks_.sync_applied();
  if (s.ok()) s = store_->CompactBefore(keep_from);
  if (!s.ok()) CAIRN_LOG(kWarn) << "log: keeping old segments: " << s.message();
}

}  // namespace cairn::server
