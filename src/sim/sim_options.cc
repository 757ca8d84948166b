#include "sim/sim_options.h"

#include <sstream>

#include "raft/random.h"

namespace cairn::sim {

const char* MutationName(Mutation mutation) {
  switch (mutation) {
    case Mutation::kNone: return "none";
    case Mutation::kCommitPreviousTerm: return "commit-previous-term";
    case Mutation::kReadBeforeTermCommit: return "read-before-term-commit";
    case Mutation::kVoteWithoutLogCheck: return "vote-without-log-check";
    case Mutation::kLeaseTrustsCheckQuorum: return "lease-trusts-check-quorum";
  }
  return "unknown";
}

namespace {

// Draws from the seed in a fixed order; the run itself uses other streams.
class Dice {
 public:
  explicit Dice(uint64_t seed) : rng_(seed ^ 0x5eed0f7e57ab1e5ULL) {}
  uint64_t Int(uint64_t lo, uint64_t hi) { return lo + rng_.Uniform(hi - lo + 1); }
  bool Chance(double p) { return static_cast<double>(rng_.Uniform(1000000)) < p * 1e6; }
  double Real(double lo, double hi) {
    return lo + (hi - lo) * static_cast<double>(rng_.Uniform(1000001)) / 1e6;
  }

 private:
  raft::SplitMix64 rng_;
};

void Randomize(SimOptions& o, Dice& d) {
  const uint64_t shape = d.Int(0, 99);
  o.voters = shape < 10 ? 1 : shape < 60 ? 3 : 5;
  o.learners = d.Chance(0.3) ? static_cast<int>(d.Int(1, 2)) : 0;
  o.membership_changes = d.Chance(0.4);
  o.raft.pre_vote = d.Chance(0.8);
  o.raft.check_quorum = d.Chance(0.8);
  o.raft.max_inflight_msgs = d.Chance(0.3) ? d.Int(1, 4) : 64;
  o.raft.max_size_per_msg_bytes = d.Chance(0.3) ? d.Int(1, 64) : 4096;
  // Back-pressure, as a server sets it: bounds the backlog a heal must drain.
  o.raft.max_uncommitted_entries_bytes = d.Int(64, 4096);

  o.drop_rate = d.Chance(0.2) ? 0 : d.Real(0.0, 0.15);
  o.duplicate_rate = d.Chance(0.5) ? 0 : d.Real(0.0, 0.05);
  o.max_delay_ms = static_cast<int64_t>(d.Int(2, 30));
  o.long_delay_rate = d.Chance(0.5) ? 0 : d.Real(0.0, 0.05);
  o.drop_own_term_appends_rate = d.Chance(0.8) ? 0 : d.Real(0.0, 0.5);
  o.partition_interval_ms = d.Chance(0.2) ? 0 : static_cast<int64_t>(d.Int(150, 1500));
  o.partition_max_ms = static_cast<int64_t>(d.Int(50, 1200));
  o.crash_interval_ms = d.Chance(0.2) ? 0 : static_cast<int64_t>(d.Int(150, 1500));
  o.restart_max_ms = static_cast<int64_t>(d.Int(10, 600));
  o.target_leader_rate = d.Real(0.0, 0.7);
  o.async_persistence = d.Chance(0.7);
  o.disk_max_ms = static_cast<int64_t>(d.Int(1, 20));
  o.snapshot_every = d.Chance(0.6) ? static_cast<int>(d.Int(3, 40)) : 0;
  o.snapshot_keep = static_cast<int>(d.Int(0, 10));
  o.propose_interval_ms = static_cast<int64_t>(d.Int(2, 20));
  o.max_batch = static_cast<int>(d.Int(1, 8));
  o.read_interval_ms = static_cast<int64_t>(d.Int(5, 40));
  o.transfer_interval_ms = d.Chance(0.5) ? 0 : static_cast<int64_t>(d.Int(300, 2000));
  o.conf_change_interval_ms = static_cast<int64_t>(d.Int(100, 800));
  o.tick_jitter_ms = static_cast<int64_t>(d.Int(0, 3));
}

}  // namespace

Result<SimOptions> SimOptions::ForSeed(const std::string& profile, uint64_t seed) {
  SimOptions o;
  o.seed = seed;
  o.profile = profile;
  o.raft.election_timeout_ticks = 10;
  o.raft.heartbeat_interval_ticks = 1;
  Dice dice(seed);
  Randomize(o, dice);
  if (profile == "mixed") return o;
  if (profile == "small") {
    o.voters = 3;
    o.learners = 0;
    o.membership_changes = false;
    return o;
  }
  if (profile == "lease") {
    // Lease reads under their clock assumption: every node ticks at exactly
    // the same rate (phases differ), no pauses.
    o.raft.read_only_option = raft::ReadOnlyOption::kLeaseBased;
    o.raft.check_quorum = true;
    o.tick_jitter_ms = 0;
    return o;
  }
  const std::string prefix = "mutation-";
  if (profile.rfind(prefix, 0) == 0) {
    const std::string name = profile.substr(prefix.size());
    for (Mutation m : {Mutation::kCommitPreviousTerm, Mutation::kReadBeforeTermCommit,
                       Mutation::kVoteWithoutLogCheck, Mutation::kLeaseTrustsCheckQuorum}) {
      if (name == MutationName(m)) o.mutation = m;
    }
    if (o.mutation == Mutation::kNone) {
      return Status(Code::kInvalidArgument, "unknown mutation " + name);
    }
    // Faults that make the broken rule matter: leader churn with crashes and
    // partitions on 3 or 5 voters, and no membership changes to muddy it.
    o.voters = dice.Chance(0.5) ? 3 : 5;
    o.learners = 0;
    o.membership_changes = false;
    o.partition_interval_ms = static_cast<int64_t>(dice.Int(100, 400));
    o.partition_max_ms = static_cast<int64_t>(dice.Int(50, 400));
    o.crash_interval_ms = static_cast<int64_t>(dice.Int(100, 400));
    o.restart_max_ms = static_cast<int64_t>(dice.Int(10, 200));
    o.target_leader_rate = dice.Real(0.5, 0.9);
    o.drop_own_term_appends_rate = dice.Real(0.3, 0.8);
    // One entry per Append (so old entries and the new leader's own can be
    // acknowledged separately), but a window wide enough to drain backlogs.
    o.raft.max_size_per_msg_bytes = dice.Int(1, 16);
    o.raft.max_inflight_msgs = dice.Int(8, 64);
    o.raft.testing.commit_entries_from_previous_terms = o.mutation == Mutation::kCommitPreviousTerm;
    o.raft.testing.serve_reads_before_term_commit = o.mutation == Mutation::kReadBeforeTermCommit;
    o.raft.testing.grant_votes_without_log_check = o.mutation == Mutation::kVoteWithoutLogCheck;
    o.raft.testing.lease_trusts_check_quorum = o.mutation == Mutation::kLeaseTrustsCheckQuorum;
    if (o.mutation == Mutation::kLeaseTrustsCheckQuorum) {
      // Lease reads under their own clock assumption (no drift): the bug is
      // in the lease, not the clocks.
      o.raft.read_only_option = raft::ReadOnlyOption::kLeaseBased;
      o.raft.check_quorum = true;
      o.tick_jitter_ms = 0;
    }
    return o;
  }
  return Status(Code::kInvalidArgument, "unknown profile " + profile);
}

std::string SimOptions::Repro() const {
  std::ostringstream out;
  out << "make raft-soak PROFILE=" << profile << " SEED=" << seed << " TRACE=1";
  return out.str();
}

std::string SimOptions::ToString() const {
  std::ostringstream out;
  out << "profile=" << profile << " seed=" << seed << " voters=" << voters
      << " learners=" << learners << " membership=" << membership_changes
      << " prevote=" << raft.pre_vote << " checkquorum=" << raft.check_quorum
      << " inflight=" << raft.max_inflight_msgs << " msgbytes=" << raft.max_size_per_msg_bytes
      << " drop=" << drop_rate << " dup=" << duplicate_rate << " delay<=" << max_delay_ms
      << " drop_own_term=" << drop_own_term_appends_rate << " target_leader=" << target_leader_rate
      << " partition/" << partition_interval_ms << "ms crash/" << crash_interval_ms << "ms"
      << " async=" << async_persistence << " disk<=" << disk_max_ms
      << " snapshot_every=" << snapshot_every << " jitter=" << tick_jitter_ms
      << " lease=" << (raft.read_only_option == raft::ReadOnlyOption::kLeaseBased)
      << " mutation=" << MutationName(mutation);
  return out.str();
}

}  // namespace cairn::sim
