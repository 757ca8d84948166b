// ReadIndex (thesis §6.4): linearizable reads without log writes, batched
// into heartbeat rounds, correct across leader changes; and lease reads
// (§6.4.1).
#include <gtest/gtest.h>

#include "raft/raft_test_util.h"

namespace cairn::raft {
namespace {

using testing::TestNetwork;

int Count(const std::vector<Message>& msgs, MessageType type) {
  int n = 0;
  for (const Message& m : msgs) n += m.type == type;
  return n;
}

TEST(ReadIndex, LeaderReadAfterQuorumHeartbeat) {
  TestNetwork net(3);
  net.Elect(1);
  ASSERT_TRUE(net.Propose(1, "w").ok());
  const uint64_t commit = net[1].status().commit;
  ASSERT_TRUE(net[1].node().ReadIndex("r1").ok());
  auto msgs = net[1].Drain();
  EXPECT_TRUE(net[1].read_states().empty()) << "not before a quorum confirms leadership";
  EXPECT_EQ(Count(msgs, MessageType::kHeartbeat), 2);
  net.Pump(std::move(msgs));
  ASSERT_EQ(net[1].read_states().size(), 1u);
  EXPECT_EQ(net[1].read_states()[0].index, commit);
  EXPECT_EQ(net[1].read_states()[0].request_context, "r1");
}

// Many reads between two Readys share one heartbeat round.
TEST(ReadIndex, ReadsAreBatchedIntoOneRound) {
  TestNetwork net(3);
  net.Elect(1);
  for (int i = 0; i < 50; ++i) ASSERT_TRUE(net[1].node().ReadIndex("r" + std::to_string(i)).ok());
  auto msgs = net[1].Drain();
  EXPECT_EQ(Count(msgs, MessageType::kHeartbeat), 2) << "one round for 50 reads";
  net.Pump(std::move(msgs));
  ASSERT_EQ(net[1].read_states().size(), 50u);
  for (const ReadState& rs : net[1].read_states()) {
    EXPECT_EQ(rs.index, net[1].read_states()[0].index);
  }
}

// A round whose own heartbeats are lost completes with the next periodic
// heartbeat, which carries the latest round id.
TEST(ReadIndex, RoundCompletesWithPeriodicHeartbeat) {
  TestNetwork net(3);
  net.Elect(1);
  ASSERT_TRUE(net[1].node().ReadIndex("r").ok());
  net[1].Drain();  // dropped
  EXPECT_TRUE(net[1].read_states().empty());
  net.TickAll(1);
  EXPECT_EQ(net[1].read_states().size(), 1u);
}

TEST(ReadIndex, FollowerReadIsForwardedToLeader) {
  TestNetwork net(3);
  net.Elect(1);
  ASSERT_TRUE(net.Propose(1, "w").ok());
  ASSERT_TRUE(net[2].node().ReadIndex("from follower").ok());
  net.Pump(net[2].Drain());
  ASSERT_EQ(net[2].read_states().size(), 1u);
  EXPECT_EQ(net[2].read_states()[0].index, net[1].status().commit);
  EXPECT_EQ(net[2].read_states()[0].request_context, "from follower");
  EXPECT_TRUE(net[1].read_states().empty());
}

TEST(ReadIndex, NoLeaderIsATypedError) {
  TestNetwork net(3);
  EXPECT_TRUE(IsError(net[2].node().ReadIndex("r"), ErrorKind::kNoLeader));
}

// A new leader may not know the latest commit index until it commits an entry
// of its own term: reads wait for that.
TEST(ReadIndex, NewLeaderDefersReadsUntilItCommitsInItsTerm) {
  TestNetwork net(3);
  net.Elect(1);
  ASSERT_TRUE(net.Propose(1, "w").ok());
  const uint64_t written = net[1].status().commit;
  // Node 2 takes over, but its no-op is not acknowledged yet.
  net.SetFilter([](Message& m) { return m.type != MessageType::kAppendResponse; });
  ASSERT_TRUE(net[1].node().TransferLeader(2).ok());
  net.Pump(net[1].Drain());
  ASSERT_EQ(net[2].status().role, Role::kLeader);
  ASSERT_TRUE(net[2].node().ReadIndex("r").ok());
  net.Settle();
  net.TickAll(2);
  EXPECT_TRUE(net[2].read_states().empty());
  net.Heal();
  net.TickAll(2);
  ASSERT_EQ(net[2].read_states().size(), 1u);
  // At least its own no-op, which comes after everything committed before.
  EXPECT_GT(net[2].read_states()[0].index, written);
}

// A deposed leader that has not noticed yet (cut off from everyone) never
// answers a read: its heartbeat round cannot complete.
TEST(ReadIndex, StaleLeaderNeverServesReads) {
  TestNetwork net(3, {}, [](Config& c) { c.check_quorum = false; });
  net.Elect(1);
  net.Isolate(1);
  ASSERT_TRUE(net[1].node().ReadIndex("stale").ok());
  net.Settle();
  net.Elect(2);
  ASSERT_EQ(net[2].status().role, Role::kLeader);
  ASSERT_TRUE(net.Propose(2, "newer write").ok());
  for (int i = 0; i < 30; ++i) {
    net[1].Tick();
    net.Settle();
  }
  ASSERT_EQ(net[1].status().role, Role::kLeader) << "it still believes it leads";
  EXPECT_TRUE(net[1].read_states().empty());
}

TEST(ReadIndex, SingleNodeAnswersAtOnce) {
  TestNetwork net(1);
  net.Elect(1);
  ASSERT_TRUE(net[1].node().ReadIndex("r").ok());
  net[1].Drain();
  ASSERT_EQ(net[1].read_states().size(), 1u);
  EXPECT_EQ(net[1].read_states()[0].index, net[1].status().commit);
}

TEST(ReadIndex, PendingReadsAreBounded) {
  TestNetwork net(3, {}, [](Config& c) { c.max_pending_read_requests = 2; });
  net.Elect(1);
  EXPECT_TRUE(net[1].node().ReadIndex("a").ok());
  EXPECT_TRUE(net[1].node().ReadIndex("b").ok());
  EXPECT_TRUE(IsError(net[1].node().ReadIndex("c"), ErrorKind::kProposalDropped));
}

// With lease reads, a node ignores vote requests for an election timeout
// after it starts (see below), so elections happen by timeout. Returns the
// leader, after its first acknowledged heartbeat round.
NodeId ElectByTimeout(TestNetwork& net) {
  for (int i = 0; i < 100; ++i) {
    net.TickAll(1);
    for (const auto& [id, node] : net.nodes()) {
      if (node->status().role == Role::kLeader) {
        net.TickAll(1);
        return id;
      }
    }
  }
  ADD_FAILURE() << "no leader";
  return kNoNode;
}

void LeaseBased(Config& c) { c.read_only_option = ReadOnlyOption::kLeaseBased; }

// Lease reads answer without a round trip while a quorum acknowledged a
// heartbeat round sent less than election_timeout - 2 ticks ago (see
// ReadOnlyOption for the clock assumption they rest on).
TEST(LeaseRead, AnswersWithoutRoundTripWhileLeaseHolds) {
  TestNetwork net(3, {}, LeaseBased);
  const NodeId leader = ElectByTimeout(net);
  ASSERT_TRUE(net[leader].node().ReadIndex("lease").ok());
  auto msgs = net[leader].Drain();
  EXPECT_EQ(Count(msgs, MessageType::kHeartbeat), 0);
  ASSERT_EQ(net[leader].read_states().size(), 1u);
  EXPECT_EQ(net[leader].read_states()[0].index, net[leader].status().commit);
}

TEST(LeaseRead, ExpiredLeaseFallsBackToHeartbeatRound) {
  TestNetwork net(3, {}, LeaseBased);
  const NodeId leader = ElectByTimeout(net);
  net.Isolate(leader);
  for (int i = 0; i < 8; ++i) net[leader].Tick();  // election_timeout - 2 ticks without answers
  net.Settle();
  ASSERT_EQ(net[leader].status().role, Role::kLeader) << "check quorum has not demoted it yet";
  ASSERT_TRUE(net[leader].node().ReadIndex("late").ok());
  net.Settle();
  EXPECT_TRUE(net[leader].read_states().empty()) << "no lease, and no quorum to confirm a round";
  net.Heal();
  net[leader].Tick();
  net.Settle();
  EXPECT_EQ(net[leader].read_states().size(), 1u);
}

// A leader that sent TimeoutNow lets its target campaign past the followers'
// leases, so it gives up its own lease for the rest of the term.
TEST(LeaseRead, TransferRevokesTheLease) {
  TestNetwork net(3, {}, LeaseBased);
  const NodeId leader = ElectByTimeout(net);
  const NodeId target = leader == 1 ? 2 : 1;
  net.Ignore(MessageType::kTimeoutNow);
  ASSERT_TRUE(net[leader].node().TransferLeader(target).ok());
  net.Settle();
  ASSERT_EQ(net[leader].status().role, Role::kLeader);
  ASSERT_TRUE(net[leader].node().ReadIndex("after transfer").ok());
  auto msgs = net[leader].Drain();
  EXPECT_TRUE(net[leader].read_states().empty());
  EXPECT_EQ(Count(msgs, MessageType::kHeartbeat), 2) << "a heartbeat round instead";
}

// A restarted follower may have promised a leader, before the crash, to
// ignore votes for an election timeout: it keeps that promise.
TEST(LeaseRead, RestartedFollowerIgnoresVotesForAnElectionTimeout) {
  TestNetwork net(3, {}, [](Config& c) {
    LeaseBased(c);
    c.pre_vote = false;
  });
  const NodeId leader = ElectByTimeout(net);
  const NodeId follower = leader == 1 ? 2 : 1;
  const NodeId candidate = 6 - leader - follower;
  net.Restart(follower);
  Message vote;
  vote.type = MessageType::kVote;
  vote.from = candidate;
  vote.to = follower;
  vote.term = net[follower].status().term + 1;
  vote.index = net[follower].status().last_index;
  vote.log_term = net[follower].status().term;
  ASSERT_TRUE(net[follower].node().Step(vote).ok());
  EXPECT_EQ(Count(net[follower].Drain(), MessageType::kVoteResponse), 0);
  net[follower].Tick(10);
  ASSERT_TRUE(net[follower].node().Step(vote).ok());
  EXPECT_EQ(Count(net[follower].Drain(), MessageType::kVoteResponse), 1);
}

TEST(LeaseRead, RequiresCheckQuorum) {
  Config c = testing::TestConfig(1);
  c.read_only_option = ReadOnlyOption::kLeaseBased;
  c.check_quorum = false;
  EXPECT_TRUE(IsError(c.Validate(), ErrorKind::kInvalidConfig));
}

}  // namespace
}  // namespace cairn::raft
