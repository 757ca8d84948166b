// A deterministic simulation of a Raft cluster (FoundationDB / TigerBeetle
// style): one seed drives the network (drops, delays, reordering,
// duplication, symmetric and one-way partitions), the disks (fsync latency,
// crashes that lose unsynced writes), the clocks (tick jitter), the workload
// (proposals, ReadIndex reads, leader transfers, membership changes) and the
// host's snapshots. The SafetyChecker runs after every step.
//
// A run has two phases. Chaos: faults and workload for SimOptions::chaos_ms.
// Heal: the network is repaired, crashed nodes restart, faults stop, and the
// cluster must elect a leader and commit a new entry on every member within
// SimOptions::liveness_deadline_ms (liveness).
//
// Usage:
//   auto options = SimOptions::ForSeed("mixed", seed);
//   SimResult r = Simulation(*options).Run();
//   if (!r.ok) print r.failure and options->Repro();
//
// Thread-safety: none; one Simulation per thread.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <ostream>
#include <set>
#include <string>
#include <vector>

#include "raft/random.h"
#include "sim/checker.h"
#include "sim/host.h"
#include "sim/sim_options.h"

namespace cairn::sim {

struct SimStats {
  uint64_t steps = 0;
  uint64_t messages_sent = 0;
  uint64_t messages_delivered = 0;
  uint64_t entries_applied = 0;  // on any node
  uint64_t proposals_accepted = 0;
  uint64_t reads_started = 0;
  uint64_t reads_served = 0;
  uint64_t leaders = 0;
  uint64_t crashes = 0;
  uint64_t partitions = 0;
  uint64_t snapshots_installed = 0;
  uint64_t conf_changes = 0;
  uint64_t transfers = 0;
  int64_t recovery_ms = 0;  // heal start -> liveness reached

  std::string ToString() const;
};

struct SimResult {
  bool ok = true;
  std::string failure;  // the first violation, if !ok
  SimStats stats;
};

class Simulation final : private HostContext {
 public:
  explicit Simulation(SimOptions options);
  ~Simulation() override;

  // Writes a line per event to `out` (slow; for reproducing one seed).
  void set_trace(std::ostream* out) { trace_ = out; }
  SimResult Run();

 private:
  enum class EventType {
    kDeliver, kTick, kDisk, kPropose, kRead, kPartition, kHeal, kCrash, kRestart,
    kTransfer, kConfChange, kHealAll, kLivenessProbe, kSnapshotReport,
  };
  struct Event {
    int64_t at;
    uint64_t seq;
    EventType type;
    NodeId node;
    uint64_t incarnation;
    raft::Message message;
  };

  // HostContext.
  int64_t Now() const override { return now_; }
  uint64_t StepNumber() const override { return step_; }
  void Send(raft::Message m) override;
  void ScheduleDisk(NodeId id, uint64_t incarnation, int64_t at) override;
  int64_t DiskLatency() override;
  SafetyChecker& checker() override { return checker_; }
  void OnApply(NodeId id, const raft::Entry& entry) override;
  bool tracing() const override { return trace_ != nullptr; }
  void Trace(const std::string& line) override;

  void Schedule(EventType type, int64_t at, NodeId node = 0, uint64_t incarnation = 0,
                raft::Message message = {});
  void ScheduleNext(EventType type, int64_t mean_interval_ms);
  void Dispatch(Event& e);
  // The transport's answer to a snapshot sender: delivered or lost.
  void ReportSnapshot(const raft::Message& m, bool failed, int64_t at);
  Host& AddHost(NodeId id);
  Host* FindLeader();
  std::vector<Host*> UpHosts();

  void OnPropose();
  void OnRead();
  void OnPartition();
  void OnCrash();
  void OnTransfer();
  void OnConfChange();
  void OnHealAll();
  // Returns true once liveness is reached.
  bool OnLivenessProbe();

  uint64_t Uniform(uint64_t bound) { return rng_.Uniform(bound); }
  int64_t Between(int64_t lo, int64_t hi) {
    return lo + static_cast<int64_t>(rng_.Uniform(static_cast<uint64_t>(hi - lo + 1)));
  }
  bool Chance(double p) { return static_cast<double>(rng_.Uniform(1000000)) < p * 1e6; }

  SimOptions options_;
  raft::SplitMix64 rng_;
  SafetyChecker checker_;
  std::ostream* trace_ = nullptr;

  int64_t now_ = 0;
  uint64_t step_ = 0;
  uint64_t next_seq_ = 0;
  std::vector<Event> queue_;  // a min-heap on (at, seq)

  std::map<NodeId, std::unique_ptr<Host>> hosts_;
  NodeId next_node_id_ = 1;
  std::set<NodeId> retired_;                    // removed members, stopped for good
  std::set<std::pair<NodeId, NodeId>> blocked_;  // (from, to) links that drop everything
  std::map<std::pair<NodeId, NodeId>, int64_t> link_last_delivery_;  // FIFO per link
  bool partitioned_ = false;
  bool healing_ = false;
  uint64_t next_write_ = 0;
  uint64_t next_read_ = 0;
  int64_t heal_started_at_ = 0;
  std::string liveness_marker_;  // the marker proposed in the current leader's term
  uint64_t marker_index_ = 0;    // index of the first marker applied anywhere
  bool voters_live_ = false;     // every voter applied the marker
  SimStats stats_;
};

// The membership changes a nemesis may propose to a cluster with `conf`: add a
// learner (id `next_id`) while there are fewer than `max_nodes` members, promote or
// remove a learner, remove or demote a voter while more than one is left.
std::vector<raft::ConfChange> ConfChangeChoices(const raft::ConfState& conf, int members, int max_nodes,
                                                NodeId next_id);

}  // namespace cairn::sim
