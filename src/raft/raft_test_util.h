// Helpers for the Raft unit tests: a node with in-memory storage that
// persists every Ready at once, and a lossless in-memory network in the style
// of etcd-raft's `network` (deliver until quiet, with cut links and dropped
// message types). The randomized, fault-injecting simulator is src/sim/.
//
// Test-only; header-only so it stays out of the library. Thread-safety: none.
#pragma once

#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "common/check.h"
#include "raft/memory_storage.h"
#include "raft/raw_node.h"

namespace cairn::raft::testing {

inline Config TestConfig(NodeId id, int election = 10, int heartbeat = 1) {
  Config c;
  c.id = id;
  c.election_timeout_ticks = election;
  c.heartbeat_interval_ticks = heartbeat;
  c.max_size_per_msg_bytes = 1 << 20;
  c.max_inflight_msgs = 256;
  return c;
}

inline ConfState Voters(std::vector<NodeId> voters, std::vector<NodeId> learners = {}) {
  return ConfState{std::move(voters), std::move(learners)};
}

// One node whose host persists and applies synchronously.
class TestNode {
 public:
  // A founding member (bootstrapped storage), or a joiner if `conf` is empty.
  TestNode(const Config& config, const ConfState& conf, uint64_t seed = 0)
      : random_(seed != 0 ? seed : config.id * 7919 + 1) {
    storage_ = std::make_unique<MemoryStorage>();
    if (!conf.voters.empty()) {
      CHECK(storage_->Bootstrap(conf).ok());
    }
    Start(config);
  }
  // Restart from existing storage.
  TestNode(const Config& config, std::unique_ptr<MemoryStorage> storage)
      : random_(config.id * 7919 + 1), storage_(std::move(storage)) {
    Start(config);
  }

  RawNode& node() { return *node_; }
  MemoryStorage& storage() { return *storage_; }
  NodeId id() const { return config_.id; }
  NodeStatus status() const { return node_->GetStatus(); }
  const std::vector<Entry>& applied() const { return applied_; }
  std::vector<ReadState>& read_states() { return read_states_; }
  // Data of applied normal entries, in order (no-ops skipped).
  std::vector<std::string> AppliedData() const {
    std::vector<std::string> out;
    for (const Entry& e : applied_) {
      if (e.type == EntryType::kNormal && !e.data.empty()) out.push_back(e.data);
    }
    return out;
  }

  // Processes every Ready: persist, apply, collect messages (both kinds).
  std::vector<Message> Drain() {
    std::vector<Message> out;
    while (node_->HasReady()) {
      Ready rd = node_->GetReady();
      if (rd.snapshot) {
        CHECK(storage_->ApplySnapshot(*rd.snapshot).ok());
        applied_.clear();
      }
      CHECK(storage_->Append(rd.entries).ok());
      if (rd.hard_state) storage_->SetHardState(*rd.hard_state);
      for (Message& m : rd.messages) out.push_back(std::move(m));
      for (Message& m : rd.persisted_messages) out.push_back(std::move(m));
      for (const Entry& e : rd.committed_entries) applied_.push_back(e);
      for (ReadState& rs : rd.read_states) read_states_.push_back(std::move(rs));
      node_->Advance(rd);
    }
    return out;
  }

  void Tick(int n = 1) {
    for (int i = 0; i < n; ++i) node_->Tick();
  }

 private:
  void Start(const Config& config) {
    config_ = config;
    config_.random = &random_;
    auto node = RawNode::Create(config_, storage_.get());
    CHECK(node.ok()) << node.status().ToString();
    node_ = std::move(node).value();
  }

  Config config_;
  SplitMix64 random_;
  std::unique_ptr<MemoryStorage> storage_;
  std::unique_ptr<RawNode> node_;
  std::vector<Entry> applied_;
  std::vector<ReadState> read_states_;
};

// Delivers messages in FIFO order until none are left.
class TestNetwork {
 public:
  using ConfigFn = std::function<void(Config&)>;

  TestNetwork() = default;

  // Nodes 1..n, all voters (plus learners), bootstrapped with the same membership.
  explicit TestNetwork(int voters, std::vector<NodeId> learners = {}, ConfigFn adjust = nullptr)
      : adjust_(std::move(adjust)) {
    std::vector<NodeId> ids;
    for (int i = 1; i <= voters; ++i) ids.push_back(i);
    const ConfState conf = Voters(ids, learners);
    for (NodeId id : ids) Add(id, conf);
    for (NodeId id : learners) Add(id, conf);
  }

  // Adds a node: a founding member if conf is non-empty, else a joiner.
  TestNode& Add(NodeId id, const ConfState& conf) {
    Config c = TestConfig(id);
    if (adjust_) adjust_(c);
    nodes_[id] = std::make_unique<TestNode>(c, conf);
    Pump(nodes_[id]->Drain());
    return *nodes_[id];
  }

  // Adds a node built by the test (e.g. from a prepared storage).
  TestNode& Add(std::unique_ptr<TestNode> node) {
    const NodeId id = node->id();
    nodes_[id] = std::move(node);
    return *nodes_[id];
  }

  TestNode& operator[](NodeId id) { return *nodes_.at(id); }
  const std::map<NodeId, std::unique_ptr<TestNode>>& nodes() const { return nodes_; }

  // Restarts `id` from its storage (un-persisted state is lost; here
  // everything is persisted at once, so only volatile state is lost).
  void Restart(NodeId id) {
    auto old = std::move(nodes_.at(id));
    auto storage = std::make_unique<MemoryStorage>(old->storage());
    Config c = TestConfig(id);
    if (adjust_) adjust_(c);
    c.applied = storage->snapshot().metadata.index;
    nodes_[id] = std::make_unique<TestNode>(c, std::move(storage));
  }

  void Cut(NodeId a, NodeId b) {
    cut_.insert({a, b});
    cut_.insert({b, a});
  }
  void CutOneWay(NodeId from, NodeId to) { cut_.insert({from, to}); }
  void Isolate(NodeId id) {
    for (const auto& [other, n] : nodes_) {
      if (other != id) Cut(id, other);
    }
  }
  void Ignore(MessageType type) { ignored_.insert(type); }
  void Heal() {
    cut_.clear();
    ignored_.clear();
    filter_ = nullptr;
  }
  // Messages that pass this filter are delivered; others dropped. The filter
  // may also rewrite the message.
  void SetFilter(std::function<bool(Message&)> keep) { filter_ = std::move(keep); }

  // Delivers `msgs` and everything they cause.
  void Pump(std::vector<Message> msgs) {
    std::deque<Message> queue(std::make_move_iterator(msgs.begin()),
                              std::make_move_iterator(msgs.end()));
    size_t steps = 0;
    while (!queue.empty()) {
      CHECK(++steps < 1000000) << "network did not quiesce";
      Message m = std::move(queue.front());
      queue.pop_front();
      if (!Deliverable(m)) continue;
      if (filter_ && !filter_(m)) continue;
      delivered_.push_back(m);
      TestNode& to = *nodes_.at(m.to);
      (void)to.node().Step(std::move(m));
      for (Message& out : to.Drain()) queue.push_back(std::move(out));
    }
  }

  // Drains every node and delivers.
  void Settle() {
    std::vector<Message> msgs;
    for (auto& [id, n] : nodes_) {
      for (Message& m : n->Drain()) msgs.push_back(std::move(m));
    }
    Pump(std::move(msgs));
  }

  // Makes `id` campaign and delivers until quiet.
  void Elect(NodeId id) {
    nodes_.at(id)->node().Campaign();
    Pump(nodes_.at(id)->Drain());
  }

  Status Propose(NodeId id, std::string data) {
    auto pos = nodes_.at(id)->node().Propose(std::move(data));
    Pump(nodes_.at(id)->Drain());
    return pos.status();
  }

  // Ticks every node `n` times, delivering after each round.
  void TickAll(int n = 1) {
    for (int i = 0; i < n; ++i) {
      for (auto& [id, node] : nodes_) node->Tick();
      Settle();
    }
  }

  std::vector<Message>& delivered() { return delivered_; }

 private:
  bool Deliverable(const Message& m) const {
    if (!nodes_.count(m.to)) return false;
    if (cut_.count({m.from, m.to})) return false;
    if (ignored_.count(m.type)) return false;
    return true;
  }

  ConfigFn adjust_;
  std::map<NodeId, std::unique_ptr<TestNode>> nodes_;
  std::set<std::pair<NodeId, NodeId>> cut_;
  std::set<MessageType> ignored_;
  std::function<bool(Message&)> filter_;
  std::vector<Message> delivered_;
};

}  // namespace cairn::raft::testing
