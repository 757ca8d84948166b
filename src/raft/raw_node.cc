#include "raft/raw_node.h"

#include <algorithm>

#include "common/check.h"
#include "raft/raft.h"

namespace cairn::raft {

Result<std::unique_ptr<RawNode>> RawNode::Create(const Config& config, Storage* storage) {
  if (Status s = config.Validate(); !s.ok()) return s;
  if (storage == nullptr) return errors::InvalidConfig("no storage");
  auto raft = std::make_unique<Raft>(config, storage);
  if (Status s = raft->Init(); !s.ok()) return s;
  return std::unique_ptr<RawNode>(new RawNode(std::move(raft)));
}

RawNode::RawNode(std::unique_ptr<Raft> raft) : raft_(std::move(raft)) {
  prev_soft_state_ = raft_->soft_state();
  prev_hard_state_ = raft_->hard_state();
  durable_term_ = prev_hard_state_.term;
  durable_vote_ = prev_hard_state_.vote;
}

RawNode::~RawNode() = default;

void RawNode::Tick() { raft_->Tick(); }

Status RawNode::Step(Message message) { return raft_->Step(std::move(message)); }

Result<ProposalPosition> RawNode::Propose(std::string data) {
  std::vector<std::string> batch;
  batch.push_back(std::move(data));
  return ProposeBatch(std::move(batch));
}

Result<ProposalPosition> RawNode::ProposeBatch(std::vector<std::string> data) {
  const size_t count = data.size();
  auto first = raft_->Propose(std::move(data));
  if (!first.ok()) return first.status();
  return ProposalPosition{raft_->term(), *first, *first + count - 1};
}

Result<ProposalPosition> RawNode::ProposeConfChange(const ConfChange& change) {
  auto index = raft_->ProposeConfChange(change);
  if (!index.ok()) return index.status();
  return ProposalPosition{raft_->term(), *index, *index};
}

Status RawNode::ReadIndex(std::string request_context) {
  return raft_->ReadIndex(std::move(request_context));
}

void RawNode::Campaign() { raft_->Campaign(); }

Status RawNode::TransferLeader(NodeId transferee) { return raft_->TransferLeader(transferee); }

Status RawNode::StepDown() { return raft_->StepDown(); }

void RawNode::ReportUnreachable(NodeId id) { raft_->ReportUnreachable(id); }

void RawNode::ReportSnapshot(NodeId id, SnapshotStatus status) {
  raft_->ReportSnapshot(id, status == SnapshotStatus::kFailed);
}

bool RawNode::HasReady() const {
  const RaftLog& log = raft_->log();
  return raft_->HasPendingFlush() || raft_->HasMessages() || raft_->HasReadStates() ||
         raft_->soft_state() != prev_soft_state_ || raft_->hard_state() != prev_hard_state_ ||
         log.HasSnapshotToPersist() || log.HasEntriesToPersist() ||
         log.HasNextCommittedEntries();
}

Ready RawNode::GetReady() {
  Ready rd;
  if (!HasReady()) return rd;
  raft_->FlushPending();
  rd.number = next_ready_number_++;

  const SoftState soft = raft_->soft_state();
  if (soft != prev_soft_state_) {
    rd.soft_state = soft;
    prev_soft_state_ = soft;
  }
  const HardState hard = raft_->hard_state();
  if (hard != prev_hard_state_) {
    rd.hard_state = hard;
    rd.must_sync = hard.term != prev_hard_state_.term || hard.vote != prev_hard_state_.vote;
    prev_hard_state_ = hard;
  }

  RaftLog& log = raft_->log();
  PendingWrite write{rd.number, 0, 0, 0, hard.term, hard.vote};
  if (log.HasSnapshotToPersist()) {
    rd.snapshot = *log.UnstableSnapshot();
    write.snapshot_index = rd.snapshot->metadata.index;
    rd.must_sync = true;
  }
  rd.entries = log.EntriesToPersist();
  if (!rd.entries.empty()) {
    write.last_index = rd.entries.back().index;
    write.last_term = rd.entries.back().term;
    rd.must_sync = true;
  }
  log.AcceptInProgress();
  if (write.snapshot_index != 0 || write.last_index != 0 || rd.must_sync) {
    pending_writes_.push_back(write);
  }

  // After AcceptInProgress: this Ready's own entries may be applied (after
  // they are durable, by the contract).
  rd.committed_entries = log.NextCommittedEntries();
  if (!rd.committed_entries.empty()) {
    log.AcceptApplying(rd.committed_entries.back().index);
    if (raft_->role() == Role::kLeader) raft_->ReduceUncommittedSize(rd.committed_entries);
  }
  rd.messages = raft_->TakeMessages();
  rd.persisted_messages = raft_->TakeMessagesAfterPersist();
  if (hard.term != durable_term_ || hard.vote != durable_vote_) {
    // Whatever a node says in a term it might forget after a crash could be
    // contradicted by its next incarnation in the same term.
    rd.persisted_messages.insert(rd.persisted_messages.begin(),
                                 std::make_move_iterator(rd.messages.begin()),
                                 std::make_move_iterator(rd.messages.end()));
    rd.messages.clear();
  }
  rd.read_states = raft_->TakeReadStates();
  return rd;
}

void RawNode::AckPersisted(uint64_t ready_number) {
  CHECK(ready_number < next_ready_number_) << "ack of Ready " << ready_number << " never handed out";
  RaftLog& log = raft_->log();
  size_t done = 0;
  for (; done < pending_writes_.size() && pending_writes_[done].number <= ready_number; ++done) {
    const PendingWrite& w = pending_writes_[done];
    if (w.snapshot_index != 0) log.StableSnapTo(w.snapshot_index);
    if (w.last_index != 0) log.StableTo(w.last_index, w.last_term);
    durable_term_ = w.term;
    durable_vote_ = w.vote;
  }
  pending_writes_.erase(pending_writes_.begin(), pending_writes_.begin() + done);
  raft_->OnPersisted();
}

void RawNode::AckApplied(uint64_t index) { raft_->OnApplied(index); }

void RawNode::Advance(const Ready& ready) {
  if (ready.number == 0) return;
  AckPersisted(ready.number);
  if (!ready.committed_entries.empty()) {
    AckApplied(ready.committed_entries.back().index);
  } else if (ready.snapshot) {
    AckApplied(ready.snapshot->metadata.index);
  }
}

NodeStatus RawNode::GetStatus() const { return raft_->GetStatus(); }

HardState RawNode::hard_state() const { return raft_->hard_state(); }

SoftState RawNode::soft_state() const { return raft_->soft_state(); }

Result<ConfState> RawNode::ConfStateAt(uint64_t index) const { return raft_->ConfStateAt(index); }

}  // namespace cairn::raft
