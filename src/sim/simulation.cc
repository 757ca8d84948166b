#include "sim/simulation.h"

#include <algorithm>
#include <sstream>

#include "common/check.h"

namespace cairn::sim {
namespace {

// Bound on the events of one run: a run that needs more is stuck in a loop.
constexpr uint64_t kMaxSteps = 20'000'000;
constexpr int64_t kProbeIntervalMs = 20;

bool Later(const auto& a, const auto& b) { return a.at != b.at ? a.at > b.at : a.seq > b.seq; }

}  // namespace

std::string SimStats::ToString() const {
  std::ostringstream out;
  out << "steps=" << steps << " sent=" << messages_sent << " delivered=" << messages_delivered
      << " proposals=" << proposals_accepted << " applied=" << entries_applied
      << " reads=" << reads_served << "/" << reads_started << " leaders=" << leaders
      << " crashes=" << crashes << " partitions=" << partitions
      << " snapshots=" << snapshots_installed << " conf_changes=" << conf_changes
      << " transfers=" << transfers << " recovery_ms=" << recovery_ms;
  return out.str();
}

Simulation::Simulation(SimOptions options)
    : options_(std::move(options)), rng_(options_.seed * 0x2545f4914f6cdd1dULL + 17) {}

Simulation::~Simulation() = default;

// ---------------------------------------------------------------- HostContext

void Simulation::Send(raft::Message m) {
  ++stats_.messages_sent;
  const bool own_term_append = m.type == raft::MessageType::kAppend && !m.entries.empty() &&
                               m.entries.back().term == m.term;
  if (Chance(options_.drop_rate) ||
      (own_term_append && Chance(options_.drop_own_term_appends_rate))) {
    if (m.type == raft::MessageType::kSnapshot) {
      ReportSnapshot(m, /*failed=*/true, now_ + Between(options_.min_delay_ms, options_.max_delay_ms));
    }
    return;
  }
  const int copies = Chance(options_.duplicate_rate) ? 2 : 1;
  for (int i = 0; i < copies; ++i) {
    int64_t at = now_ + Between(options_.min_delay_ms, options_.max_delay_ms);
    if (Chance(options_.long_delay_rate)) {
      // Reordering: this one overtakes nothing and is overtaken (a
      // reconnect, a retransmission on another path).
      at = now_ + Between(options_.max_delay_ms, options_.long_delay_ms);
    } else {
      // A peer link is a stream: messages arrive in the order sent.
      int64_t& last = link_last_delivery_[{m.from, m.to}];
      at = std::max(at, last);
      last = at;
    }
    const NodeId to = m.to;
    Schedule(EventType::kDeliver, at, to, 0, i + 1 < copies ? m : std::move(m));
  }
}

void Simulation::ReportSnapshot(const raft::Message& m, bool failed, int64_t at) {
  raft::Message report;
  report.to = m.to;
  report.reject = failed;
  Schedule(EventType::kSnapshotReport, at, m.from, 0, std::move(report));
}

void Simulation::ScheduleDisk(NodeId id, uint64_t incarnation, int64_t at) {
  Schedule(EventType::kDisk, at, id, incarnation);
}

int64_t Simulation::DiskLatency() { return Between(options_.disk_min_ms, options_.disk_max_ms); }

void Simulation::OnApply(NodeId id, const raft::Entry& entry) {
  ++stats_.entries_applied;
  (void)id;
  if (marker_index_ == 0 && healing_ && entry.data.rfind("live-", 0) == 0) {
    marker_index_ = entry.index;
    if (tracing()) Trace("liveness marker committed at " + std::to_string(entry.index));
  }
}

void Simulation::Trace(const std::string& line) {
  if (trace_) *trace_ << "[" << now_ << "ms #" << step_ << "] " << line << "\n";
}

// ---------------------------------------------------------------- events

void Simulation::Schedule(EventType type, int64_t at, NodeId node, uint64_t incarnation,
                          raft::Message message) {
  queue_.push_back(Event{at, next_seq_++, type, node, incarnation, std::move(message)});
  std::push_heap(queue_.begin(), queue_.end(), [](const Event& a, const Event& b) { return Later(a, b); });
}

void Simulation::ScheduleNext(EventType type, int64_t mean_interval_ms) {
  if (mean_interval_ms <= 0) return;
  Schedule(type, now_ + Between(1, 2 * mean_interval_ms));
}

Host& Simulation::AddHost(NodeId id) {
  auto host = std::make_unique<Host>(id, options_, static_cast<HostContext*>(this));
  Host& ref = *host;
  hosts_[id] = std::move(host);
  return ref;
}

std::vector<Host*> Simulation::UpHosts() {
  std::vector<Host*> out;
  for (auto& [id, host] : hosts_) {
    if (host->up()) out.push_back(host.get());
  }
  return out;
}

Host* Simulation::FindLeader() {
  Host* best = nullptr;
  uint64_t best_term = 0;
  for (auto& [id, host] : hosts_) {
    if (!host->up() || host->node().soft_state().role != raft::Role::kLeader) continue;
    const uint64_t term = host->node().hard_state().term;
    if (best == nullptr || term > best_term) {
      best = host.get();
      best_term = term;
    }
  }
  return best;
}

SimResult Simulation::Run() {
  raft::ConfState initial;
  NodeId id = 1;
  for (int i = 0; i < options_.voters; ++i) initial.voters.push_back(id++);
  for (int i = 0; i < options_.learners; ++i) initial.learners.push_back(id++);
  next_node_id_ = id;
  if (tracing()) Trace("options: " + options_.ToString());
  for (NodeId member = 1; member < next_node_id_; ++member) AddHost(member).Bootstrap(initial);
  for (auto& [member, host] : hosts_) {
    host->Start();
    Schedule(EventType::kTick, Between(1, options_.tick_ms), member, host->incarnation());
  }
  ScheduleNext(EventType::kPropose, options_.propose_interval_ms);
  ScheduleNext(EventType::kRead, options_.read_interval_ms);
  ScheduleNext(EventType::kPartition, options_.partition_interval_ms);
  ScheduleNext(EventType::kCrash, options_.crash_interval_ms);
  ScheduleNext(EventType::kTransfer, options_.transfer_interval_ms);
  if (options_.membership_changes) ScheduleNext(EventType::kConfChange, options_.conf_change_interval_ms);
  Schedule(EventType::kHealAll, options_.chaos_ms);

  SimResult result;
  bool live = false;
  while (!live && checker_.ok()) {
    if (queue_.empty()) {
      checker_.Fail(step_, "no events left");
      break;
    }
    std::pop_heap(queue_.begin(), queue_.end(), [](const Event& a, const Event& b) { return Later(a, b); });
    Event e = std::move(queue_.back());
    queue_.pop_back();
    const int64_t allowed = voters_live_ ? options_.learner_deadline_ms : options_.liveness_deadline_ms;
    if (e.at > options_.chaos_ms + allowed) {
      std::ostringstream out;
      out << "Liveness: no leader committed a new entry on every "
          << (voters_live_ ? "learner" : "voter") << " within " << allowed << "ms of healing";
      for (auto& [hid, host] : hosts_) {
        out << "\n  node " << hid << (retired_.count(hid) ? " (retired)" : "") << ": "
            << (host->up() ? host->node().GetStatus().ToString() : std::string("down"))
            << " applied=" << host->applied();
      }
      checker_.Fail(step_, out.str());
      break;
    }
    now_ = e.at;
    ++step_;
    if (e.type == EventType::kLivenessProbe) {
      live = OnLivenessProbe();
      if (!live) Schedule(EventType::kLivenessProbe, now_ + kProbeIntervalMs);
    } else {
      Dispatch(e);
    }
    if (step_ > kMaxSteps) checker_.Fail(step_, "too many steps");
  }
  result.ok = checker_.ok();
  if (!result.ok) result.failure = "at " + std::to_string(now_) + "ms, " + checker_.violation();
  stats_.steps = step_;
  stats_.leaders = checker_.leaders_elected();
  stats_.reads_served = checker_.reads_served();
  for (auto& [hid, host] : hosts_) stats_.snapshots_installed += host->snapshots_installed();
  result.stats = stats_;
  return result;
}

void Simulation::Dispatch(Event& e) {
  switch (e.type) {
    case EventType::kDeliver: {
      const bool snapshot = e.message.type == raft::MessageType::kSnapshot;
      auto it = hosts_.find(e.node);
      if (blocked_.count({e.message.from, e.node}) || it == hosts_.end() || !it->second->up()) {
        if (snapshot) ReportSnapshot(e.message, /*failed=*/true, now_);
        return;
      }
      ++stats_.messages_delivered;
      if (tracing()) Trace("deliver " + e.message.ToString());
      if (snapshot) ReportSnapshot(e.message, /*failed=*/false, now_);
      it->second->Deliver(std::move(e.message));
      return;
    }
    case EventType::kSnapshotReport: {
      auto it = hosts_.find(e.node);
      if (it == hosts_.end() || !it->second->up()) return;
      it->second->node().ReportSnapshot(
          e.message.to, e.message.reject ? raft::SnapshotStatus::kFailed : raft::SnapshotStatus::kFinished);
      it->second->Process();
      return;
    }
    case EventType::kTick: {
      Host& host = *hosts_.at(e.node);
      if (!host.up() || host.incarnation() != e.incarnation) return;  // restarted: new tick chain
      host.Tick();
      if (host.up()) {
        const int64_t next = Between(options_.tick_ms - options_.tick_jitter_ms,
                                     options_.tick_ms + options_.tick_jitter_ms);
        Schedule(EventType::kTick, now_ + std::max<int64_t>(1, next), e.node, host.incarnation());
      }
      return;
    }
    case EventType::kDisk:
      hosts_.at(e.node)->DiskDone(e.incarnation);
      return;
    case EventType::kPropose:
      OnPropose();
      ScheduleNext(EventType::kPropose, options_.propose_interval_ms);
      return;
    case EventType::kRead:
      OnRead();
      ScheduleNext(EventType::kRead, options_.read_interval_ms);
      return;
    case EventType::kPartition:
      if (!healing_ && !partitioned_) OnPartition();
      return;
    case EventType::kHeal:
      if (tracing() && partitioned_) Trace("partition heals");
      blocked_.clear();
      partitioned_ = false;
      if (!healing_) ScheduleNext(EventType::kPartition, options_.partition_interval_ms);
      return;
    case EventType::kCrash:
      if (healing_) return;
      OnCrash();
      ScheduleNext(EventType::kCrash, options_.crash_interval_ms);
      return;
    case EventType::kRestart: {
      Host& host = *hosts_.at(e.node);
      if (host.up() || retired_.count(e.node)) return;
      host.Start();
      Schedule(EventType::kTick, now_ + Between(1, options_.tick_ms), e.node, host.incarnation());
      return;
    }
    case EventType::kTransfer:
      if (healing_) return;
      OnTransfer();
      ScheduleNext(EventType::kTransfer, options_.transfer_interval_ms);
      return;
    case EventType::kConfChange:
      if (healing_) return;
      OnConfChange();
      ScheduleNext(EventType::kConfChange, options_.conf_change_interval_ms);
      return;
    case EventType::kHealAll:
      OnHealAll();
      Schedule(EventType::kLivenessProbe, now_ + kProbeIntervalMs);
      return;
    case EventType::kLivenessProbe:
      return;  // handled in Run
  }
}

// ---------------------------------------------------------------- workload

void Simulation::OnPropose() {
  auto up = UpHosts();
  if (up.empty()) return;
  Host* host = up[Uniform(up.size())];
  // A host that is not the leader forwards to the one it knows (as a server
  // would); the proposal fails if there is none.
  if (host->node().soft_state().role != raft::Role::kLeader) {
    auto it = hosts_.find(host->node().soft_state().leader);
    if (it == hosts_.end() || !it->second->up()) return;
    host = it->second.get();
  }
  std::vector<std::string> batch;
  const int n = static_cast<int>(Between(1, options_.max_batch));
  for (int i = 0; i < n; ++i) {
    batch.push_back("w" + std::to_string(options_.seed) + "." + std::to_string(next_write_++));
  }
  auto pos = host->node().ProposeBatch(std::move(batch));
  if (pos.ok()) stats_.proposals_accepted += n;
  host->Process();
}

void Simulation::OnRead() {
  auto up = UpHosts();
  if (up.empty()) return;
  Host* host = up[Uniform(up.size())];
  ++stats_.reads_started;
  host->StartRead("r" + std::to_string(next_read_++));
}

void Simulation::OnTransfer() {
  Host* leader = FindLeader();
  if (leader == nullptr) return;
  ++stats_.transfers;
  if (Chance(0.2)) {
    if (tracing()) Trace("node " + std::to_string(leader->id()) + " asked to step down");
    (void)leader->node().StepDown();
  } else {
    const raft::ConfState conf = leader->node().GetStatus().conf_state;
    const NodeId target = conf.voters[Uniform(conf.voters.size())];
    if (tracing()) {
      Trace("leader " + std::to_string(leader->id()) + " asked to transfer to " + std::to_string(target));
    }
    (void)leader->node().TransferLeader(target);
  }
  leader->Process();
}

void Simulation::OnConfChange() {
  Host* leader = FindLeader();
  if (leader == nullptr) return;
  const raft::ConfState conf = leader->node().GetStatus().conf_state;
  const std::vector<raft::ConfChange> choices =
      ConfChangeChoices(conf, static_cast<int>(hosts_.size()), options_.max_nodes, next_node_id_);
  if (choices.empty()) return;
  const raft::ConfChange change = choices[Uniform(choices.size())];
  auto pos = leader->node().ProposeConfChange(change);
  if (tracing()) {
    Trace("leader " + std::to_string(leader->id()) + " proposes change " +
          std::to_string(static_cast<int>(change.type)) + " of node " +
          std::to_string(change.node_id) + ": " + (pos.ok() ? "ok" : pos.status().ToString()));
  }
  if (pos.ok()) {
    ++stats_.conf_changes;
    if (change.node_id == next_node_id_) {
      // A new server starts with empty storage and waits for the leader.
      ++next_node_id_;
      Host& joiner = AddHost(change.node_id);
      joiner.Start();
      Schedule(EventType::kTick, now_ + Between(1, options_.tick_ms), joiner.id(), joiner.incarnation());
    }
  }
  leader->Process();
}

// ---------------------------------------------------------------- faults

void Simulation::OnPartition() {
  std::vector<NodeId> ids;
  for (auto& [id, host] : hosts_) {
    if (!retired_.count(id)) ids.push_back(id);
  }
  if (ids.size() < 2) return;
  Host* leader = FindLeader();
  std::ostringstream what;
  if (leader != nullptr && Chance(options_.target_leader_rate)) {
    // Strand the leader with a minority: it keeps appending entries that
    // reach only that minority.
    std::set<NodeId> side = {leader->id()};
    const size_t minority = (ids.size() - 1) / 2;
    while (side.size() < 1 + Uniform(minority + 1)) side.insert(ids[Uniform(ids.size())]);
    for (NodeId a : ids) {
      for (NodeId b : ids) {
        if (side.count(a) != side.count(b)) blocked_.insert({a, b});
      }
    }
    what << "leader " << leader->id() << " stranded with " << side.size() - 1 << " nodes";
  } else if (const uint64_t kind = Uniform(3); kind == 0) {
    const NodeId alone = ids[Uniform(ids.size())];
    for (NodeId other : ids) {
      if (other == alone) continue;
      blocked_.insert({alone, other});
      blocked_.insert({other, alone});
    }
    what << "node " << alone << " is isolated";
  } else if (kind == 1) {
    std::set<NodeId> side;
    for (NodeId n : ids) {
      if (Chance(0.5)) side.insert(n);
    }
    for (NodeId a : ids) {
      for (NodeId b : ids) {
        if (side.count(a) != side.count(b)) blocked_.insert({a, b});
      }
    }
    what << "split off " << side.size() << " of " << ids.size() << " nodes";
  } else {
    const int links = static_cast<int>(Between(1, 3));
    what << "one-way cuts:";
    for (int i = 0; i < links; ++i) {
      const NodeId a = ids[Uniform(ids.size())];
      const NodeId b = ids[Uniform(ids.size())];
      if (a == b) continue;
      blocked_.insert({a, b});
      what << " " << a << "->" << b;
    }
  }
  partitioned_ = true;
  ++stats_.partitions;
  if (tracing()) Trace("partition: " + what.str());
  Schedule(EventType::kHeal, now_ + Between(50, std::max<int64_t>(50, options_.partition_max_ms)));
}

void Simulation::OnCrash() {
  auto up = UpHosts();
  if (up.empty()) return;
  Host* host = up[Uniform(up.size())];
  Host* leader = FindLeader();
  if (leader != nullptr && Chance(options_.target_leader_rate)) host = leader;
  host->Crash();
  ++stats_.crashes;
  Schedule(EventType::kRestart, now_ + Between(10, std::max<int64_t>(10, options_.restart_max_ms)),
           host->id());
}

void Simulation::OnHealAll() {
  healing_ = true;
  heal_started_at_ = now_;
  if (tracing()) Trace("--- heal: network repaired, all nodes restart, faults stop ---");
  blocked_.clear();
  partitioned_ = false;
  options_.drop_rate = 0;
  options_.duplicate_rate = 0;
  options_.long_delay_rate = 0;
  options_.drop_own_term_appends_rate = 0;
  for (auto& [id, host] : hosts_) {
    if (host->up() || retired_.count(id)) continue;
    host->Start();
    Schedule(EventType::kTick, now_ + Between(1, options_.tick_ms), id, host->incarnation());
  }
  liveness_marker_.clear();
}

bool Simulation::OnLivenessProbe() {
  Host* leader = FindLeader();
  if (leader == nullptr) return false;
  const raft::NodeStatus status = leader->node().GetStatus();
  // Servers removed by a committed change shut down (as a host would once it
  // learns so); left running they could disrupt elections for ever.
  auto committed_conf = leader->node().ConfStateAt(status.commit);
  if (committed_conf.ok()) {
    for (auto& [id, host] : hosts_) {
      if (status.conf_state.Contains(id) || committed_conf->Contains(id) || retired_.count(id)) continue;
      retired_.insert(id);
      host->Crash();
      if (tracing()) Trace("node " + std::to_string(id) + " retires (removed)");
    }
  }
  // Propose a marker once per leader term; the first committed one counts.
  const std::string marker = "live-" + std::to_string(status.term);
  if (liveness_marker_ != marker) {
    auto pos = leader->node().Propose(marker);
    if (pos.ok()) liveness_marker_ = marker;
    leader->Process();
  }
  // Done when a marker is committed and every member applied past it.
  if (marker_index_ == 0) return false;
  auto done = [&](NodeId id) {
    auto it = hosts_.find(id);
    return it != hosts_.end() && it->second->up() && it->second->applied() >= marker_index_;
  };
  for (NodeId id : status.conf_state.voters) {
    if (!done(id)) return false;
  }
  if (!voters_live_) {
    voters_live_ = true;
    stats_.recovery_ms = now_ - heal_started_at_;
  }
  for (NodeId id : status.conf_state.learners) {
    if (!done(id)) return false;
  }
  return true;
}

std::vector<raft::ConfChange> ConfChangeChoices(const raft::ConfState& conf, int members, int max_nodes,
                                                NodeId next_id) {
  std::vector<raft::ConfChange> choices;
  if (members < max_nodes) choices.push_back({raft::ConfChangeType::kAddLearner, next_id, "new"});
  for (NodeId l : conf.learners) {
    if (conf.voters.size() < 5) choices.push_back({raft::ConfChangeType::kAddVoter, l, ""});
    choices.push_back({raft::ConfChangeType::kRemoveNode, l, ""});
  }
  if (conf.voters.size() > 1) {
    for (NodeId v : conf.voters) {
      choices.push_back({raft::ConfChangeType::kRemoveNode, v, ""});
      choices.push_back({raft::ConfChangeType::kAddLearner, v, "demote"});
    }
  }
  return choices;
}

}  // namespace cairn::sim
