// HostSimulation: the deterministic simulator driving the server's own Raft
// host. Where src/sim/ checks the Raft core through a host loop of its own,
// this runs, per member, the code a cairn member runs — server::RaftHost (its
// turns, parking, batching, forwarding, refusals, read rounds, transfers,
// compaction), server::LogStore and wal::Wal on real files — with everything
// around them simulated from one seed:
//
//  * time: one simulated clock; each member's host turns at every tick (with
//    jitter) and whenever something arrives for it (RaftHostOptions::own_thread
//    = false, so no thread runs);
//  * the network: a simulated server::Transport (drops, duplicates, delays,
//    reordering, symmetric and one-way partitions), forwarded proposals and
//    refusals included; snapshot messages carry the sender's state image;
//  * the disk: the log's files through CrashEnv, so a crash (power loss)
//    keeps only what was fdatasynced plus a random, possibly torn, prefix of
//    the rest; the "database" (the state machine, its applied index and the
//    log base) is durable only at the points the server syncs RocksDB
//    (save_base, sync_applied, a snapshot install) and otherwise loses a
//    random suffix of its applied batches;
//  * the apply worker: committed entries wait in a queue and are applied
//    later, in batches, as the server's apply thread does;
//  * the workload: proposals on any member (followers forward), linearizable
//    reads, leader transfers, membership changes (a joiner starts empty; a
//    removed member stops once it learns so).
//
// The state machine is the chain hash of the applied entries, so the
// SafetyChecker of src/sim/ judges the real host: election safety, log
// matching over what is durable, leader completeness, state machine safety,
// linearizable reads. On top: every proposal is applied at most once, the
// position the host reported for a proposal (which a server's waiter trusts)
// holds that proposal if it commits in that term, entries are applied in
// order, and a restarted member's log reaches its database's applied index.
// Then heal and liveness as in src/sim/.
//
// Thread-safety: none; one HostSimulation per thread.
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
#include "sim/sim_options.h"

namespace cairn::hostsim {

using raft::NodeId;

struct HostSimOptions {
  sim::SimOptions sim;  // cluster shape, network, faults, workload
  // Log entries the host keeps behind the applied index: small, so that
  // followers fall behind the log and get snapshots.
  uint64_t log_retention_entries = 50;
  // Bytes of one log segment (the minimum, so segments roll and are released).
  uint64_t segment_bytes = 64 << 10;
  // The log's write buffer: small, so appends reach the files before their
  // fdatasync and a crash has unsynced writes to lose.
  size_t wal_buffer_bytes = 16 << 10;
  // Bytes of filler in each proposal.
  size_t proposal_bytes = 60;
  // Mean delay before the apply worker takes the next batch.
  int64_t apply_delay_ms = 3;
  // Mutation for the test of the simulator itself: the disk's fdatasync
  // makes nothing durable.
  bool lying_sync = false;

  // From sim::SimOptions::ForSeed(profile, seed) and the seed.
  static Result<HostSimOptions> ForSeed(const std::string& profile, uint64_t seed);
  std::string Repro() const;
};

struct HostSimStats {
  uint64_t steps = 0;
  uint64_t turns = 0;
  uint64_t messages_sent = 0;
  uint64_t proposals = 0;
  uint64_t proposals_accepted = 0;
  uint64_t proposals_forwarded = 0;
  uint64_t proposals_refused = 0;
  uint64_t entries_applied = 0;
  uint64_t reads_started = 0;
  uint64_t reads_served = 0;
  uint64_t crashes = 0;
  uint64_t writes_lost = 0;  // log writes undone by crashes
  uint64_t partitions = 0;
  uint64_t snapshots_installed = 0;
  uint64_t compactions = 0;  // log bases moved forward
  uint64_t conf_changes = 0;
  uint64_t retired = 0;
  uint64_t transfers = 0;
  uint64_t leaders = 0;
  int64_t recovery_ms = 0;

  std::string ToString() const;
  void Add(const HostSimStats& o);
};

struct HostSimResult {
  bool ok = true;
  std::string failure;
  HostSimStats stats;
};

class HostSimulation {
 public:
  explicit HostSimulation(HostSimOptions options);
  ~HostSimulation();
  HostSimulation(const HostSimulation&) = delete;
  HostSimulation& operator=(const HostSimulation&) = delete;

  void set_trace(std::ostream* out) { trace_ = out; }
  // Runs in a fresh directory under $TMPDIR (or /dev/shm when it exists),
  // removed afterwards.
  HostSimResult Run();

 private:
  struct World;
  std::unique_ptr<World> world_;
  std::ostream* trace_ = nullptr;
};

// Runs seeds [first_seed, first_seed + count) of `profile` (the CTest suite
// and `make host-soak` share this). Progress and failures go to `progress`
// (may be null).
struct HostSoakSummary {
  uint64_t runs = 0;
  uint64_t failures = 0;
  std::vector<std::string> reports;  // per failing seed: violation, options, replay command
  HostSimStats totals;
  double seconds = 0;
  std::string ToString() const;
};
HostSoakSummary RunHostSeeds(const std::string& profile, uint64_t first_seed, uint64_t count,
                             bool stop_at_first_failure, std::ostream* progress, bool lying_sync = false);

}  // namespace cairn::hostsim
