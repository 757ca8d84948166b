// Replication mechanics: batching, pipelining and flow control, fast back-off,
// snapshots, and the asynchronous persistence contract of Ready.
#include <gtest/gtest.h>

#include "raft/raft_test_util.h"

namespace cairn::raft {
namespace {

using testing::TestConfig;
using testing::TestNetwork;
using testing::TestNode;
using testing::Voters;

std::vector<Message> OfType(const std::vector<Message>& msgs, MessageType type, NodeId to = 0) {
  std::vector<Message> out;
  for (const Message& m : msgs) {
    if (m.type == type && (to == 0 || m.to == to)) out.push_back(m);
  }
  return out;
}

// Many proposals between two Readys become one Append per follower.
TEST(Batching, ProposalsBetweenReadysShareOneAppend) {
  TestNetwork net(3);
  net.Elect(1);
  for (int i = 0; i < 100; ++i) ASSERT_TRUE(net[1].node().Propose("p" + std::to_string(i)).ok());
  auto msgs = net[1].Drain();
  auto appends = OfType(msgs, MessageType::kAppend);
  ASSERT_EQ(appends.size(), 2u);
  EXPECT_EQ(appends[0].entries.size(), 100u);
  net.Pump(std::move(msgs));
  EXPECT_EQ(net[3].AppliedData().size(), 100u);
}

TEST(Batching, ProposeBatchReturnsConsecutiveIndexes) {
  TestNetwork net(3);
  net.Elect(1);
  const uint64_t last = net[1].status().last_index;
  auto pos = net[1].node().ProposeBatch({"a", "b", "c"});
  ASSERT_TRUE(pos.ok());
  EXPECT_EQ(pos->first_index, last + 1);
  EXPECT_EQ(pos->last_index, last + 3);
  EXPECT_TRUE(IsError(net[1].node().ProposeBatch({}).status(), ErrorKind::kInvalidArgument));
}

// Pipelining: a replicating follower gets several Appends in flight, up to
// max_inflight_msgs; acknowledgments open the window again.
TEST(FlowControl, InflightWindowBoundsAppendsInFlight) {
  TestNetwork net(3, {}, [](Config& c) {
    c.max_inflight_msgs = 3;
    c.max_size_per_msg_bytes = 10;  // one 10-byte entry per Append
  });
  net.Elect(1);
  ASSERT_EQ(net[1].status().progress[1].state, ProgressState::kReplicate);
  // Nobody answers: the leader sends at most 3 Appends to each follower.
  std::vector<Message> sent;
  for (int i = 0; i < 10; ++i) {
    ASSERT_TRUE(net[1].node().Propose(std::string(10, 'x')).ok());
    for (Message& m : net[1].Drain()) sent.push_back(std::move(m));
  }
  auto to2 = OfType(sent, MessageType::kAppend, 2);
  EXPECT_EQ(to2.size(), 3u);
  EXPECT_EQ(net[1].status().progress[1].inflight_msgs, 3u);
  // Delivering them (and the answers) drains everything.
  net.Pump(std::move(sent));
  net.TickAll(3);
  EXPECT_EQ(net[2].AppliedData().size(), 10u);
  EXPECT_EQ(net[1].status().progress[1].inflight_msgs, 0u);
}

TEST(FlowControl, InflightBytesCapBoundsAppendsInFlight) {
  TestNetwork net(3, {}, [](Config& c) {
    c.max_inflight_msgs = 100;
    c.max_inflight_bytes = 25;
    c.max_size_per_msg_bytes = 10;
  });
  net.Elect(1);
  std::vector<Message> sent;
  for (int i = 0; i < 10; ++i) {
    ASSERT_TRUE(net[1].node().Propose(std::string(10, 'x')).ok());
    for (Message& m : net[1].Drain()) sent.push_back(std::move(m));
  }
  // 10 + 10 + 10 >= 25: the third Append fills the window.
  EXPECT_EQ(OfType(sent, MessageType::kAppend, 2).size(), 3u);
  EXPECT_EQ(net[1].status().progress[1].inflight_bytes, 30u);
}

// A probing follower gets one Append per heartbeat interval, not a stream.
TEST(FlowControl, ProbeSendsOneAppendAtATime) {
  TestNetwork net(3);
  net.Elect(1);
  net.Isolate(2);
  net[1].node().ReportUnreachable(2);  // the transport noticed: back to probing
  ASSERT_EQ(net[1].status().progress[1].state, ProgressState::kProbe);
  std::vector<Message> sent;
  for (int i = 0; i < 5; ++i) {
    ASSERT_TRUE(net[1].node().Propose("x").ok());
    for (Message& m : net[1].Drain()) sent.push_back(std::move(m));
  }
  EXPECT_EQ(OfType(sent, MessageType::kAppend, 2).size(), 1u);
}

// The leader may hold at most max_uncommitted_entries_bytes of uncommitted
// entries; beyond that proposals are dropped with a typed error.
TEST(FlowControl, UncommittedBytesCapDropsProposals) {
  TestNetwork net(3, {}, [](Config& c) { c.max_uncommitted_entries_bytes = 100; });
  net.Elect(1);
  net.Isolate(1);
  ASSERT_TRUE(net[1].node().Propose(std::string(60, 'a')).ok());
  auto dropped = net[1].node().Propose(std::string(60, 'b'));
  EXPECT_TRUE(IsError(dropped.status(), ErrorKind::kProposalDropped)) << dropped.status().ToString();
  EXPECT_EQ(dropped.status().code(), Code::kResourceExhausted);
  net.Heal();
  net.Settle();
  net.TickAll(2);
  EXPECT_TRUE(net[1].node().Propose(std::string(60, 'c')).ok()) << "room again after commit";
}

// Found by the simulator: a leader re-elected with an uncommitted tail counts
// it against the cap, else a flapping leader grows its backlog by the whole
// allowance every term.
TEST(FlowControl, UncommittedCapCountsTheInheritedTail) {
  TestNetwork net(3, {}, [](Config& c) { c.max_uncommitted_entries_bytes = 100; });
  net.Elect(1);
  net.Isolate(1);
  ASSERT_TRUE(net[1].node().Propose(std::string(60, 'a')).ok());
  net.Settle();
  net.Restart(1);
  net.Heal();
  // Nothing commits: the tail stays uncommitted across the new election.
  net.SetFilter([](Message& m) { return m.type != MessageType::kAppendResponse; });
  net.TickAll(12);  // past the others' leader stickiness
  net.Elect(1);
  ASSERT_EQ(net[1].status().role, Role::kLeader);
  auto dropped = net[1].node().Propose(std::string(60, 'b'));
  EXPECT_TRUE(IsError(dropped.status(), ErrorKind::kProposalDropped)) << dropped.status().ToString();
}

// Fast back-off: a follower with a long divergent tail (many entries of an old
// term) is repaired in a few round trips, not one per entry.
TEST(FastBackoff, DivergentTailIsSkippedPerTerm) {
  TestNetwork net(3, {}, [](Config& c) { c.check_quorum = false; });
  net.Elect(1);
  // Node 1 appends 200 entries nobody else sees, in its term.
  net.Isolate(1);
  for (int i = 0; i < 200; ++i) ASSERT_TRUE(net[1].node().Propose("stale").ok());
  net.Pump(net[1].Drain());
  // Nodes 2 and 3 move on with 50 entries of a later term.
  net.Heal();
  net.Isolate(1);
  for (int i = 0; i < 40 && net[2].status().role != Role::kLeader; ++i) {
    net[2].Tick();
    net[3].Tick();
    net.Settle();
  }
  const NodeId leader = net[2].status().role == Role::kLeader ? 2 : 3;
  ASSERT_EQ(net[leader].status().role, Role::kLeader);
  for (int i = 0; i < 50; ++i) ASSERT_TRUE(net[leader].node().Propose("new").ok());
  net.Pump(net[leader].Drain());
  net.Heal();
  const size_t before = net.delivered().size();
  net.TickAll(3);
  int rejections = 0;
  for (size_t i = before; i < net.delivered().size(); ++i) {
    const Message& m = net.delivered()[i];
    rejections += m.type == MessageType::kAppendResponse && m.reject && m.from == 1;
  }
  EXPECT_LE(rejections, 3) << "one rejection per divergent term, not per entry";
  EXPECT_EQ(net[1].status().last_index, net[leader].status().last_index);
  EXPECT_EQ(net[1].AppliedData().size(), 50u);
}

// A follower behind the leader's compaction point gets a snapshot, installs
// it, and continues from the log.
TEST(Snapshot, LaggingFollowerReceivesSnapshot) {
  TestNetwork net(3);
  net.Elect(1);
  net.Isolate(3);
  for (int i = 0; i < 20; ++i) ASSERT_TRUE(net.Propose(1, "e" + std::to_string(i)).ok());
  // The leader's host snapshots and compacts at its applied index.
  const uint64_t applied = net[1].status().applied;
  auto conf = net[1].node().ConfStateAt(applied);
  ASSERT_TRUE(conf.ok());
  ASSERT_TRUE(net[1].storage().CreateSnapshot(applied, *conf, "state@" + std::to_string(applied)).ok());
  ASSERT_TRUE(net[1].storage().Compact(applied).ok());
  net.Heal();
  net.TickAll(3);
  EXPECT_EQ(net[3].storage().snapshot().metadata.index, applied);
  EXPECT_EQ(net[3].storage().snapshot().data, "state@" + std::to_string(applied));
  EXPECT_EQ(net[3].status().commit, net[1].status().commit);
  ASSERT_TRUE(net.Propose(1, "after snapshot").ok());
  EXPECT_EQ(net[3].AppliedData().back(), "after snapshot");
  // It restarts from the snapshot, too.
  net.Restart(3);
  net.TickAll(3);
  EXPECT_EQ(net[3].status().commit, net[1].status().commit);
}

// A snapshot that failed to send: the leader probes again later.
TEST(Snapshot, ReportedFailureReturnsToProbe) {
  TestNetwork net(3);
  net.Elect(1);
  net.Isolate(3);
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(net.Propose(1, "e").ok());
  const uint64_t applied = net[1].status().applied;
  ASSERT_TRUE(net[1].storage().CreateSnapshot(applied, *net[1].node().ConfStateAt(applied), "s").ok());
  ASSERT_TRUE(net[1].storage().Compact(applied).ok());
  net.Heal();
  net.Ignore(MessageType::kSnapshot);
  net.TickAll(2);
  ASSERT_EQ(net[1].status().progress[2].state, ProgressState::kSnapshot);
  net[1].node().ReportSnapshot(3, SnapshotStatus::kFailed);
  EXPECT_EQ(net[1].status().progress[2].state, ProgressState::kProbe);
  net.Heal();
  net.TickAll(3);
  EXPECT_EQ(net[3].status().commit, net[1].status().commit);
}

// ------------------------------------------------------------------ Ready contract

// A candidate's vote requests and a voter's answers wait for persistence; a
// leader's Appends do not.
TEST(ReadyContract, MessagesThatPromiseDurableStateWaitForPersistence) {
  TestNode a(TestConfig(1), Voters({1, 2, 3}));
  a.node().Campaign();  // pre-vote first: pre-votes promise nothing
  Ready rd = a.node().GetReady();
  EXPECT_EQ(OfType(rd.messages, MessageType::kPreVote).size(), 2u);
  EXPECT_TRUE(rd.persisted_messages.empty());
  a.node().Advance(rd);
  for (NodeId from : {2, 3}) {
    Message grant;
    grant.type = MessageType::kPreVoteResponse;
    grant.from = from;
    grant.to = 1;
    grant.term = a.status().term + 1;
    ASSERT_TRUE(a.node().Step(grant).ok());
  }
  rd = a.node().GetReady();
  ASSERT_TRUE(rd.hard_state.has_value());
  EXPECT_EQ(rd.hard_state->vote, 1u);
  EXPECT_TRUE(rd.must_sync);
  EXPECT_TRUE(OfType(rd.messages, MessageType::kVote).empty());
  EXPECT_EQ(OfType(rd.persisted_messages, MessageType::kVote).size(), 2u);
}

TEST(ReadyContract, LeaderSendsAppendsBeforePersistingButCountsItselfOnlyAfter) {
  TestNetwork net(3);
  net.Elect(1);
  RawNode& leader = net[1].node();
  auto pos = leader.Propose("x");
  ASSERT_TRUE(pos.ok());
  Ready rd = leader.GetReady();
  ASSERT_EQ(rd.entries.size(), 1u);
  ASSERT_EQ(OfType(rd.messages, MessageType::kAppend).size(), 2u) << "sent before persisting";
  // Only follower 2 answers; the leader's own write is not durable yet, so
  // one acknowledgment out of three is not a quorum.
  std::vector<Message> to2 = OfType(rd.messages, MessageType::kAppend, 2);
  ASSERT_TRUE(net[2].node().Step(to2[0]).ok());
  auto answers = OfType(net[2].Drain(), MessageType::kAppendResponse);
  ASSERT_EQ(answers.size(), 1u);
  ASSERT_TRUE(leader.Step(answers[0]).ok());
  EXPECT_LT(leader.GetStatus().commit, pos->first_index);
  EXPECT_LT(leader.GetStatus().persisted_index, pos->first_index);
  // The host's fsync completes.
  ASSERT_TRUE(net[1].storage().Append(rd.entries).ok());
  leader.AckPersisted(rd.number);
  EXPECT_EQ(leader.GetStatus().persisted_index, pos->first_index);
  EXPECT_EQ(leader.GetStatus().commit, pos->first_index);
}

// Pipelined persistence: the host takes Ready N+1 before N is durable; the
// acknowledgment of N+1 covers N too.
TEST(ReadyContract, PipelinedReadysAcknowledgedOutOfBand) {
  TestNetwork net(1);
  net.Elect(1);
  RawNode& n = net[1].node();
  ASSERT_TRUE(n.Propose("a").ok());
  Ready r1 = n.GetReady();
  ASSERT_TRUE(n.Propose("b").ok());
  Ready r2 = n.GetReady();
  ASSERT_EQ(r1.entries.size(), 1u);
  ASSERT_EQ(r2.entries.size(), 1u);
  EXPECT_EQ(r2.entries[0].index, r1.entries[0].index + 1);
  EXPECT_FALSE(n.HasReady());
  ASSERT_TRUE(net[1].storage().Append(r1.entries).ok());
  ASSERT_TRUE(net[1].storage().Append(r2.entries).ok());
  n.AckPersisted(r2.number);
  EXPECT_EQ(n.GetStatus().commit, r2.entries[0].index);
  Ready r3 = n.GetReady();
  ASSERT_EQ(r3.committed_entries.size(), 2u);
  EXPECT_EQ(r3.committed_entries[0].data, "a");
  EXPECT_EQ(r3.committed_entries[1].data, "b");
  n.Advance(r3);
  EXPECT_EQ(n.GetStatus().applied, r2.entries[0].index);
}

// Restart keeps exactly the persisted state: un-acknowledged entries were
// never acknowledged to anyone, so losing them is fine.
TEST(ReadyContract, RestartFromStorageResumes) {
  TestNetwork net(3);
  net.Elect(1);
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(net.Propose(1, "e" + std::to_string(i)).ok());
  const NodeStatus before = net[2].status();
  net.Restart(2);
  const NodeStatus after = net[2].status();
  EXPECT_EQ(after.term, before.term);
  EXPECT_EQ(after.last_index, before.last_index);
  EXPECT_EQ(after.vote, before.vote);
  net.TickAll(2);
  // Applied from scratch again (Config::applied = snapshot index 0).
  EXPECT_EQ(net[2].AppliedData().size(), 3u);
}

}  // namespace
}  // namespace cairn::raft
