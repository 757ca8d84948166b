// Mutation checks: each test turns off one Raft safety rule (a test-only knob
// in raft::TestingKnobs) and shows that the simulator finds a seed on which a
// safety property fails. If one of these ever passes, the simulator has gone
// blind to that class of bug.
#include <gtest/gtest.h>

#include <iostream>

#include "sim/soak.h"

namespace cairn::sim {
namespace {

// Scans seeds until the first failure; expects it to be a safety violation
// (not merely liveness) found within `budget` seeds.
void ExpectCaught(const std::string& profile, uint64_t budget, const std::string& property) {
  for (uint64_t seed = 1; seed <= budget; ++seed) {
    auto options = SimOptions::ForSeed(profile, seed);
    ASSERT_TRUE(options.ok());
    SimResult result = Simulation(*options).Run();
    if (result.ok) continue;
    if (result.failure.find("Liveness") != std::string::npos) continue;  // a consequence, not the catch
    std::cout << "  caught after " << seed << " seeds:\n  " << FailureReport(*options, result)
              << std::endl;
    EXPECT_NE(result.failure.find(property), std::string::npos) << result.failure;
    return;
  }
  ADD_FAILURE() << "the simulator did not catch " << profile << " within " << budget << " seeds";
}

// §5.4.2 / Figure 8: committing an entry of an earlier term by counting
// replicas lets a later leader overwrite a committed entry.
TEST(Mutation, CommitPreviousTermByCountingIsCaught) {
  ExpectCaught("mutation-commit-previous-term", 3000, "Leader Completeness");
}

// §6.4: a new leader answering reads before it committed an entry of its own
// term may serve stale data.
TEST(Mutation, ReadBeforeTermCommitIsCaught) {
  ExpectCaught("mutation-read-before-term-commit", 500, "Linearizable read");
}

// §5.4.1: granting votes without the up-to-date check elects leaders that miss
// committed entries.
TEST(Mutation, VoteWithoutLogCheckIsCaught) {
  ExpectCaught("mutation-vote-without-log-check", 500, "Leader Completeness");
}

// §6.4.1: a lease that trusts check quorum alone (as etcd-raft's
// ReadOnlyLeaseBased does) serves stale reads even with perfect clocks; the
// lease must run from a heartbeat round a quorum acknowledged.
TEST(Mutation, LeaseTrustingCheckQuorumIsCaught) {
  ExpectCaught("mutation-lease-trusts-check-quorum", 1000, "Linearizable read");
}

}  // namespace
}  // namespace cairn::sim
