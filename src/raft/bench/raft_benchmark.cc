// Throughput of the Raft core: a 3-node cluster in one thread, in memory,
// committing proposals in batches of 1, 16 and 256 entries. Measures the
// core and a minimal synchronous host loop (MemoryStorage, messages handed
// over in process); no disk, no network, no serialization.
//
//   cmake --build build --target raft_benchmark && ./build/src/raft_benchmark
//
// items_per_second is committed (and applied on the leader) entries per second.
#include <benchmark/benchmark.h>

#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "common/check.h"
#include "raft/memory_storage.h"
#include "raft/raw_node.h"

namespace cairn::raft {
namespace {

constexpr size_t kPayloadBytes = 16;

class Cluster {
 public:
  explicit Cluster(int n) {
    ConfState conf;
    for (int i = 1; i <= n; ++i) conf.voters.push_back(i);
    for (int i = 1; i <= n; ++i) {
      auto& node = nodes_.emplace_back();
      node.storage = std::make_unique<MemoryStorage>();
      CHECK(node.storage->Bootstrap(conf).ok());
      Config c;
      c.id = i;
      c.max_inflight_msgs = 1024;
      c.max_size_per_msg_bytes = 1 << 20;
      c.max_uncommitted_entries_bytes = 0;
      node.random = std::make_unique<SplitMix64>(i);
      c.random = node.random.get();
      auto raw = RawNode::Create(c, node.storage.get());
      CHECK(raw.ok());
      node.raw = std::move(raw).value();
    }
    nodes_[0].raw->Campaign();
    Pump();
    CHECK(nodes_[0].raw->soft_state().role == Role::kLeader);
  }

  RawNode& leader() { return *nodes_[0].raw; }
  uint64_t applied() const { return nodes_[0].applied; }

  // Runs every node's Ready loop and delivers messages until quiet.
  void Pump() {
    bool busy = true;
    while (busy) {
      busy = false;
      for (Node& node : nodes_) {
        while (node.raw->HasReady()) {
          busy = true;
          Ready rd = node.raw->GetReady();
          if (rd.hard_state) node.storage->SetHardState(*rd.hard_state);
          CHECK(node.storage->Append(std::move(rd.entries)).ok());
          for (Message& m : rd.messages) inbox_.push_back(std::move(m));
          for (Message& m : rd.persisted_messages) inbox_.push_back(std::move(m));
          node.applied += rd.committed_entries.size();
          node.raw->Advance(rd);
        }
      }
      while (!inbox_.empty()) {
        busy = true;
        Message m = std::move(inbox_.front());
        inbox_.pop_front();
        CHECK(nodes_[m.to - 1].raw->Step(std::move(m)).ok());
      }
    }
  }

  // Keeps about 5000 entries of log, as etcd does between snapshots.
  void Compact() {
    for (Node& node : nodes_) {
      const uint64_t applied_index = node.raw->GetStatus().applied;
      if (applied_index > node.storage->FirstIndex() + 10000) {
        CHECK(node.storage->Compact(applied_index - 5000).ok());
      }
    }
  }

 private:
  struct Node {
    std::unique_ptr<MemoryStorage> storage;
    std::unique_ptr<SplitMix64> random;
    std::unique_ptr<RawNode> raw;
    uint64_t applied = 0;
  };
  std::vector<Node> nodes_;
  std::deque<Message> inbox_;
};

void BM_CommitBatches(benchmark::State& state) {
  const int batch = static_cast<int>(state.range(0));
  Cluster cluster(3);
  const std::string payload(kPayloadBytes, 'x');
  const uint64_t start = cluster.applied();
  uint64_t rounds = 0;
  uint64_t rounds_since_compact = 0;
  for (auto _ : state) {
    std::vector<std::string> data(batch, payload);
    auto pos = cluster.leader().ProposeBatch(std::move(data));
    CHECK(pos.ok());
    cluster.Pump();
    rounds_since_compact += batch;
    ++rounds;
    if (rounds_since_compact >= 4096) {
      cluster.Compact();
      rounds_since_compact = 0;
    }
  }
  const uint64_t committed = cluster.applied() - start;
  CHECK(committed >= static_cast<uint64_t>(batch) * rounds);
  state.SetItemsProcessed(static_cast<int64_t>(committed));
  state.counters["batch"] = batch;
}

BENCHMARK(BM_CommitBatches)->Arg(1)->Arg(16)->Arg(256);

}  // namespace
}  // namespace cairn::raft

BENCHMARK_MAIN();
