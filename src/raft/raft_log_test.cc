// The layers under the state machine: MemoryStorage, the log's persistence
// and apply bookkeeping, the Inflights window, membership along the log.
#include <gtest/gtest.h>

#include "raft/errors.h"
#include "raft/membership.h"
#include "raft/memory_storage.h"
#include "raft/progress.h"
#include "raft/raft_log.h"

namespace cairn::raft {
namespace {

std::vector<Entry> Entries(uint64_t first, std::vector<uint64_t> terms) {
  std::vector<Entry> out;
  for (size_t i = 0; i < terms.size(); ++i) {
    Entry e;
    e.index = first + i;
    e.term = terms[i];
    e.data = "d" + std::to_string(first + i);
    out.push_back(e);
  }
  return out;
}

TEST(MemoryStorage, AppendReplacesSuffixAndCompactKeepsTerms) {
  MemoryStorage s;
  ASSERT_TRUE(s.Append(Entries(1, {1, 1, 2, 2})).ok());
  ASSERT_TRUE(s.Append(Entries(3, {3})).ok());  // replaces 3..4
  EXPECT_EQ(s.LastIndex(), 3u);
  EXPECT_EQ(*s.Term(3), 3u);
  ASSERT_TRUE(s.Append(Entries(4, {3, 3, 3})).ok());
  ASSERT_TRUE(s.Compact(4).ok());
  EXPECT_EQ(s.FirstIndex(), 5u);
  EXPECT_EQ(*s.Term(4), 3u) << "the compaction point keeps its term";
  EXPECT_TRUE(IsError(s.Term(3).status(), ErrorKind::kCompacted));
  EXPECT_TRUE(IsError(s.Entries(4, 6, UINT64_MAX).status(), ErrorKind::kCompacted));
  EXPECT_TRUE(IsError(s.Term(9).status(), ErrorKind::kUnavailable));
  EXPECT_TRUE(IsError(s.Compact(3), ErrorKind::kCompacted));
  // Appending entries that start below the compaction point keeps the rest.
  ASSERT_TRUE(s.Append(Entries(3, {3, 3, 3, 4})).ok());
  EXPECT_EQ(s.LastIndex(), 6u);
  EXPECT_EQ(*s.Term(6), 4u);
}

TEST(MemoryStorage, EntriesRespectByteLimitButReturnOne) {
  MemoryStorage s;
  ASSERT_TRUE(s.Append(Entries(1, {1, 1, 1})).ok());  // 2 bytes each
  EXPECT_EQ(s.Entries(1, 4, 0)->size(), 1u);
  EXPECT_EQ(s.Entries(1, 4, 4)->size(), 2u);
  EXPECT_EQ(s.Entries(1, 4, UINT64_MAX)->size(), 3u);
}

TEST(MemoryStorage, SnapshotsReplaceAndMustAdvance) {
  MemoryStorage s;
  ASSERT_TRUE(s.Append(Entries(1, {1, 1, 1})).ok());
  ASSERT_TRUE(s.CreateSnapshot(2, ConfState{{1}, {}}, "state").ok());
  EXPECT_TRUE(IsError(s.CreateSnapshot(2, ConfState{{1}, {}}, "x"), ErrorKind::kSnapshotOutOfDate));
  Snapshot newer;
  newer.metadata = SnapshotMetadata{10, 4, ConfState{{1, 2}, {}}};
  ASSERT_TRUE(s.ApplySnapshot(newer).ok());
  EXPECT_EQ(s.FirstIndex(), 11u);
  EXPECT_EQ(s.LastIndex(), 10u);
  EXPECT_EQ(s.GetInitialState()->conf_state, (ConfState{{1, 2}, {}}));
  EXPECT_TRUE(IsError(s.ApplySnapshot(newer), ErrorKind::kSnapshotOutOfDate));
}

TEST(MemoryStorage, BootstrapWritesTheMembershipAsCommittedEntries) {
  MemoryStorage s;
  ASSERT_TRUE(s.Bootstrap(ConfState{{1, 2}, {3}}).ok());
  EXPECT_EQ(s.LastIndex(), 3u);
  EXPECT_EQ(s.hard_state(), (HardState{1, kNoNode, 3}));
  auto third = s.Entries(3, 4, UINT64_MAX);
  ASSERT_TRUE(third.ok());
  auto change = DecodeConfChange((*third)[0].data);
  ASSERT_TRUE(change.ok());
  EXPECT_EQ(change->type, ConfChangeType::kAddLearner);
  EXPECT_EQ(change->node_id, 3u);
  EXPECT_FALSE(s.Bootstrap(ConfState{{1}, {}}).ok()) << "only once";
}

// Entries handed out for persistence stay in the unstable tail until the host
// acknowledges them, and an acknowledgment for an entry that has since been
// overwritten (another term) does not count.
TEST(RaftLog, PersistenceAcknowledgmentsMatchIndexAndTerm) {
  MemoryStorage s;
  RaftLog log(&s, UINT64_MAX);
  ASSERT_TRUE(log.Init(0, 0).ok());
  log.Append(Entries(1, {1, 1, 1}));
  EXPECT_TRUE(log.HasEntriesToPersist());
  EXPECT_EQ(log.EntriesToPersist().size(), 3u);
  log.AcceptInProgress();
  EXPECT_FALSE(log.HasEntriesToPersist());
  EXPECT_EQ(log.PersistedIndex(), 0u);
  // Before the write completes, entries 2..3 are replaced by term 2.
  log.Append(Entries(2, {2, 2}));
  EXPECT_EQ(log.EntriesToPersist().size(), 2u) << "the replacement must be persisted again";
  ASSERT_TRUE(s.Append(Entries(1, {1, 1, 1})).ok());
  log.StableTo(3, 1);  // stale: 3 now has term 2
  EXPECT_EQ(log.PersistedIndex(), 0u);
  log.AcceptInProgress();
  ASSERT_TRUE(s.Append(Entries(2, {2, 2})).ok());
  log.StableTo(3, 2);
  EXPECT_EQ(log.PersistedIndex(), 3u);
  EXPECT_EQ(*log.Term(3), 2u);
}

// Committed entries are handed out only once they have been handed out for
// persistence, and only once.
TEST(RaftLog, CommittedEntriesFollowPersistence) {
  MemoryStorage s;
  RaftLog log(&s, UINT64_MAX);
  ASSERT_TRUE(log.Init(0, 0).ok());
  log.Append(Entries(1, {1, 1, 1}));
  log.CommitTo(3);
  EXPECT_FALSE(log.HasNextCommittedEntries()) << "not yet handed out for persistence";
  log.AcceptInProgress();
  ASSERT_TRUE(log.HasNextCommittedEntries());
  EXPECT_EQ(log.NextCommittedEntries().size(), 3u);
  log.AcceptApplying(3);
  EXPECT_FALSE(log.HasNextCommittedEntries());
  log.AppliedTo(3);
  EXPECT_EQ(log.applied(), 3u);
}

TEST(RaftLog, FindConflictByTermSkipsWholeTerms) {
  MemoryStorage s;
  RaftLog log(&s, UINT64_MAX);
  ASSERT_TRUE(log.Init(0, 0).ok());
  log.Append(Entries(1, {1, 1, 4, 4, 4, 6, 6}));
  EXPECT_EQ(log.FindConflictByTerm(7, 5), (std::pair<uint64_t, uint64_t>{5, 4}));
  EXPECT_EQ(log.FindConflictByTerm(7, 3), (std::pair<uint64_t, uint64_t>{2, 1}));
  EXPECT_EQ(log.FindConflictByTerm(7, 6), (std::pair<uint64_t, uint64_t>{7, 6}));
  EXPECT_EQ(log.FindConflictByTerm(7, 0), (std::pair<uint64_t, uint64_t>{0, 0}));
}

TEST(Inflights, CountAndByteLimits) {
  Inflights in(3, 100);
  in.Add(1, 10);
  in.Add(2, 10);
  EXPECT_FALSE(in.Full());
  in.Add(3, 10);
  EXPECT_TRUE(in.Full()) << "message count";
  in.FreeLE(2);
  EXPECT_EQ(in.count(), 1u);
  EXPECT_EQ(in.bytes(), 10u);
  in.Add(4, 95);
  EXPECT_TRUE(in.Full()) << "bytes";
  in.FreeFirstOne();
  EXPECT_EQ(in.count(), 1u);
  in.FreeLE(100);
  EXPECT_EQ(in.count(), 0u);
  for (uint64_t i = 10; i < 13; ++i) in.Add(i, 1);  // wraps around the ring
  EXPECT_TRUE(in.Full());
}

TEST(Membership, ValidateAndApplyOneChangeAtATime) {
  const ConfState three{{1, 2, 3}, {}};
  EXPECT_TRUE(ValidateConfChange(three, {ConfChangeType::kAddLearner, 4, ""}).ok());
  EXPECT_EQ(ApplyConfChange(three, {ConfChangeType::kAddLearner, 3, ""}), (ConfState{{1, 2}, {3}}));
  EXPECT_EQ(ApplyConfChange(three, {ConfChangeType::kRemoveNode, 9, ""}), three) << "invalid: no-op";
  MembershipLog log;
  log.Reset(0, {});
  Entry add;
  add.type = EntryType::kConfChange;
  add.index = 5;
  add.data = EncodeConfChange({ConfChangeType::kAddVoter, 1, ""});
  log.Append(add);
  add.index = 8;
  add.data = EncodeConfChange({ConfChangeType::kAddVoter, 2, ""});
  log.Append(add);
  EXPECT_EQ(log.Current(), (ConfState{{1, 2}, {}}));
  EXPECT_EQ(*log.At(6), (ConfState{{1}, {}}));
  log.TruncateFrom(7);
  EXPECT_EQ(log.Current(), (ConfState{{1}, {}}));
  log.CompactTo(6);
  EXPECT_TRUE(IsError(log.At(4).status(), ErrorKind::kCompacted));
  EXPECT_EQ(*log.At(6), (ConfState{{1}, {}}));
}

}  // namespace
}  // namespace cairn::raft
