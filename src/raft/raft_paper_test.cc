// Tests that follow the Raft paper ("In Search of an Understandable Consensus
// Algorithm", Ongaro & Ousterhout, 2014) section by section, in the style of
// etcd-raft's raft_paper_test.go. Each test names the section and the
// sentence it checks. Pre-vote and check quorum are off here: the paper
// describes plain Raft; they have their own tests in raft_test.cc.
#include <gtest/gtest.h>

#include <algorithm>

#include "raft/raft_test_util.h"

namespace cairn::raft {
namespace {

using testing::TestConfig;
using testing::TestNetwork;
using testing::TestNode;
using testing::Voters;

Config PaperConfig(NodeId id) {
  Config c = TestConfig(id);
  c.pre_vote = false;
  c.check_quorum = false;
  return c;
}

void Plain(Config& c) {
  c.pre_vote = false;
  c.check_quorum = false;
}

// A storage whose log starts after a snapshot at (1, term 1) with membership
// `conf`, followed by entries 2, 3, ... with the given terms.
std::unique_ptr<MemoryStorage> LogStorage(const ConfState& conf, const std::vector<uint64_t>& terms,
                                          HardState hs = {}) {
  auto storage = std::make_unique<MemoryStorage>();
  Snapshot snap;
  snap.metadata = SnapshotMetadata{1, 1, conf};
  EXPECT_TRUE(storage->ApplySnapshot(snap).ok());
  std::vector<Entry> entries;
  for (size_t i = 0; i < terms.size(); ++i) {
    Entry e;
    e.index = 2 + i;
    e.term = terms[i];
    e.data = "e" + std::to_string(2 + i);
    entries.push_back(e);
  }
  EXPECT_TRUE(storage->Append(entries).ok());
  if (hs.term == 0) hs.term = terms.empty() ? 1 : terms.back();
  if (hs.commit == 0) hs.commit = 1;
  storage->SetHardState(hs);
  return storage;
}

std::vector<Message> OfType(const std::vector<Message>& msgs, MessageType type) {
  std::vector<Message> out;
  for (const Message& m : msgs) {
    if (m.type == type) out.push_back(m);
  }
  return out;
}

Message Msg(MessageType type, NodeId from, NodeId to, uint64_t term) {
  Message m;
  m.type = type;
  m.from = from;
  m.to = to;
  m.term = term;
  return m;
}

// Elects node 1 in a 3-node cluster whose peers never answer, by handing it
// the vote responses directly. Returns its messages drained afterwards.
void MakeLeader(TestNode& n, std::vector<NodeId> peers = {2, 3}) {
  n.node().Campaign();
  n.Drain();
  const uint64_t term = n.status().term;
  for (NodeId p : peers) {
    Message v = Msg(MessageType::kVoteResponse, p, n.id(), term);
    ASSERT_TRUE(n.node().Step(v).ok());
  }
  ASSERT_EQ(n.status().role, Role::kLeader);
}

// ------------------------------------------------------------------ §5.1

// §5.1: "If one server's current term is smaller than the other's, then it
// updates its current term to the larger value. If a candidate or leader
// discovers that its term is out of date, it immediately reverts to follower."
TEST(RaftPaper_5_1, UpdateTermFromMessage) {
  for (Role start : {Role::kFollower, Role::kCandidate, Role::kLeader}) {
    TestNode n(PaperConfig(1), Voters({1, 2, 3}));
    if (start == Role::kCandidate) n.node().Campaign();
    if (start == Role::kLeader) MakeLeader(n);
    n.Drain();
    Message m = Msg(MessageType::kAppend, 2, 1, 10);
    m.index = 0;
    m.log_term = 0;
    ASSERT_TRUE(n.node().Step(m).ok());
    EXPECT_EQ(n.status().term, 10u) << RoleName(start);
    EXPECT_EQ(n.status().role, Role::kFollower) << RoleName(start);
    EXPECT_EQ(n.status().leader, 2u) << RoleName(start);
  }
}

// §5.1: "If a server receives a request with a stale term number, it rejects
// the request." (plain Raft: it is ignored)
TEST(RaftPaper_5_1, RejectStaleTermMessage) {
  TestNode n(PaperConfig(1), Voters({1, 2, 3}));
  MakeLeader(n);
  n.Drain();
  const uint64_t term = n.status().term;
  Message m = Msg(MessageType::kAppend, 2, 1, term - 1);
  ASSERT_TRUE(n.node().Step(m).ok());
  EXPECT_EQ(n.status().role, Role::kLeader);
  EXPECT_EQ(n.status().term, term);
}

// ------------------------------------------------------------------ §5.2

// §5.2: "When servers start up, they begin as followers."
TEST(RaftPaper_5_2, StartAsFollower) {
  TestNode n(PaperConfig(1), Voters({1, 2, 3}));
  EXPECT_EQ(n.status().role, Role::kFollower);
}

// §5.2: "Leaders send periodic heartbeats (AppendEntries RPCs that carry no
// log entries) to all followers in order to maintain their authority."
TEST(RaftPaper_5_2, LeaderBroadcastsHeartbeats) {
  TestNode n(PaperConfig(1), Voters({1, 2, 3}));
  MakeLeader(n);
  n.Drain();
  n.Tick(1);  // heartbeat_interval_ticks = 1
  auto beats = OfType(n.Drain(), MessageType::kHeartbeat);
  ASSERT_EQ(beats.size(), 2u);
  EXPECT_EQ(beats[0].to, 2u);
  EXPECT_EQ(beats[1].to, 3u);
  EXPECT_TRUE(beats[0].entries.empty());
}

// §5.2: "If a follower receives no communication over a period of time called
// the election timeout, then it ... begins an election ... it increments its
// current term and transitions to candidate state. It then votes for itself
// and issues RequestVote RPCs in parallel to each of the other servers."
TEST(RaftPaper_5_2, FollowerStartsElection) {
  TestNode n(PaperConfig(1), Voters({1, 2, 3}));
  const uint64_t term = n.status().term;
  n.Tick(2 * 10);
  EXPECT_EQ(n.status().role, Role::kCandidate);
  EXPECT_EQ(n.status().term, term + 1);
  EXPECT_EQ(n.status().vote, 1u);
  auto votes = OfType(n.Drain(), MessageType::kVote);
  ASSERT_EQ(votes.size(), 2u);
  for (const Message& v : votes) {
    EXPECT_EQ(v.term, term + 1);
    EXPECT_EQ(v.index, n.status().last_index);
  }
}

// §5.2: "If many followers become candidates at the same time, votes could be
// split ... each candidate ... starts a new election by incrementing its term."
TEST(RaftPaper_5_2, CandidateStartsNewElectionOnTimeout) {
  TestNode n(PaperConfig(1), Voters({1, 2, 3}));
  n.node().Campaign();
  n.Drain();
  const uint64_t term = n.status().term;
  n.Tick(2 * 10);
  EXPECT_EQ(n.status().role, Role::kCandidate);
  EXPECT_EQ(n.status().term, term + 1);
  EXPECT_EQ(OfType(n.Drain(), MessageType::kVote).size(), 2u);
}

// §5.2: "A candidate wins an election if it receives votes from a majority of
// the servers in the full cluster for the same term."
TEST(RaftPaper_5_2, LeaderElectionInOneRound) {
  struct Case {
    int size;
    std::map<NodeId, bool> votes;
    Role want;
  };
  const std::vector<Case> cases = {
      {1, {}, Role::kLeader},
      {3, {{2, true}, {3, true}}, Role::kLeader},
      {3, {{2, true}}, Role::kLeader},
      {5, {{2, true}, {3, true}, {4, true}, {5, true}}, Role::kLeader},
      {5, {{2, true}, {3, true}, {4, true}}, Role::kLeader},
      {5, {{2, true}, {3, true}}, Role::kLeader},
      {3, {{2, false}, {3, false}}, Role::kFollower},  // lost: back to follower
      {5, {{2, false}, {3, false}, {4, false}}, Role::kFollower},
      {5, {{2, true}, {3, false}, {4, false}}, Role::kCandidate},  // undecided
      {3, {}, Role::kCandidate},
  };
  for (const Case& c : cases) {
    std::vector<NodeId> ids;
    for (int i = 1; i <= c.size; ++i) ids.push_back(i);
    TestNode n(PaperConfig(1), Voters(ids));
    n.node().Campaign();
    n.Drain();
    const uint64_t term = n.status().term;
    for (const auto& [from, granted] : c.votes) {
      Message v = Msg(MessageType::kVoteResponse, from, 1, term);
      v.reject = !granted;
      ASSERT_TRUE(n.node().Step(v).ok());
    }
    EXPECT_EQ(n.status().role, c.want) << "size " << c.size << " votes " << c.votes.size();
    EXPECT_EQ(n.status().term, term);
  }
}

// §5.2: "Each server will vote for at most one candidate in a given term, on a
// first-come-first-served basis."
TEST(RaftPaper_5_2, FollowerVotesOncePerTerm) {
  struct Case {
    NodeId vote, from;
    bool reject;
  };
  for (const Case& c : std::vector<Case>{{kNoNode, 2, false},
                                         {kNoNode, 3, false},
                                         {2, 2, false},
                                         {3, 3, false},
                                         {2, 3, true},
                                         {3, 2, true}}) {
    TestNode n(PaperConfig(1), Voters({1, 2, 3}));
    if (c.vote != kNoNode) {
      // Cast the first vote in term 2.
      Message first = Msg(MessageType::kVote, c.vote, 1, 2);
      first.index = 3;
      first.log_term = 1;
      ASSERT_TRUE(n.node().Step(first).ok());
      n.Drain();
    }
    Message m = Msg(MessageType::kVote, c.from, 1, 2);
    m.index = 3;
    m.log_term = 1;
    ASSERT_TRUE(n.node().Step(m).ok());
    auto resp = OfType(n.Drain(), MessageType::kVoteResponse);
    ASSERT_EQ(resp.size(), 1u);
    EXPECT_EQ(resp[0].to, c.from);
    EXPECT_EQ(resp[0].reject, c.reject) << "voted " << c.vote << " asked by " << c.from;
  }
}

// §5.2: "While waiting for votes, a candidate may receive an AppendEntries RPC
// from another server claiming to be leader. If the leader's term ... is at
// least as large as the candidate's current term, then the candidate ...
// returns to follower state."
TEST(RaftPaper_5_2, CandidateFallsBackToFollower) {
  for (int extra : {0, 1}) {
    TestNode n(PaperConfig(1), Voters({1, 2, 3}));
    n.node().Campaign();
    n.Drain();
    const uint64_t term = n.status().term + extra;
    Message m = Msg(MessageType::kAppend, 2, 1, term);
    m.index = 3;
    m.log_term = 1;
    ASSERT_TRUE(n.node().Step(m).ok());
    EXPECT_EQ(n.status().role, Role::kFollower);
    EXPECT_EQ(n.status().term, term);
    EXPECT_EQ(n.status().leader, 2u);
  }
}

// §5.2: "Raft uses randomized election timeouts ... chosen randomly from a
// fixed interval." Here [election_timeout, 2 * election_timeout).
TEST(RaftPaper_5_2, ElectionTimeoutIsRandomized) {
  const int et = 10;
  std::set<int> seen;
  for (NodeId id = 1; id <= 200; ++id) {
    TestNode n(PaperConfig(id), Voters({id, id + 1000, id + 2000}));
    int ticks = 0;
    while (n.status().role == Role::kFollower) {
      n.Tick();
      ++ticks;
      ASSERT_LT(ticks, 2 * et + 1);
    }
    EXPECT_GE(ticks, et);
    EXPECT_LT(ticks, 2 * et);
    seen.insert(ticks);
  }
  EXPECT_GT(seen.size(), 5u) << "timeouts are not spread";
}

// §5.2: "...election timeouts are chosen randomly ... This spreads out the
// servers so that in most cases only a single server will time out."
TEST(RaftPaper_5_2, FollowersRarelyTimeOutTogether) {
  int conflicts = 0;
  const int rounds = 500;
  for (int round = 0; round < rounds; ++round) {
    std::vector<std::unique_ptr<TestNode>> nodes;
    for (NodeId id = 1; id <= 5; ++id) {
      nodes.push_back(std::make_unique<TestNode>(PaperConfig(id), Voters({1, 2, 3, 4, 5}),
                                                 round * 1000 + id));
    }
    int timed_out = 0;
    for (int tick = 0; tick < 20 && timed_out == 0; ++tick) {
      for (auto& n : nodes) {
        n->Tick();
        if (n->status().role == Role::kCandidate) ++timed_out;
      }
    }
    if (timed_out > 1) ++conflicts;
  }
  // etcd-raft's bound: at most 30% of rounds see two candidates at once.
  EXPECT_LE(conflicts, rounds * 3 / 10);
}

// ------------------------------------------------------------------ §5.3

// Acknowledges everything the leader sent to `peers` (as if they appended it).
void AckAll(TestNode& leader, const std::vector<Message>& msgs, std::vector<NodeId> peers) {
  for (const Message& m : msgs) {
    if (m.type != MessageType::kAppend) continue;
    if (std::find(peers.begin(), peers.end(), m.to) == peers.end()) continue;
    Message ack = Msg(MessageType::kAppendResponse, m.to, leader.id(), m.term);
    ack.index = m.index + m.entries.size();
    ASSERT_TRUE(leader.node().Step(ack).ok());
  }
}

// A leader of a 3-node cluster whose followers have acknowledged its no-op.
void MakeReplicatingLeader(TestNode& n) {
  MakeLeader(n);
  AckAll(n, n.Drain(), {2, 3});
  n.Drain();
}

// §5.3: "The leader appends the command to its log as a new entry, then issues
// AppendEntries RPCs in parallel to each of the other servers to replicate the
// entry." and "...includes the index and term of the entry in its log that
// immediately precedes the new entries."
TEST(RaftPaper_5_3, LeaderStartsReplication) {
  TestNode n(PaperConfig(1), Voters({1, 2, 3}));
  MakeReplicatingLeader(n);
  const NodeStatus before = n.status();
  auto pos = n.node().Propose("some data");
  ASSERT_TRUE(pos.ok());
  EXPECT_EQ(pos->first_index, before.last_index + 1);
  EXPECT_EQ(pos->term, before.term);
  EXPECT_EQ(n.status().last_index, before.last_index + 1);
  auto appends = OfType(n.Drain(), MessageType::kAppend);
  ASSERT_EQ(appends.size(), 2u);
  for (const Message& m : appends) {
    EXPECT_EQ(m.index, before.last_index);
    EXPECT_EQ(m.log_term, before.term);
    EXPECT_EQ(m.commit, before.commit);
    ASSERT_EQ(m.entries.size(), 1u);
    EXPECT_EQ(m.entries[0].data, "some data");
    EXPECT_EQ(m.entries[0].index, before.last_index + 1);
  }
}

// §5.3: "When the entry has been safely replicated, the leader applies the
// entry to its state machine ... A log entry is committed once the leader that
// created the entry has replicated it on a majority of the servers." and
// "[the leader] includes [the highest committed] index in future
// AppendEntries RPCs ... so that the other servers eventually find out."
TEST(RaftPaper_5_3, LeaderCommitsAndAppliesReplicatedEntry) {
  TestNode n(PaperConfig(1), Voters({1, 2, 3}));
  MakeReplicatingLeader(n);
  ASSERT_TRUE(n.node().Propose("x").ok());
  const uint64_t index = n.status().last_index;
  auto msgs = n.Drain();
  EXPECT_LT(n.status().commit, index);
  AckAll(n, msgs, {2});  // leader + 2 = majority of 3
  EXPECT_EQ(n.status().commit, index);
  auto after = n.Drain();
  ASSERT_FALSE(n.applied().empty());
  EXPECT_EQ(n.applied().back().data, "x");
  // Both followers learn the new commit index.
  auto appends = OfType(after, MessageType::kAppend);
  ASSERT_EQ(appends.size(), 2u);
  for (const Message& m : appends) EXPECT_EQ(m.commit, index);
}

// §5.3: "A log entry is committed once the leader ... has replicated it on a
// majority of the servers."
TEST(RaftPaper_5_3, LeaderCommitsOnlyWithMajority) {
  struct Case {
    int size;
    std::vector<NodeId> ackers;
    bool committed;
  };
  for (const Case& c : std::vector<Case>{{1, {}, true},
                                         {3, {}, false},
                                         {3, {2}, true},
                                         {3, {2, 3}, true},
                                         {5, {}, false},
                                         {5, {2}, false},
                                         {5, {2, 3}, true},
                                         {5, {2, 3, 4, 5}, true}}) {
    std::vector<NodeId> ids;
    for (int i = 1; i <= c.size; ++i) ids.push_back(i);
    std::vector<NodeId> peers(ids.begin() + 1, ids.end());
    TestNode n(PaperConfig(1), Voters(ids));
    MakeLeader(n, peers);
    AckAll(n, n.Drain(), peers);
    n.Drain();
    ASSERT_TRUE(n.node().Propose("x").ok());
    const uint64_t index = n.status().last_index;
    AckAll(n, n.Drain(), c.ackers);
    EXPECT_EQ(n.status().commit >= index, c.committed)
        << "size " << c.size << " acks " << c.ackers.size();
  }
}

// §5.3: "When the leader commits an entry, it also commits all preceding
// entries in the leader's log, including entries created by previous leaders."
TEST(RaftPaper_5_3, LeaderCommitsPrecedingEntries) {
  // Entries 2..3 from term 2 left by an earlier leader, uncommitted.
  auto storage = LogStorage(Voters({1, 2, 3}), {2, 2}, HardState{2, kNoNode, 1});
  TestNode n(PaperConfig(1), std::move(storage));
  MakeLeader(n);
  ASSERT_TRUE(n.node().Propose("x").ok());
  auto msgs = n.Drain();
  AckAll(n, msgs, {2, 3});
  EXPECT_EQ(n.status().commit, n.status().last_index);
  n.Drain();
  // Everything after the snapshot at index 1 is applied, old entries first.
  ASSERT_GE(n.applied().size(), 4u);
  EXPECT_EQ(n.applied()[0].index, 2u);
  EXPECT_EQ(n.applied()[0].term, 2u);
  EXPECT_EQ(n.applied().back().data, "x");
}

// §5.3: "Once a follower learns that a log entry is committed, it applies the
// entry to its local state machine (in log order)."
TEST(RaftPaper_5_3, FollowerAppliesCommittedEntries) {
  TestNode n(PaperConfig(1), Voters({1, 2, 3}));
  const uint64_t last = n.status().last_index;
  n.Drain();
  const size_t applied_before = n.applied().size();
  Message m = Msg(MessageType::kAppend, 2, 1, 2);
  m.index = last;
  m.log_term = 1;
  for (uint64_t i = 1; i <= 3; ++i) {
    Entry e;
    e.term = 2;
    e.index = last + i;
    e.data = "d" + std::to_string(i);
    m.entries.push_back(e);
  }
  m.commit = last + 2;
  ASSERT_TRUE(n.node().Step(m).ok());
  n.Drain();
  EXPECT_EQ(n.status().commit, last + 2);
  ASSERT_EQ(n.applied().size(), applied_before + 2);
  EXPECT_EQ(n.applied().back().data, "d2");
}

// §5.3: "If the follower does not find an entry in its log with the same index
// and term [as the preceding entry], then it refuses the new entries."
// The refusal carries a hint (last index whose term is <= the probed term) so
// the leader skips a term per round trip.
TEST(RaftPaper_5_3, FollowerChecksPrecedingEntry) {
  // Log after the snapshot at 1: 2 (term 1), 3 (term 2), 4 (term 2).
  struct Case {
    uint64_t prev_index, prev_term;
    bool reject;
    uint64_t hint_index, hint_term;
  };
  for (const Case& c : std::vector<Case>{
           {1, 1, false, 0, 0},   // the snapshot point matches
           {2, 1, false, 0, 0},
           {4, 2, false, 0, 0},
           {4, 3, true, 4, 2},    // same index, other term: hint at 4 (term 2 <= 3)
           {5, 2, true, 4, 2},    // beyond our log: hint at our last
           {3, 3, true, 3, 2},
           {4, 1, true, 2, 1},    // skip all of term 2
       }) {
    TestNode n(PaperConfig(1), LogStorage(Voters({1, 2, 3}), {1, 2, 2}, HardState{2, kNoNode, 1}));
    Message m = Msg(MessageType::kAppend, 2, 1, 2);
    m.index = c.prev_index;
    m.log_term = c.prev_term;
    ASSERT_TRUE(n.node().Step(m).ok());
    auto resp = OfType(n.Drain(), MessageType::kAppendResponse);
    ASSERT_EQ(resp.size(), 1u);
    EXPECT_EQ(resp[0].reject, c.reject) << c.prev_index << "/" << c.prev_term;
    if (c.reject) {
      EXPECT_EQ(resp[0].index, c.prev_index);
      EXPECT_EQ(resp[0].reject_hint, c.hint_index) << c.prev_index << "/" << c.prev_term;
      EXPECT_EQ(resp[0].log_term, c.hint_term) << c.prev_index << "/" << c.prev_term;
    }
  }
}

// §5.3: "If an existing entry conflicts with a new one (same index but
// different terms), delete the existing entry and all that follow it; append
// any new entries not already in the log."
TEST(RaftPaper_5_3, FollowerReplacesConflictingEntries) {
  struct Case {
    uint64_t prev_index, prev_term;
    std::vector<uint64_t> new_terms;  // entries from prev_index + 1
    std::vector<uint64_t> want;       // terms of entries 2..
  };
  for (const Case& c : std::vector<Case>{
           {3, 2, {3}, {1, 2, 3}},
           {2, 1, {3, 4}, {1, 3, 4}},
           {1, 1, {1}, {1, 2}},
           {1, 1, {1, 2}, {1, 2}},   // already there: nothing changes
           {1, 1, {3}, {3}},
       }) {
    TestNode n(PaperConfig(1), LogStorage(Voters({1, 2, 3}), {1, 2}, HardState{2, kNoNode, 1}));
    Message m = Msg(MessageType::kAppend, 2, 1, 4);
    m.index = c.prev_index;
    m.log_term = c.prev_term;
    for (size_t i = 0; i < c.new_terms.size(); ++i) {
      Entry e;
      e.index = c.prev_index + 1 + i;
      e.term = c.new_terms[i];
      m.entries.push_back(e);
    }
    ASSERT_TRUE(n.node().Step(m).ok());
    n.Drain();
    std::vector<uint64_t> got;
    for (uint64_t i = 2; i <= n.storage().LastIndex(); ++i) got.push_back(*n.storage().Term(i));
    EXPECT_EQ(got, c.want) << "prev " << c.prev_index;
  }
}

// §5.3, Figure 7: "the leader handles inconsistencies by forcing the
// followers' logs to duplicate its own" -- for each of the follower logs (a)
// to (f) of Figure 7. Index 1 (term 1) is the snapshot point here.
TEST(RaftPaper_5_3, LeaderForcesFollowerLogs) {
  const std::vector<uint64_t> leader_log = {1, 1, 4, 4, 5, 5, 6, 6, 6};
  const std::vector<std::vector<uint64_t>> followers = {
      {1, 1, 4, 4, 5, 5, 6, 6},                 // (a) missing entries
      {1, 1, 4},                                // (b)
      {1, 1, 4, 4, 5, 5, 6, 6, 6, 6},           // (c) extra uncommitted entry
      {1, 1, 4, 4, 5, 5, 6, 6, 6, 7, 7},        // (d) extra entries of term 7
      {1, 1, 4, 4, 4, 4},                       // (e) missing and extra
      {1, 1, 2, 2, 2, 3, 3, 3, 3, 3},           // (f) both, other terms
  };
  for (size_t f = 0; f < followers.size(); ++f) {
    TestNetwork net;
    const ConfState conf = Voters({1, 2, 3});
    net.Add(std::make_unique<TestNode>(PaperConfig(1),
                                       LogStorage(conf, leader_log, HardState{8, kNoNode, 1})));
    net.Add(std::make_unique<TestNode>(
        PaperConfig(2), LogStorage(conf, followers[f], HardState{followers[f].back(), kNoNode, 1})));
    // Node 3 does not exist; it "votes" for 1 so that 1 wins even against (d).
    net[1].node().Campaign();
    net.Pump(net[1].Drain());
    Message vote = Msg(MessageType::kVoteResponse, 3, 1, net[1].status().term);
    ASSERT_TRUE(net[1].node().Step(vote).ok());
    ASSERT_EQ(net[1].status().role, Role::kLeader) << "follower " << char('a' + f);
    net.Pump(net[1].Drain());
    ASSERT_TRUE(net.Propose(1, "x").ok());
    net.TickAll(3);
    const MemoryStorage& a = net[1].storage();
    const MemoryStorage& b = net[2].storage();
    ASSERT_EQ(a.LastIndex(), b.LastIndex()) << "follower " << char('a' + f);
    auto ea = a.Entries(2, a.LastIndex() + 1, UINT64_MAX);
    auto eb = b.Entries(2, b.LastIndex() + 1, UINT64_MAX);
    ASSERT_TRUE(ea.ok() && eb.ok());
    EXPECT_EQ(*ea, *eb) << "follower " << char('a' + f);
    EXPECT_EQ(net[2].status().commit, net[1].status().commit);
  }
}

// ------------------------------------------------------------------ §5.4

// §5.4.1: "RequestVote RPC ... includes information about the candidate's log"
// (the index and term of its last entry).
TEST(RaftPaper_5_4, VoteRequestCarriesLastEntry) {
  TestNode n(PaperConfig(1), LogStorage(Voters({1, 2, 3}), {2, 3}, HardState{3, kNoNode, 1}));
  n.node().Campaign();
  auto votes = OfType(n.Drain(), MessageType::kVote);
  ASSERT_EQ(votes.size(), 2u);
  for (const Message& v : votes) {
    EXPECT_EQ(v.term, 4u);
    EXPECT_EQ(v.index, 3u);
    EXPECT_EQ(v.log_term, 3u);
  }
}

// §5.4.1: "the voter denies its vote if its own log is more up-to-date than
// that of the candidate. ... If the logs have last entries with different
// terms, then the log with the later term is more up-to-date. If the logs end
// with the same term, then whichever log is longer is more up-to-date."
TEST(RaftPaper_5_4, VoterGrantsOnlyToUpToDateCandidates) {
  struct Case {
    std::vector<uint64_t> voter_log;  // terms from index 2
    uint64_t last_index, last_term;   // the candidate's
    bool reject;
  };
  for (const Case& c : std::vector<Case>{
           {{1}, 2, 1, false},        // same
           {{1}, 3, 1, false},        // longer
           {{1, 1}, 2, 1, true},      // shorter
           {{1}, 2, 2, false},        // later term
           {{1}, 5, 2, false},
           {{2}, 2, 1, true},         // earlier term
           {{2}, 9, 1, true},         // earlier term, even if longer
           {{2, 2}, 2, 2, true},      // same term, shorter
       }) {
    TestNode n(PaperConfig(1), LogStorage(Voters({1, 2, 3}), c.voter_log));
    Message m = Msg(MessageType::kVote, 2, 1, 10);
    m.index = c.last_index;
    m.log_term = c.last_term;
    ASSERT_TRUE(n.node().Step(m).ok());
    auto resp = OfType(n.Drain(), MessageType::kVoteResponse);
    ASSERT_EQ(resp.size(), 1u);
    EXPECT_EQ(resp[0].reject, c.reject) << c.last_index << "/" << c.last_term;
  }
}

// §5.4.2: "Raft never commits log entries from previous terms by counting
// replicas. Only log entries from the leader's current term are committed by
// counting replicas."
TEST(RaftPaper_5_4, LeaderCommitsOnlyCurrentTermByCounting) {
  // Entries 2 and 3 from term 2, uncommitted; the leader is elected in term 3.
  TestNode n(PaperConfig(1), LogStorage(Voters({1, 2, 3}), {2, 2}, HardState{2, kNoNode, 1}));
  MakeLeader(n);
  ASSERT_EQ(n.status().term, 3u);
  n.Drain();
  const uint64_t noop = n.status().last_index;  // 4, term 3
  for (uint64_t acked : {2u, 3u}) {
    Message ack = Msg(MessageType::kAppendResponse, 2, 1, 3);
    ack.index = acked;
    ASSERT_TRUE(n.node().Step(ack).ok());
    EXPECT_EQ(n.status().commit, 1u) << "committed an entry of term 2 by counting at " << acked;
  }
  Message ack = Msg(MessageType::kAppendResponse, 2, 1, 3);
  ack.index = noop;
  ASSERT_TRUE(n.node().Step(ack).ok());
  EXPECT_EQ(n.status().commit, noop) << "the term-3 entry commits, and 2..3 with it";
}

// §5.4.2, Figure 8: an entry of an earlier term stored on a majority can still
// be overwritten by a later leader, so counting it as committed would let two
// nodes apply different entries at the same index. Replays the figure on five
// nodes, with and without the (test-only) rule breaker that commits it anyway.
void ReplayFigure8(bool break_rule, std::map<NodeId, Entry>* applied_at_7) {
  TestNetwork net(5, {}, [&](Config& c) {
    Plain(c);
    c.max_size_per_msg_bytes = 1;  // one entry per Append, so (c) can split them
    c.testing.commit_entries_from_previous_terms = break_rule;
  });
  // (a) S1 leads term 2 and replicates entry 7 (term 2) to S2 only.
  net.Elect(1);
  ASSERT_EQ(net[1].status().term, 2u);
  for (NodeId id : {3, 4, 5}) net.Cut(1, id);
  ASSERT_TRUE(net.Propose(1, "from-term-2").ok());
  ASSERT_EQ(net[2].status().last_index, 7u);
  // (b) S1 is cut off; S5 leads term 3 with votes from S3, S4 and appends
  // entry 7 (term 3) that nobody else receives.
  net.Heal();
  net.Isolate(1);
  net.SetFilter([](Message& m) { return !(m.from == 5 && m.type == MessageType::kAppend); });
  net.Elect(5);
  ASSERT_EQ(net[5].status().role, Role::kLeader);
  ASSERT_EQ(net[5].status().term, 3u);
  // (c) S5 is cut off; S1 restarts, leads term 4 and replicates entry 7
  // (term 2) to S3, but not its own term-4 entry: entry 7 is now on a
  // majority (S1, S2, S3).
  net.Heal();
  net.Isolate(5);
  net.Restart(1);
  // (S3 and S4 also do not hear about commits beyond 6, so that if S1 wrongly
  // commits entry 7 only S1 and S2 act on it.)
  net.SetFilter([](Message& m) {
    if (m.to != 3 && m.to != 4) return true;
    if (m.type == MessageType::kAppend) {
      std::erase_if(m.entries, [](const Entry& e) { return e.term == 4; });
    }
    m.commit = std::min<uint64_t>(m.commit, 6);
    return true;
  });
  net.Elect(1);
  if (net[1].status().role != Role::kLeader) net.Elect(1);  // term 3 was taken
  ASSERT_EQ(net[1].status().role, Role::kLeader);
  ASSERT_EQ(net[1].status().term, 4u);
  net.TickAll(2);
  ASSERT_EQ(*net[3].storage().Term(7), 2u);
  if (!break_rule) {
    EXPECT_LT(net[1].status().commit, 7u) << "§5.4.2 violated";
  }
  // (d) S1 and S2 are cut off; S5 restarts and wins term 5 (S3 and S4 vote
  // for it: its last entry has term 3) and overwrites entry 7 on them.
  net.Heal();
  net.Isolate(1);
  net.Isolate(2);
  net.Restart(5);
  for (int attempt = 0; attempt < 3 && net[5].status().role != Role::kLeader; ++attempt) {
    net.Elect(5);
  }
  ASSERT_EQ(net[5].status().role, Role::kLeader);
  ASSERT_EQ(net[5].status().term, 5u);
  ASSERT_TRUE(net.Propose(5, "from-term-5").ok());
  // With the rule broken S1 and S2 have applied entry 7 of term 2 already;
  // reconnecting them would only trip their "overwriting a committed entry"
  // check. Without it, they simply catch up.
  if (!break_rule) net.Heal();
  net.TickAll(3);
  for (const auto& [id, node] : net.nodes()) {
    for (const Entry& e : node->applied()) {
      if (e.index == 7) (*applied_at_7)[id] = e;
    }
  }
}

TEST(RaftPaper_5_4, Figure8PreviousTermEntryIsNotCommittedByCounting) {
  std::map<NodeId, Entry> applied;
  ReplayFigure8(/*break_rule=*/false, &applied);
  ASSERT_EQ(applied.size(), 5u);
  for (const auto& [id, e] : applied) {
    EXPECT_EQ(e.term, 3u) << "node " << id;
    EXPECT_EQ(e, applied.begin()->second) << "node " << id;
  }
}

TEST(RaftPaper_5_4, Figure8BreakingTheRuleAppliesDivergentEntries) {
  std::map<NodeId, Entry> applied;
  ReplayFigure8(/*break_rule=*/true, &applied);
  ASSERT_TRUE(applied.count(1));
  ASSERT_TRUE(applied.count(5));
  EXPECT_EQ(applied[1].term, 2u) << "S1 applied the term-2 entry it counted as committed";
  EXPECT_EQ(applied[5].term, 3u);
  EXPECT_NE(applied[1], applied[5]) << "State Machine Safety is violated, as Figure 8 predicts";
}

}  // namespace
}  // namespace cairn::raft
