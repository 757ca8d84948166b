// Elections beyond the paper: pre-vote (thesis §9.6), check quorum and leader
// stickiness (thesis §6.2, §4.2.3), leader transfer (thesis §3.10), step down.
#include <gtest/gtest.h>

#include "raft/raft_test_util.h"

namespace cairn::raft {
namespace {

using testing::TestNetwork;

int CountType(const std::vector<Message>& msgs, MessageType type) {
  int n = 0;
  for (const Message& m : msgs) n += m.type == type;
  return n;
}

// Thesis §9.6: a node cut off from the cluster keeps timing out, but with
// pre-vote it never wins a pre-election, so its term stays put and it does not
// disrupt the leader when it comes back.
TEST(PreVote, PartitionedNodeDoesNotBumpTermOrDisruptLeader) {
  TestNetwork net(3);
  net.Elect(1);
  ASSERT_EQ(net[1].status().role, Role::kLeader);
  const uint64_t term = net[1].status().term;
  net.Isolate(3);
  for (int i = 0; i < 100; ++i) {
    net[3].Tick();
    net.Settle();
  }
  EXPECT_EQ(net[3].status().term, term) << "pre-vote keeps the term";
  EXPECT_NE(net[3].status().role, Role::kLeader);
  net.Heal();
  net.TickAll(20);
  EXPECT_EQ(net[1].status().role, Role::kLeader);
  EXPECT_EQ(net[1].status().term, term);
  EXPECT_EQ(net[3].status().leader, 1u);
  ASSERT_TRUE(net.Propose(1, "after heal").ok());
  EXPECT_EQ(net[3].AppliedData().back(), "after heal");
}

// The same partition without pre-vote: the isolated node's term runs ahead and
// its return forces an election (the disruption pre-vote prevents).
TEST(PreVote, WithoutPreVoteARejoiningNodeForcesAnElection) {
  TestNetwork net(3, {}, [](Config& c) {
    c.pre_vote = false;
    c.check_quorum = false;
  });
  net.Elect(1);
  const uint64_t term = net[1].status().term;
  net.Isolate(3);
  for (int i = 0; i < 100; ++i) {
    net[3].Tick();
    net.Settle();
  }
  EXPECT_GT(net[3].status().term, term + 2);
  net.Heal();
  net.TickAll(30);
  EXPECT_GT(net[1].status().term, term) << "the leader had to step down";
}

// Pre-vote in a minority partition: two nodes of five cut off together cannot
// elect a leader or raise their terms; the majority side keeps working.
TEST(PreVote, MinorityPartitionStaysQuiet) {
  TestNetwork net(5);
  net.Elect(1);
  const uint64_t term = net[1].status().term;
  for (NodeId a : {4, 5}) {
    for (NodeId b : {1, 2, 3}) net.Cut(a, b);
  }
  net.TickAll(60);
  EXPECT_EQ(net[4].status().term, term);
  EXPECT_EQ(net[5].status().term, term);
  EXPECT_EQ(net[1].status().role, Role::kLeader);
  ASSERT_TRUE(net.Propose(1, "majority").ok());
  EXPECT_EQ(net[3].AppliedData().back(), "majority");
  net.Heal();
  net.TickAll(5);
  EXPECT_EQ(net[5].AppliedData().back(), "majority");
  EXPECT_EQ(net[1].status().term, term);
}

// A pre-vote is granted only to a candidate whose log is up to date, and
// granting it changes neither the voter's term nor its vote.
TEST(PreVote, GrantChangesNoState) {
  TestNetwork net(3);
  net.Elect(1);
  const NodeStatus before = net[2].status();
  Message m;
  m.type = MessageType::kPreVote;
  m.from = 3;
  m.to = 2;
  m.term = before.term + 1;
  m.index = before.last_index;
  m.log_term = before.term;
  // Node 2 has heard from the leader recently: in lease, ignored entirely.
  ASSERT_TRUE(net[2].node().Step(m).ok());
  EXPECT_EQ(CountType(net[2].Drain(), MessageType::kPreVoteResponse), 0);
  // After an election timeout without the leader, it answers without changing state.
  net.Isolate(1);
  net[2].Tick(10);
  ASSERT_TRUE(net[2].node().Step(m).ok());
  auto msgs = net[2].Drain();
  ASSERT_EQ(CountType(msgs, MessageType::kPreVoteResponse), 1);
  EXPECT_EQ(net[2].status().term, before.term);
  EXPECT_EQ(net[2].status().vote, before.vote);
}

// Thesis §6.2: a leader that cannot reach a quorum for an election timeout
// steps down (so it stops serving reads and accepting proposals that cannot
// commit).
TEST(CheckQuorum, IsolatedLeaderStepsDown) {
  TestNetwork net(3);
  net.Elect(1);
  net.Isolate(1);
  // The first check after the cut still sees the followers' earlier answers.
  for (int i = 0; i < 20 && net[1].status().role == Role::kLeader; ++i) net[1].Tick();
  EXPECT_EQ(net[1].status().role, Role::kFollower);
  auto s = net[1].node().Propose("x");
  EXPECT_TRUE(IsError(s.status(), ErrorKind::kNoLeader)) << s.status().ToString();
}

// With check quorum, a leader that hears from a quorum stays leader forever.
TEST(CheckQuorum, ConnectedLeaderStays) {
  TestNetwork net(3);
  net.Elect(1);
  const uint64_t term = net[1].status().term;
  net.TickAll(100);
  EXPECT_EQ(net[1].status().role, Role::kLeader);
  EXPECT_EQ(net[1].status().term, term);
}

// Leader stickiness: a follower that heard from the leader within the election
// timeout ignores vote requests, even at a higher term.
TEST(CheckQuorum, FollowersInLeaseIgnoreVotes) {
  TestNetwork net(3, {}, [](Config& c) { c.pre_vote = false; });
  net.Elect(1);
  const uint64_t term = net[1].status().term;
  net.TickAll(1);
  Message m;
  m.type = MessageType::kVote;
  m.from = 3;
  m.to = 2;
  m.term = term + 5;
  m.index = 1000;
  m.log_term = term + 4;
  ASSERT_TRUE(net[2].node().Step(m).ok());
  EXPECT_EQ(net[2].status().term, term);
  EXPECT_EQ(CountType(net[2].Drain(), MessageType::kVoteResponse), 0);
}

// Thesis §3.10: leader transfer to an up-to-date follower.
TEST(LeaderTransfer, ToUpToDateFollower) {
  TestNetwork net(3);
  net.Elect(1);
  ASSERT_TRUE(net[1].node().TransferLeader(2).ok());
  net.Pump(net[1].Drain());
  EXPECT_EQ(net[2].status().role, Role::kLeader);
  EXPECT_EQ(net[1].status().role, Role::kFollower);
  EXPECT_EQ(net[1].status().leader, 2u);
  ASSERT_TRUE(net.Propose(2, "new leader").ok());
  EXPECT_EQ(net[1].AppliedData().back(), "new leader");
}

// Transfer to a follower that lags: the leader first catches it up, refusing
// proposals meanwhile, then sends TimeoutNow.
TEST(LeaderTransfer, ToLaggingFollower) {
  TestNetwork net(3);
  net.Elect(1);
  net.Isolate(3);
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(net.Propose(1, "p" + std::to_string(i)).ok());
  ASSERT_LT(net[3].status().last_index, net[1].status().last_index);
  net.Heal();
  ASSERT_TRUE(net[1].node().TransferLeader(3).ok());
  // While the transfer runs, proposals are refused with a typed error.
  auto refused = net[1].node().Propose("during transfer");
  EXPECT_TRUE(IsError(refused.status(), ErrorKind::kLeaderTransferring))
      << refused.status().ToString();
  net.Pump(net[1].Drain());
  EXPECT_EQ(net[3].status().role, Role::kLeader);
  EXPECT_EQ(net[3].AppliedData().size(), 5u) << "the new leader has every committed entry";
}

// A transfer to an unreachable follower is abandoned after an election timeout
// and the old leader accepts proposals again.
TEST(LeaderTransfer, AbortedAfterElectionTimeout) {
  TestNetwork net(3);
  net.Elect(1);
  net.Isolate(3);
  ASSERT_TRUE(net.Propose(1, "x").ok());
  ASSERT_TRUE(net[1].node().TransferLeader(3).ok());
  EXPECT_EQ(net[1].status().lead_transferee, 3u);
  net.TickAll(10);
  EXPECT_EQ(net[1].status().role, Role::kLeader);
  EXPECT_EQ(net[1].status().lead_transferee, kNoNode);
  EXPECT_TRUE(net[1].node().Propose("y").ok());
}

TEST(LeaderTransfer, RejectsNonVotersAndNonLeaders) {
  TestNetwork net(3, {4});
  net.Elect(1);
  EXPECT_TRUE(IsError(net[1].node().TransferLeader(4), ErrorKind::kInvalidArgument));
  EXPECT_TRUE(IsError(net[1].node().TransferLeader(9), ErrorKind::kInvalidArgument));
  EXPECT_TRUE(IsError(net[2].node().TransferLeader(3), ErrorKind::kNotLeader));
  EXPECT_TRUE(net[1].node().TransferLeader(1).ok());  // already the leader
}

// StepDown hands leadership to the most up-to-date active voter.
TEST(StepDown, HandsOverToUpToDateVoter) {
  TestNetwork net(3);
  net.Elect(1);
  net.TickAll(1);  // followers answer heartbeats: recently active
  ASSERT_TRUE(net[1].node().StepDown().ok());
  net.Pump(net[1].Drain());
  EXPECT_NE(net[1].status().role, Role::kLeader);
  const NodeId leader = net[2].status().role == Role::kLeader ? 2 : 3;
  EXPECT_EQ(net[leader].status().role, Role::kLeader);
  EXPECT_TRUE(IsError(net[1].node().StepDown(), ErrorKind::kNotLeader));
}

// A single-node cluster elects itself and commits without any peer.
TEST(Election, SingleNodeCommitsAlone) {
  TestNetwork net(1);
  net.Elect(1);
  ASSERT_EQ(net[1].status().role, Role::kLeader);
  ASSERT_TRUE(net.Propose(1, "alone").ok());
  EXPECT_EQ(net[1].AppliedData().back(), "alone");
}

// Proposals on a non-leader fail with a typed error naming the leader.
TEST(Proposals, TypedErrorsOnNonLeaders) {
  TestNetwork net(3);
  auto none = net[2].node().Propose("x");
  EXPECT_TRUE(IsError(none.status(), ErrorKind::kNoLeader)) << none.status().ToString();
  net.Elect(1);
  auto follower = net[2].node().Propose("x");
  EXPECT_TRUE(IsError(follower.status(), ErrorKind::kNotLeader));
  EXPECT_EQ(follower.status().code(), Code::kUnavailable);
  EXPECT_NE(follower.status().message().find("leader is 1"), std::string::npos);
}

// A proposal lost in a leader change: the index shows up with another term,
// which is how a host tells the client to retry.
TEST(Proposals, LostProposalIsVisibleByTerm) {
  TestNetwork net(3);
  net.Elect(1);
  net.Isolate(1);
  auto pos = net[1].node().Propose("lost");
  ASSERT_TRUE(pos.ok());
  net.Pump(net[1].Drain());
  // Nodes 2 and 3 stop hearing from 1 and elect one of themselves.
  for (int i = 0; i < 40 && net[2].status().leader == 1; ++i) net.TickAll();
  const NodeId leader = net[2].status().leader;
  ASSERT_TRUE(leader == 2 || leader == 3);
  ASSERT_TRUE(net.Propose(leader, "replacement").ok());
  net.Heal();
  net.TickAll(5);
  bool found = false;
  for (const Entry& e : net[1].applied()) {
    if (e.index == pos->first_index) {
      found = true;
      EXPECT_NE(e.term, pos->term);
    }
  }
  EXPECT_TRUE(found);
}

}  // namespace
}  // namespace cairn::raft
