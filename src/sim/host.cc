#include "sim/host.h"

#include <algorithm>
#include <sstream>

#include "common/check.h"

namespace cairn::sim {

std::string EncodeState(uint64_t index, uint64_t hash, const std::set<NodeId>& removed) {
  std::string out = std::to_string(index) + ":" + std::to_string(hash) + ":";
  for (NodeId id : removed) out += std::to_string(id) + ",";
  return out;
}

bool DecodeState(const std::string& data, uint64_t* index, uint64_t* hash,
                 std::set<NodeId>* removed) {
  const size_t first = data.find(':');
  const size_t second = first == std::string::npos ? first : data.find(':', first + 1);
  if (second == std::string::npos) return false;
  *index = std::stoull(data.substr(0, first));
  *hash = std::stoull(data.substr(first + 1, second - first - 1));
  removed->clear();
  for (size_t pos = second + 1; pos < data.size();) {
    const size_t comma = data.find(',', pos);
    if (comma == std::string::npos) return false;
    removed->insert(std::stoull(data.substr(pos, comma - pos)));
    pos = comma + 1;
  }
  return true;
}

Host::Host(NodeId id, const SimOptions& options, HostContext* context)
    : id_(id), options_(options), context_(context) {}

void Host::Bootstrap(const raft::ConfState& initial) {
  CHECK(durable_.Bootstrap(initial).ok());
}

void Host::RestoreStateMachine() {
  applied_index_ = 0;
  state_hash_ = 0;
  removed_.clear();
  const raft::Snapshot& snap = durable_.snapshot();
  if (!snap.empty()) {
    CHECK(DecodeState(snap.data, &applied_index_, &state_hash_, &removed_)) << "bad snapshot data";
    CHECK(applied_index_ == snap.metadata.index) << "snapshot data does not match its index";
  }
}

void Host::Start() {
  CHECK(!up()) << "node " << id_ << " already up";
  ++incarnation_;
  writes_.clear();
  reads_.clear();
  last_write_done_at_ = 0;
  RestoreStateMachine();

  raft::Config config = options_.raft;
  config.id = id_;
  config.applied = durable_.snapshot().metadata.index;
  random_ = std::make_unique<raft::SplitMix64>(options_.seed * 1000003 + id_ * 7919 + incarnation_);
  config.random = random_.get();
  auto node = raft::RawNode::Create(config, &durable_);
  CHECK(node.ok()) << "restart of node " << id_ << ": " << node.status().ToString();
  node_ = std::move(node).value();

  // The checker's view of this node's log is now what was durable.
  const raft::Snapshot& snap = durable_.snapshot();
  shadow_.Reset(snap.metadata.index, snap.metadata.term, state_hash_);
  // (Entries kept behind the snapshot are covered by it.)
  const uint64_t first = std::max(durable_.FirstIndex(), snap.metadata.index + 1);
  const uint64_t last = durable_.LastIndex();
  if (last >= first) {
    auto entries = durable_.Entries(first, last + 1, UINT64_MAX);
    CHECK(entries.ok());
    CHECK(shadow_.Append(*entries));
    std::vector<SafetyChecker::EntryMark> marks;
    for (uint64_t i = first; i <= last; ++i) marks.push_back({i, shadow_.TermAt(i), shadow_.HashAt(i)});
    context_->checker().OnDurableEntries(context_->StepNumber(), id_, marks);
  }
  SafetyChecker& checker = context_->checker();
  checker.OnRestart(id_);
  checker.OnApplied(context_->StepNumber(), id_, applied_index_, state_hash_);
  if (context_->tracing()) {
    context_->Trace("node " + std::to_string(id_) + " starts: " + node_->GetStatus().ToString());
  }
  Process();
}

void Host::Crash() {
  if (!up()) return;
  if (context_->tracing()) {
    context_->Trace("node " + std::to_string(id_) + " crashes, losing " +
                    std::to_string(writes_.size()) + " unsynced writes");
  }
  node_.reset();
  writes_.clear();
  reads_.clear();
  ++incarnation_;  // pending disk completions are for the dead incarnation
}

void Host::Deliver(raft::Message m) {
  if (!up() || removed_.count(m.from)) return;
  Status s = node_->Step(std::move(m));
  CHECK(s.ok()) << "node " << id_ << " rejected a message: " << s.ToString();
  Process();
}

void Host::Tick() {
  if (!up()) return;
  node_->Tick();
  Process();
}

void Host::StartRead(const std::string& context) {
  if (!up()) return;
  const uint64_t committed = context_->checker().MaxCommitted();
  if (!node_->ReadIndex(context).ok()) return;
  reads_[context] = PendingRead{committed, 0, false};
  Process();
}

void Host::Process() {
  while (up() && node_->HasReady()) {
    raft::Ready rd = node_->GetReady();
    std::vector<SafetyChecker::EntryMark> marks = Observe(rd);
    for (raft::Message& m : rd.messages) context_->Send(std::move(m));
    for (const raft::ReadState& rs : rd.read_states) {
      auto it = reads_.find(rs.request_context);
      if (it == reads_.end()) continue;  // from before a crash
      it->second.index = rs.index;
      it->second.confirmed = true;
    }
    rd.read_states.clear();
    if (options_.async_persistence) {
      // FIFO disk: a write completes after the ones before it.
      last_write_done_at_ = std::max(last_write_done_at_, context_->Now() + context_->DiskLatency());
      context_->ScheduleDisk(id_, incarnation_, last_write_done_at_);
      writes_.push_back(PendingWrite{std::move(rd), std::move(marks)});
    } else {
      Complete(rd, marks);
    }
    ServeReads();
  }
}

std::vector<SafetyChecker::EntryMark> Host::Observe(const raft::Ready& rd) {
  std::vector<SafetyChecker::EntryMark> marks;
  SafetyChecker& checker = context_->checker();
  const uint64_t step = context_->StepNumber();
  if (rd.snapshot) {
    uint64_t index = 0;
    uint64_t hash = 0;
    std::set<NodeId> removed;
    CHECK(DecodeState(rd.snapshot->data, &index, &hash, &removed));
    shadow_.Reset(rd.snapshot->metadata.index, rd.snapshot->metadata.term, hash);
  }
  if (!rd.entries.empty()) {
    if (!shadow_.Append(rd.entries)) {
      checker.Fail(step, "node " + std::to_string(id_) + " handed out entries from " +
                             std::to_string(rd.entries.front().index) + " after a log ending at " +
                             std::to_string(shadow_.last_index()));
      return marks;
    }
    for (const raft::Entry& e : rd.entries) {
      marks.push_back({e.index, e.term, shadow_.HashAt(e.index)});
    }
  }
  if (rd.soft_state && rd.soft_state->role == raft::Role::kLeader) {
    checker.OnLeader(step, id_, node_->hard_state().term, shadow_);
  }
  if (rd.hard_state) checker.OnCommit(step, id_, rd.hard_state->term, shadow_, rd.hard_state->commit);
  if (context_->tracing() && (rd.soft_state || rd.snapshot)) {
    std::ostringstream out;
    out << "node " << id_;
    if (rd.soft_state) {
      out << " is " << raft::RoleName(rd.soft_state->role) << " (leader " << rd.soft_state->leader
          << ", term " << node_->hard_state().term << ")";
    }
    if (rd.snapshot) out << " installs snapshot " << rd.snapshot->metadata.index;
    context_->Trace(out.str());
  }
  return marks;
}

void Host::DiskDone(uint64_t incarnation) {
  if (incarnation != incarnation_ || !up()) return;
  CHECK(!writes_.empty()) << "disk completion without a write";
  PendingWrite write = std::move(writes_.front());
  writes_.pop_front();
  Complete(write.ready, write.marks);
  Process();
}

void Host::Complete(raft::Ready& rd, const std::vector<SafetyChecker::EntryMark>& marks) {
  SafetyChecker& checker = context_->checker();
  const uint64_t step = context_->StepNumber();
  const uint64_t applied_before = applied_index_;
  if (rd.snapshot) {
    CHECK(durable_.ApplySnapshot(*rd.snapshot).ok()) << "node " << id_ << " snapshot out of date";
    RestoreStateMachine();
    ++snapshots_installed_;
    checker.OnApplied(step, id_, applied_index_, state_hash_);
  }
  CHECK(durable_.Append(rd.entries).ok());
  checker.OnDurableEntries(step, id_, marks);
  if (rd.hard_state) durable_.SetHardState(*rd.hard_state);
  // Durable now: what promised it may go out.
  for (raft::Message& m : rd.persisted_messages) context_->Send(std::move(m));
  for (const raft::Entry& e : rd.committed_entries) {
    CHECK(e.index == applied_index_ + 1)
        << "node " << id_ << " applies " << e.index << " after " << applied_index_;
    state_hash_ = ChainHash(state_hash_, e);
    applied_index_ = e.index;
    if (e.type == raft::EntryType::kConfChange) {
      auto change = raft::DecodeConfChange(e.data);
      if (change.ok() && change->type == raft::ConfChangeType::kRemoveNode) {
        removed_.insert(change->node_id);
      }
    }
    checker.OnApplied(step, id_, applied_index_, state_hash_);
    context_->OnApply(id_, e);
  }
  node_->AckPersisted(rd.number);
  if (applied_index_ != applied_before) node_->AckApplied(applied_index_);
  MaybeSnapshot();
  ServeReads();
}

void Host::ServeReads() {
  for (auto it = reads_.begin(); it != reads_.end();) {
    const PendingRead& r = it->second;
    if (r.confirmed && applied_index_ >= r.index) {
      context_->checker().OnReadServed(context_->StepNumber(), id_, it->first, r.index,
                                       r.committed_at_start, applied_index_);
      it = reads_.erase(it);
    } else {
      ++it;
    }
  }
}

void Host::MaybeSnapshot() {
  if (options_.snapshot_every <= 0) return;
  const uint64_t snapshot_index = durable_.snapshot().metadata.index;
  if (applied_index_ < snapshot_index + options_.snapshot_every) return;
  auto conf = node_->ConfStateAt(applied_index_);
  // Compacted: the node has accepted a newer snapshot from the leader that
  // this host is about to install; no point in snapshotting older state.
  if (!conf.ok()) {
    CHECK(raft::IsError(conf.status(), raft::ErrorKind::kCompacted)) << conf.status().ToString();
    return;
  }
  CHECK(durable_.CreateSnapshot(applied_index_, *conf, EncodeState(applied_index_, state_hash_, removed_)).ok());
  const uint64_t keep = static_cast<uint64_t>(options_.snapshot_keep);
  if (applied_index_ > keep && applied_index_ - keep >= durable_.FirstIndex()) {
    CHECK(durable_.Compact(applied_index_ - keep).ok());
  }
}

}  // namespace cairn::sim
