// What one simulation run does, derived entirely from (profile, seed) so that
// a failing seed is reproduced by naming the two (see Repro()).
//
// Thread-safety: a value.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/status.h"
#include "raft/config.h"

namespace cairn::sim {

// The rule breakers a mutation profile turns on (raft::TestingKnobs).
enum class Mutation {
  kNone,
  kCommitPreviousTerm,   // §5.4.2
  kReadBeforeTermCommit, // §6.4
  kVoteWithoutLogCheck,  // §5.4.1
  kLeaseTrustsCheckQuorum,  // §6.4.1 as etcd-raft does it
};
const char* MutationName(Mutation mutation);

struct SimOptions {
  uint64_t seed = 1;
  std::string profile = "mixed";

  // Cluster.
  int voters = 3;
  int learners = 0;
  // Membership changes during the run (add/promote/remove learners and
  // voters, including the leader), at most this many nodes ever.
  bool membership_changes = false;
  int max_nodes = 7;
  raft::Config raft;  // id and random are filled per node

  // Time: the run has a chaos phase with faults and a workload, then a heal
  // phase in which everything must make progress again.
  int64_t chaos_ms = 3000;
  // After healing, every voter must apply a new entry within this...
  int64_t liveness_deadline_ms = 8000;
  // ...and every learner within this (catching up a learner that fell far
  // behind may take long with small messages and no snapshots).
  int64_t learner_deadline_ms = 60000;
  int64_t tick_ms = 10;
  int64_t tick_jitter_ms = 2;  // each tick lands in [tick_ms - j, tick_ms + j]

  // Network, per message. Links are FIFO except for long-delayed messages.
  double drop_rate = 0.05;
  double duplicate_rate = 0.02;
  int64_t min_delay_ms = 1;
  int64_t max_delay_ms = 15;
  double long_delay_rate = 0.02;  // taken out of the stream, up to long_delay_ms: reordering
  int64_t long_delay_ms = 300;
  // Selective loss ("buggify"): an Append carrying entries of the sender's
  // own term is lost with this probability, which widens the window in which
  // a new leader has replicated older entries but not its own.
  double drop_own_term_appends_rate = 0;

  // Faults, as mean intervals between events (0: never).
  int64_t partition_interval_ms = 600;
  int64_t partition_max_ms = 800;
  int64_t crash_interval_ms = 800;
  int64_t restart_max_ms = 400;
  // Share of crashes and partitions aimed at the current leader (a crash of
  // the leader, or a partition that strands it with a minority), which is
  // where the interesting histories (Figure 8) come from.
  double target_leader_rate = 0.3;

  // Disk: asynchronous persistence with this latency range, or synchronous.
  bool async_persistence = true;
  int64_t disk_min_ms = 1;
  int64_t disk_max_ms = 8;

  // Snapshots: a host snapshots every snapshot_every applied entries, keeping
  // snapshot_keep entries of log behind it (0: never).
  int snapshot_every = 0;
  int snapshot_keep = 5;

  // Workload, mean intervals.
  int64_t propose_interval_ms = 8;
  int max_batch = 4;
  int64_t read_interval_ms = 15;
  int64_t transfer_interval_ms = 1500;
  int64_t conf_change_interval_ms = 400;

  Mutation mutation = Mutation::kNone;

  // The options for `seed` under `profile`: "mixed" (the default: 1, 3 or 5
  // voters, learners, membership changes, snapshots, faults, all drawn from
  // the seed), "small" (3 voters, no membership changes), "lease" (lease
  // reads, clocks without drift), "mutation-<name>".
  static Result<SimOptions> ForSeed(const std::string& profile, uint64_t seed);
  // The command that reruns this run with a full trace.
  std::string Repro() const;
  std::string ToString() const;
};

}  // namespace cairn::sim
