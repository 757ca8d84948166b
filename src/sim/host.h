// One simulated server: the host loop around a RawNode, as src/server/ will
// run it, but with a fake disk and network provided by the simulation.
//
// The disk: `durable_` is what survives a crash. A Ready's writes reach it
// only when the simulated fsync completes (asynchronous mode: after a random
// latency, in Ready order, while the host keeps taking Readys; synchronous
// mode: at once). A crash discards every write still in flight, and with it
// the persisted_messages waiting for it.
//
// The state machine is the chain hash of the applied entries (see
// checker.h), so two nodes agree on their state iff they applied the same
// prefix. Snapshots carry (index, hash) as their data.
//
// Thread-safety: none.
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <set>
#include <memory>
#include <string>

#include "raft/memory_storage.h"
#include "raft/random.h"
#include "raft/raw_node.h"
#include "sim/checker.h"
#include "sim/sim_options.h"

namespace cairn::sim {

// What a host needs from the simulated world.
class HostContext {
 public:
  virtual ~HostContext() = default;
  virtual int64_t Now() const = 0;
  virtual uint64_t StepNumber() const = 0;
  virtual void Send(raft::Message m) = 0;
  // Calls Host::DiskDone(incarnation) for `id` at time `at`.
  virtual void ScheduleDisk(NodeId id, uint64_t incarnation, int64_t at) = 0;
  virtual int64_t DiskLatency() = 0;
  virtual SafetyChecker& checker() = 0;
  virtual void OnApply(NodeId id, const raft::Entry& entry) = 0;
  virtual bool tracing() const = 0;
  virtual void Trace(const std::string& line) = 0;
};

class Host {
 public:
  Host(NodeId id, const SimOptions& options, HostContext* context);

  // A founding member writes the initial membership; a joiner starts empty.
  void Bootstrap(const raft::ConfState& initial);
  // Creates the RawNode from what is durable (a start or a restart).
  void Start();
  // Loses everything not durable: the node, in-flight writes, the state machine.
  void Crash();

  NodeId id() const { return id_; }
  bool up() const { return node_ != nullptr; }
  raft::RawNode& node() { return *node_; }
  uint64_t incarnation() const { return incarnation_; }
  uint64_t applied() const { return applied_index_; }
  uint64_t snapshots_installed() const { return snapshots_installed_; }

  void Deliver(raft::Message m);
  void Tick();
  // The oldest in-flight write is durable (ignored if `incarnation` is stale).
  void DiskDone(uint64_t incarnation);
  // A client read through ReadIndex; checked when served.
  void StartRead(const std::string& context);
  // Runs the Ready loop until the node has nothing more to hand out.
  void Process();

 private:
  struct PendingRead {
    uint64_t committed_at_start = 0;
    uint64_t index = 0;
    bool confirmed = false;
  };

  // Updates the checker's view of the log; returns the new entries' marks.
  std::vector<SafetyChecker::EntryMark> Observe(const raft::Ready& rd);
  // The Ready's writes are durable: make them visible, send what waited,
  // apply, acknowledge.
  void Complete(raft::Ready& rd, const std::vector<SafetyChecker::EntryMark>& marks);
  void ServeReads();
  void MaybeSnapshot();
  void RestoreStateMachine();

  const NodeId id_;
  const SimOptions& options_;
  HostContext* const context_;

  raft::MemoryStorage durable_;
  std::unique_ptr<raft::RawNode> node_;
  std::unique_ptr<raft::SplitMix64> random_;
  uint64_t incarnation_ = 0;
  struct PendingWrite {
    raft::Ready ready;
    std::vector<SafetyChecker::EntryMark> marks;  // chain hashes of ready.entries
  };
  std::deque<PendingWrite> writes_;  // handed to the disk, not yet durable
  int64_t last_write_done_at_ = 0;

  uint64_t applied_index_ = 0;
  uint64_t state_hash_ = 0;
  LogShadow shadow_;
  std::map<std::string, PendingRead> reads_;
  // Members whose removal this host has applied: their messages are dropped,
  // as etcd's transport does, so a removed node that never learned it was
  // removed cannot disrupt elections for ever. Part of the state machine (in
  // snapshots, like etcd's membership store); ids are never reused.
  std::set<NodeId> removed_;
  uint64_t snapshots_installed_ = 0;
};

// Snapshot data of the simulated state machine: applied index, state hash,
// removed members.
std::string EncodeState(uint64_t index, uint64_t hash, const std::set<NodeId>& removed);
bool DecodeState(const std::string& data, uint64_t* index, uint64_t* hash,
                 std::set<NodeId>* removed);

}  // namespace cairn::sim
