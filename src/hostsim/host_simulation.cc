#include "hostsim/host_simulation.h"

#include <stdlib.h>

#include <algorithm>
#include <chrono>
#include <deque>
#include <filesystem>
#include <functional>
#include <sstream>
#include <unordered_map>

#include "common/check.h"
#include "common/clock.h"
#include "hostsim/crash_env.h"
#include "server/log_store.h"
#include "server/raft_host.h"
#include "sim/host.h"
#include "sim/simulation.h"
#include "wal/wal.h"

namespace cairn::hostsim {
namespace fs = std::filesystem;
namespace {

constexpr uint64_t kMaxSteps = 5'000'000;
constexpr int64_t kProbeIntervalMs = 20;

class SimClock final : public Clock {
 public:
  explicit SimClock(const int64_t* now) : now_(now) {}
  int64_t NowMs() const override { return *now_; }

 private:
  const int64_t* now_;
};

// What the database holds besides the log base: the state machine.
struct DbState {
  uint64_t applied = 0;
  uint64_t hash = 0;
  std::set<NodeId> removed;
};
struct Db {
  DbState state;
  server::LogBase base;
};

}  // namespace

std::string HostSimStats::ToString() const {
  std::ostringstream out;
  out << "steps=" << steps << " turns=" << turns << " sent=" << messages_sent << " proposals=" << proposals
      << " accepted=" << proposals_accepted << " forwarded=" << proposals_forwarded
      << " refused=" << proposals_refused << " applied=" << entries_applied << " reads=" << reads_served << "/"
      << reads_started << " leaders=" << leaders << " crashes=" << crashes << " writes_lost=" << writes_lost
      << " partitions=" << partitions << " snapshots=" << snapshots_installed << " compactions=" << compactions
      << " conf_changes=" << conf_changes << " retired=" << retired << " transfers=" << transfers
      << " recovery_ms=" << recovery_ms;
  return out.str();
}

void HostSimStats::Add(const HostSimStats& o) {
  steps += o.steps;
  turns += o.turns;
  messages_sent += o.messages_sent;
  proposals += o.proposals;
  proposals_accepted += o.proposals_accepted;
  proposals_forwarded += o.proposals_forwarded;
  proposals_refused += o.proposals_refused;
  entries_applied += o.entries_applied;
  reads_started += o.reads_started;
  reads_served += o.reads_served;
  crashes += o.crashes;
  writes_lost += o.writes_lost;
  partitions += o.partitions;
  snapshots_installed += o.snapshots_installed;
  compactions += o.compactions;
  conf_changes += o.conf_changes;
  retired += o.retired;
  transfers += o.transfers;
  leaders += o.leaders;
  recovery_ms = std::max(recovery_ms, o.recovery_ms);
}

Result<HostSimOptions> HostSimOptions::ForSeed(const std::string& profile, uint64_t seed) {
  if (profile.rfind("mutation-", 0) == 0) {
    return Status(Code::kInvalidArgument, "mutation profiles change the core; the host simulator runs it as is");
  }
  auto sim = sim::SimOptions::ForSeed(profile, seed);
  if (!sim.ok()) return sim.status();
  HostSimOptions o;
  o.sim = std::move(*sim);
  raft::SplitMix64 dice(seed ^ 0x4057c0de5eedULL);
  o.log_retention_entries = 5 + dice.Uniform(200);
  o.proposal_bytes = 20 + dice.Uniform(200);
  o.apply_delay_ms = static_cast<int64_t>(dice.Uniform(8));
  o.wal_buffer_bytes = 256 + dice.Uniform(16 << 10);
  return o;
}

std::string HostSimOptions::Repro() const {
  return "make host-soak SEED=" + std::to_string(sim.seed) + " PROFILE=" + sim.profile + " TRACE=1";
}

// ---------------------------------------------------------------- the world

struct HostSimulation::World {
  enum class EventType {
    kDeliver, kForward, kRefuse, kTurn, kApply, kPropose, kRead, kPartition, kHeal, kCrash, kRestart,
    kTransfer, kConfChange, kHealAll, kLivenessProbe, kSnapshotReport, kArmedCrash,
  };
  struct Event {
    int64_t at = 0;
    uint64_t seq = 0;
    EventType type = EventType::kTurn;
    NodeId node = 0;
    uint64_t incarnation = 0;
    raft::Message message;
    NodeId from = 0;
    std::vector<std::pair<uint64_t, std::string>> proposals;
  };
  struct Member;

  class Transport final : public server::Transport {
   public:
    Transport(World* w, NodeId from) : w_(w), from_(from) {}
    void Send(std::vector<raft::Message> messages) override {
      if (w_->Dead(from_)) return;  // the power failed during this turn
      for (raft::Message& m : messages) w_->Send(from_, std::move(m));
    }
    void Forward(raft::NodeId to, std::vector<std::pair<uint64_t, std::string>> proposals) override {
      if (w_->Dead(from_)) return;
      w_->stats.proposals_forwarded += proposals.size();
      if (w_->Chance(w_->so.drop_rate)) return;  // the waiters time out
      Event e;
      e.type = EventType::kForward;
      e.node = to;
      e.from = from_;
      e.proposals = std::move(proposals);
      w_->Schedule(std::move(e), w_->now + w_->Between(w_->so.min_delay_ms, w_->so.max_delay_ms));
    }
    void Refuse(raft::NodeId to, uint64_t id, const Status& status) override {
      (void)id;
      (void)status;
      if (w_->Dead(from_)) return;
      Event e;
      e.type = EventType::kRefuse;
      e.node = to;
      e.from = from_;
      w_->Schedule(std::move(e), w_->now + w_->Between(w_->so.min_delay_ms, w_->so.max_delay_ms));
    }
    void ForwardLeaseRenewals(raft::NodeId, std::vector<int64_t>) override {}

   private:
    World* const w_;
    const NodeId from_;
  };

  struct Member {
    NodeId id = 0;
    std::string dir;
    std::unique_ptr<CrashEnv> env;
    uint64_t incarnation = 0;
    bool retired = false;
    bool removed_self = false;  // applied its own removal (stops after the turn)
    Db durable;
    Db live;
    std::vector<DbState> unsynced;  // applied batches since the database's last sync
    std::deque<raft::Entry> apply_queue;
    bool apply_scheduled = false;
    std::vector<std::pair<uint64_t, std::vector<server::RaftHost::ReadCallback>>> reads;
    uint64_t serving_index = 0;
    std::unordered_map<uint64_t, uint64_t> hash_at;  // bookkeeping: chain hash by applied index
    sim::LogShadow shadow;
    std::unique_ptr<wal::Wal> wal;
    std::unique_ptr<server::LogStore> store;
    std::unique_ptr<Transport> transport;
    std::unique_ptr<raft::SplitMix64> random;
    std::unique_ptr<server::RaftHost> host;
    bool up() const { return host != nullptr; }
  };

  World(HostSimOptions options, std::ostream* trace_out)
      : o(std::move(options)), so(o.sim), rng(so.seed * 0x9e3779b97f4a7c15ULL + 29), trace(trace_out) {}

  HostSimOptions o;
  sim::SimOptions& so;
  raft::SplitMix64 rng;
  std::ostream* trace;
  sim::SafetyChecker checker;
  HostSimStats stats;
  int64_t now = 0;
  uint64_t step = 0;
  uint64_t next_seq = 0;
  SimClock clock{&now};
  std::vector<Event> queue;
  std::string root;
  std::map<NodeId, std::unique_ptr<Member>> members;
  NodeId next_node_id = 1;
  std::set<std::pair<NodeId, NodeId>> blocked;
  std::map<std::pair<NodeId, NodeId>, int64_t> link_last_delivery;
  bool partitioned = false;
  bool healing = false;
  int64_t heal_started_at = 0;
  uint64_t next_proposal = 1;
  uint64_t next_read = 0;
  std::unordered_map<uint64_t, std::string> proposal_data;  // id -> entry data
  std::unordered_multimap<uint64_t, std::pair<uint64_t, uint64_t>> positions;  // index -> (term, id)
  std::unordered_map<std::string, uint64_t> applied_at;  // a proposal's data -> its index
  std::map<std::pair<NodeId, uint64_t>, DbState> images;  // (member, index) -> snapshot image
  std::set<uint64_t> leader_terms;
  std::string liveness_marker;
  int64_t marker_proposed_at = 0;
  uint64_t marker_id = 0;
  bool marker_refused = false;
  uint64_t marker_index = 0;
  bool voters_live = false;

  // ------------------------------------------------------------ helpers
  uint64_t Uniform(uint64_t bound) { return rng.Uniform(bound); }
  int64_t Between(int64_t lo, int64_t hi) {
    return lo + static_cast<int64_t>(rng.Uniform(static_cast<uint64_t>(std::max<int64_t>(0, hi - lo) + 1)));
  }
  bool Chance(double p) { return static_cast<double>(rng.Uniform(1000000)) < p * 1e6; }
  void Trace(const std::string& line) {
    if (trace) *trace << "[" << now << "ms #" << step << "] " << line << "\n";
  }
  void Fail(const std::string& what) { checker.Fail(step, what); }

  static bool Later(const Event& a, const Event& b) { return a.at != b.at ? a.at > b.at : a.seq > b.seq; }
  void Schedule(Event e, int64_t at) {
    e.at = at;
    e.seq = next_seq++;
    queue.push_back(std::move(e));
    std::push_heap(queue.begin(), queue.end(), Later);
  }
  void Schedule(EventType type, int64_t at, NodeId node = 0, uint64_t incarnation = 0) {
    Event e;
    e.type = type;
    e.node = node;
    e.incarnation = incarnation;
    Schedule(std::move(e), at);
  }
  void ScheduleNext(EventType type, int64_t mean_interval_ms) {
    if (mean_interval_ms > 0) Schedule(type, now + Between(1, 2 * mean_interval_ms));
  }

  // The member's power failed in the middle of its current turn (CrashEnv
  // armed): nothing it does from then on leaves the process.
  bool Dead(NodeId id) {
    Member* m = Find(id);
    return m == nullptr || m->env->crashed();
  }

  Member* Find(NodeId id) {
    auto it = members.find(id);
    return it == members.end() ? nullptr : it->second.get();
  }
  std::vector<Member*> UpMembers() {
    std::vector<Member*> out;
    for (auto& [id, m] : members) {
      if (m->up()) out.push_back(m.get());
    }
    return out;
  }
  Member* FindLeader() {
    Member* best = nullptr;
    for (auto& [id, m] : members) {
      if (!m->up() || !m->host->is_leader()) continue;
      if (best == nullptr || m->host->term() > best->host->term()) best = m.get();
    }
    return best;
  }

  // ------------------------------------------------------------ network
  void Send(NodeId from, raft::Message m) {
    ++stats.messages_sent;
    if (m.type == raft::MessageType::kSnapshot && m.snapshot) {
      // The transport streams the image the data names (the server: a
      // checkpoint of the database at that index).
      auto it = images.find({from, m.snapshot->metadata.index});
      CHECK(it != images.end()) << "no image for snapshot " << m.snapshot->metadata.index << " of " << from;
      auto snap = std::make_shared<raft::Snapshot>(*m.snapshot);
      snap->data = sim::EncodeState(it->second.applied, it->second.hash, it->second.removed);
      m.snapshot = std::move(snap);
    }
    const bool own_term_append =
        m.type == raft::MessageType::kAppend && !m.entries.empty() && m.entries.back().term == m.term;
    if (Chance(so.drop_rate) || (own_term_append && Chance(so.drop_own_term_appends_rate))) {
      if (m.type == raft::MessageType::kSnapshot) ReportSnapshot(m, false, now + Between(so.min_delay_ms, so.max_delay_ms));
      return;
    }
    const int copies = Chance(so.duplicate_rate) ? 2 : 1;
    for (int i = 0; i < copies; ++i) {
      int64_t at = now + Between(so.min_delay_ms, so.max_delay_ms);
      if (Chance(so.long_delay_rate)) {
        at = now + Between(so.max_delay_ms, so.long_delay_ms);
      } else {
        int64_t& last = link_last_delivery[{m.from, m.to}];
        at = std::max(at, last);
        last = at;
      }
      Event e;
      e.type = EventType::kDeliver;
      e.node = m.to;
      e.message = i + 1 < copies ? m : std::move(m);
      Schedule(std::move(e), at);
    }
  }

  void ReportSnapshot(const raft::Message& m, bool delivered, int64_t at) {
    Event e;
    e.type = EventType::kSnapshotReport;
    e.node = m.from;
    e.message.to = m.to;
    e.message.reject = !delivered;
    Schedule(std::move(e), at);
  }

  bool LinkUp(NodeId from, NodeId to) { return !blocked.count({from, to}); }

  // ------------------------------------------------------------ a member's life
  Member& AddMember(NodeId id) {
    auto m = std::make_unique<Member>();
    m->id = id;
    m->dir = root + "/" + std::to_string(id) + "/wal";
    m->env = std::make_unique<CrashEnv>(o.lying_sync);
    m->transport = std::make_unique<Transport>(this, id);
    m->hash_at[0] = 0;
    fs::create_directories(m->dir);
    Member& ref = *m;
    members[id] = std::move(m);
    return ref;
  }

  wal::WalOptions WalOptionsFor(Member& m) {
    wal::WalOptions wo;
    wo.segment_bytes = o.segment_bytes;
    wo.max_buffer_bytes = o.wal_buffer_bytes;
    wo.env = m.env.get();
    return wo;
  }

  void Bootstrap(Member& m, const raft::ConfState& initial) {
    auto w = wal::Wal::Open(m.dir, WalOptionsFor(m));
    CHECK(w.ok()) << w.status().ToString();
    std::vector<raft::ConfChange> changes;
    for (NodeId v : initial.voters) changes.push_back({raft::ConfChangeType::kAddVoter, v, ""});
    for (NodeId l : initial.learners) changes.push_back({raft::ConfChangeType::kAddLearner, l, ""});
    Status s = server::WriteFoundingEntries(w->get(), changes);
    CHECK(s.ok()) << s.ToString();
  }

  // Makes everything the database applied so far durable (a synced RocksDB
  // write persists every earlier one).
  void SyncDb(Member& m) {
    if (m.env->crashed()) return;
    m.durable = m.live;
    m.unsynced.clear();
  }

  void Start(Member& m) {
    CHECK(!m.up() && !m.retired);
    ++m.incarnation;
    m.env->Restart();
    m.live = m.durable;
    m.unsynced.clear();
    m.apply_queue.clear();
    m.apply_scheduled = false;
    m.reads.clear();
    m.removed_self = false;
    auto w = wal::Wal::Open(m.dir, WalOptionsFor(m));
    if (!w.ok()) return Fail("member " + std::to_string(m.id) + " cannot open its log: " + w.status().ToString());
    m.wal = std::move(*w);
    if (Status s = m.wal->Maintain(); !s.ok()) return Fail("log Maintain: " + s.ToString());
    Member* mp = &m;
    auto store = server::LogStore::Open(m.wal.get(), m.durable.base, [this, mp](const server::LogBase& b) {
      if (b.index > mp->live.base.index) ++stats.compactions;
      mp->live.base = b;
      SyncDb(*mp);
      return Status::Ok();
    });
    if (!store.ok()) {
      return Fail("member " + std::to_string(m.id) + " cannot open its log store: " + store.status().ToString());
    }
    m.store = std::move(*store);
    m.store->SetSnapshotSource([this, mp]() -> Result<uint64_t> {
      images[{mp->id, mp->live.state.applied}] = mp->live.state;
      return mp->live.state.applied;
    });
    const uint64_t applied = m.live.state.applied;
    if (m.store->LastIndex() < applied) {
      return Fail("member " + std::to_string(m.id) + " restarts with a log ending at " +
                  std::to_string(m.store->LastIndex()) + " but a database that applied " + std::to_string(applied));
    }
    if (applied < m.live.base.index) {
      return Fail("member " + std::to_string(m.id) + " applied " + std::to_string(applied) +
                  " but its log starts after " + std::to_string(m.live.base.index));
    }
    if (Status s = server::AlignHardState(m.wal.get(), m.live.base, applied); !s.ok()) return Fail(s.ToString());

    // The checker's view of this member's log is what survived.
    const server::LogBase& base = m.live.base;
    auto base_hash = m.hash_at.find(base.index);
    if (base_hash == m.hash_at.end()) return Fail("no state hash known at the log base " + std::to_string(base.index));
    m.shadow.Reset(base.index, base.term, base_hash->second);
    const uint64_t last = m.store->LastIndex();
    if (last > base.index) {
      auto entries = m.store->Entries(base.index + 1, last + 1, UINT64_MAX);
      if (!entries.ok()) return Fail("reading the log back: " + entries.status().ToString());
      if (!m.shadow.Append(*entries)) return Fail("the log read back has a gap");
      std::vector<sim::SafetyChecker::EntryMark> marks;
      for (uint64_t i = base.index + 1; i <= last; ++i) marks.push_back({i, m.shadow.TermAt(i), m.shadow.HashAt(i)});
      checker.OnDurableEntries(step, m.id, marks);
    }
    checker.OnRestart(m.id);
    checker.OnApplied(step, m.id, applied, m.live.state.hash);

    server::RaftHostOptions ro;
    ro.raft = so.raft;
    ro.raft.id = m.id;
    ro.raft.applied = applied;
    m.random = std::make_unique<raft::SplitMix64>(so.seed * 1000003 + m.id * 7919 + m.incarnation);
    ro.raft.random = m.random.get();
    ro.tick_interval_ms = so.tick_ms;
    ro.own_thread = false;
    ro.max_inbox = 1 << 20;
    ro.log_retention_entries = o.log_retention_entries;
    ro.read_retry_ms = 10 * so.tick_ms;
    ro.request_timeout_ms = 100 * so.tick_ms;
    m.host = std::make_unique<server::RaftHost>(ro, m.store.get(), m.transport.get(), &clock, HooksFor(m));
    Status s = m.host->Start();
    if (!s.ok()) {
      m.host.reset();
      return Fail("member " + std::to_string(m.id) + " cannot start its host: " + s.ToString());
    }
    if (trace) Trace("member " + std::to_string(m.id) + " starts at applied " + std::to_string(applied) +
                     ", log (" + std::to_string(base.index) + ", " + std::to_string(last) + "]");
    Schedule(EventType::kTurn, now + Between(1, so.tick_ms), m.id, m.incarnation);
    Turn(m);
  }

  void Crash(Member& m) {
    if (!m.up()) return;
    // The host goes first: what it still held answers "stopped" (ignored).
    m.host.reset();
    // RocksDB's WAL keeps a prefix of the unsynced batches.
    if (!m.unsynced.empty()) {
      const size_t keep = Uniform(m.unsynced.size() + 1);
      if (keep > 0) m.durable.state = m.unsynced[keep - 1];
    }
    const size_t lost = m.env->Crash(rng);
    stats.writes_lost += lost;
    m.store.reset();
    m.wal.reset();
    m.apply_queue.clear();
    m.reads.clear();
    m.unsynced.clear();
    ++m.incarnation;
    if (trace) Trace("member " + std::to_string(m.id) + " crashes; " + std::to_string(lost) + " log writes lost");
  }

  void Retire(Member& m, const std::string& why) {
    if (m.retired) return;
    Crash(m);
    m.retired = true;
    ++stats.retired;
    if (trace) Trace("member " + std::to_string(m.id) + " stops for good: " + why);
  }

  // One turn of the member's host, as its thread would run on waking.
  void Turn(Member& m) {
    if (!m.up()) return;
    ++stats.turns;
    m.host->Turn();
    if (!m.up()) return;
    if (m.env->crashed()) {
      // The power failed during one of the turn's log writes.
      Crash(m);
      ScheduleRestart(m);
      return;
    }
    if (Status s = m.wal->Maintain(); !s.ok()) Fail("log Maintain: " + s.ToString());
    if (m.removed_self) Retire(m, "applied its own removal");
  }

  server::RaftHostHooks HooksFor(Member& m) {
    Member* mp = &m;
    const uint64_t inc = m.incarnation;
    server::RaftHostHooks h;
    h.apply = [this, mp](std::vector<raft::Entry> entries) {
      for (raft::Entry& e : entries) mp->apply_queue.push_back(std::move(e));
      if (!mp->apply_scheduled) {
        mp->apply_scheduled = true;
        Schedule(EventType::kApply, now + Between(0, 2 * o.apply_delay_ms), mp->id, mp->incarnation);
      }
      return true;
    };
    h.applied_index = [mp] { return mp->live.state.applied; };
    h.sync_applied = [this, mp] {
      SyncDb(*mp);
      return Status::Ok();
    };
    h.accepted = [this](uint64_t id, uint64_t term, uint64_t index) {
      ++stats.proposals_accepted;
      positions.emplace(index, std::make_pair(term, id));
    };
    h.refused = [this, mp](uint64_t id, const Status& s) {
      ++stats.proposals_refused;
      if (id == marker_id) marker_refused = true;
      if (trace && healing) Trace("member " + std::to_string(mp->id) + " refuses proposal " + std::to_string(id) + ": " + s.ToString());
    };
    h.on_leader_change = [this, mp](raft::NodeId leader, uint64_t term) {
      if (trace) Trace("member " + std::to_string(mp->id) + " sees leader " + std::to_string(leader) + " in term " +
                       std::to_string(term));
    };
    h.on_log_full = [this](const Status& s) { Fail("log full: " + s.ToString()); };
    h.install_snapshot = [this, mp](const raft::Snapshot& snap) { return InstallSnapshot(*mp, snap); };
    h.on_read_index = [this, mp](uint64_t index, std::vector<server::RaftHost::ReadCallback> reads) {
      if (mp->env->crashed()) return;
      mp->reads.emplace_back(index, std::move(reads));
      ServeReads(*mp);
    };
    h.on_persisted = [this, mp](const raft::Ready& rd) { OnPersisted(*mp, rd); };
    (void)inc;
    return h;
  }

  void OnPersisted(Member& m, const raft::Ready& rd) {
    if (m.env->crashed()) return;  // what the dead process thought was written
    if (rd.snapshot) {
      uint64_t index = 0, hash = 0;
      std::set<NodeId> removed;
      CHECK(sim::DecodeState(rd.snapshot->data, &index, &hash, &removed));
      m.shadow.Reset(rd.snapshot->metadata.index, rd.snapshot->metadata.term, hash);
    }
    if (!rd.entries.empty()) {
      if (!rd.must_sync) return Fail("member " + std::to_string(m.id) + " appended entries without a sync");
      if (!m.shadow.Append(rd.entries)) {
        return Fail("member " + std::to_string(m.id) + " appended entries from " +
                    std::to_string(rd.entries.front().index) + " after a log ending at " +
                    std::to_string(m.shadow.last_index()));
      }
      std::vector<sim::SafetyChecker::EntryMark> marks;
      for (const raft::Entry& e : rd.entries) marks.push_back({e.index, e.term, m.shadow.HashAt(e.index)});
      checker.OnDurableEntries(step, m.id, marks);
    }
    if (rd.soft_state && rd.soft_state->role == raft::Role::kLeader) {
      leader_terms.insert(m.host->term());
      checker.OnLeader(step, m.id, m.host->term(), m.shadow);
      if (trace) Trace("member " + std::to_string(m.id) + " leads term " + std::to_string(m.host->term()));
    }
    if (rd.hard_state) checker.OnCommit(step, m.id, rd.hard_state->term, m.shadow, rd.hard_state->commit);
  }

  void ApplyOne(Member& m, const raft::Entry& e) {
    DbState& st = m.live.state;
    if (e.index != st.applied + 1) {
      return Fail("member " + std::to_string(m.id) + " applies " + std::to_string(e.index) + " after " +
                  std::to_string(st.applied));
    }
    st.hash = sim::ChainHash(st.hash, e);
    st.applied = e.index;
    m.hash_at[e.index] = st.hash;
    if (e.type == raft::EntryType::kConfChange) {
      auto change = raft::DecodeConfChange(e.data);
      if (change.ok() && change->type == raft::ConfChangeType::kRemoveNode) {
        st.removed.insert(change->node_id);
        if (change->node_id == m.id) m.removed_self = true;
      }
    } else if (!e.data.empty() && e.data[0] == 'w') {
      auto [it, fresh] = applied_at.emplace(e.data, e.index);
      if (!fresh && it->second != e.index) {
        return Fail("a proposal was applied twice, at " + std::to_string(it->second) + " and " +
                    std::to_string(e.index) + ": " + e.data.substr(0, 24));
      }
    } else if (healing && marker_index == 0 && e.data.rfind("live-", 0) == 0) {
      marker_index = e.index;
      if (trace) Trace("liveness marker committed at " + std::to_string(e.index));
    }
    // A server's waiter completes the proposal it placed at (term, index)
    // when an entry of that term is applied there: it must be that proposal.
    auto range = positions.equal_range(e.index);
    for (auto it = range.first; it != range.second; ++it) {
      if (it->second.first != e.term) continue;
      auto data = proposal_data.find(it->second.second);
      if (data != proposal_data.end() && data->second != e.data) {
        return Fail("the host placed proposal " + std::to_string(it->second.second) + " at (term " +
                    std::to_string(e.term) + ", index " + std::to_string(e.index) +
                    ") but another entry of that term was applied there");
      }
    }
    ++stats.entries_applied;
    checker.OnApplied(step, m.id, st.applied, st.hash);
  }

  void ApplyBatch(Member& m) {
    m.apply_scheduled = false;
    const size_t n = std::min<size_t>(m.apply_queue.size(), 1 + Uniform(64));
    for (size_t i = 0; i < n && checker.ok(); ++i) {
      raft::Entry e = std::move(m.apply_queue.front());
      m.apply_queue.pop_front();
      ApplyOne(m, e);
    }
    m.unsynced.push_back(m.live.state);
    ServeReads(m);
    if (!m.apply_queue.empty()) {
      m.apply_scheduled = true;
      Schedule(EventType::kApply, now + Between(0, 2 * o.apply_delay_ms), m.id, m.incarnation);
    }
    if (m.removed_self) Retire(m, "applied its own removal");
  }

  Status InstallSnapshot(Member& m, const raft::Snapshot& snap) {
    if (m.env->crashed()) return Status::Ok();
    // As the server: everything committed before it is applied first.
    while (!m.apply_queue.empty() && checker.ok()) {
      raft::Entry e = std::move(m.apply_queue.front());
      m.apply_queue.pop_front();
      ApplyOne(m, e);
    }
    DbState image;
    CHECK(sim::DecodeState(snap.data, &image.applied, &image.hash, &image.removed)) << "bad snapshot data";
    if (image.applied != snap.metadata.index) Fail("snapshot image does not match its index");
    if (m.live.state.applied > image.applied) {
      Fail("member " + std::to_string(m.id) + " installs a snapshot at " + std::to_string(image.applied) +
           " after applying " + std::to_string(m.live.state.applied));
    }
    m.live.state = image;
    m.live.base = server::LogBase{snap.metadata.index, snap.metadata.term, snap.metadata.conf_state};
    m.hash_at[image.applied] = image.hash;
    SyncDb(m);
    Status s = m.store->ResetToSnapshot(m.live.base);
    if (!s.ok()) return s;
    ++stats.snapshots_installed;
    checker.OnApplied(step, m.id, image.applied, image.hash);
    if (image.removed.count(m.id)) m.removed_self = true;
    if (trace) Trace("member " + std::to_string(m.id) + " installs the snapshot at " + std::to_string(image.applied));
    ServeReads(m);
    return Status::Ok();
  }

  void ServeReads(Member& m) {
    for (auto it = m.reads.begin(); it != m.reads.end();) {
      if (m.live.state.applied < it->first) {
        ++it;
        continue;
      }
      m.serving_index = it->first;
      auto reads = std::move(it->second);
      it = m.reads.erase(it);
      for (auto& done : reads) done(Status::Ok());
    }
  }

  // ------------------------------------------------------------ run
  HostSimResult Run() {
    std::string base_dir = fs::is_directory("/dev/shm") ? "/dev/shm" : fs::temp_directory_path().string();
    std::string pattern = base_dir + "/cairn-hostsim-XXXXXX";
    std::vector<char> buf(pattern.begin(), pattern.end());
    buf.push_back('\0');
    CHECK(mkdtemp(buf.data()) != nullptr) << "mkdtemp " << pattern;
    root = buf.data();

    raft::ConfState initial;
    NodeId id = 1;
    for (int i = 0; i < so.voters; ++i) initial.voters.push_back(id++);
    for (int i = 0; i < so.learners; ++i) initial.learners.push_back(id++);
    next_node_id = id;
    for (NodeId member = 1; member < next_node_id; ++member) Bootstrap(AddMember(member), initial);
    for (auto& [member, m] : members) Start(*m);
    ScheduleNext(EventType::kPropose, so.propose_interval_ms);
    ScheduleNext(EventType::kRead, so.read_interval_ms);
    ScheduleNext(EventType::kPartition, so.partition_interval_ms);
    ScheduleNext(EventType::kCrash, so.crash_interval_ms);
    ScheduleNext(EventType::kTransfer, so.transfer_interval_ms);
    if (so.membership_changes) ScheduleNext(EventType::kConfChange, so.conf_change_interval_ms);
    Schedule(EventType::kHealAll, so.chaos_ms);

    bool live = false;
    while (!live && checker.ok()) {
      if (queue.empty()) {
        Fail("no events left");
        break;
      }
      std::pop_heap(queue.begin(), queue.end(), Later);
      Event e = std::move(queue.back());
      queue.pop_back();
      const int64_t allowed = voters_live ? so.learner_deadline_ms : so.liveness_deadline_ms;
      if (e.at > so.chaos_ms + allowed) {
        std::ostringstream out;
        out << "Liveness: no leader committed a new entry on every " << (voters_live ? "learner" : "voter")
            << " within " << allowed << "ms of healing";
        for (auto& [mid, m] : members) {
          out << "\n  member " << mid << (m->retired ? " (retired)" : "") << ": ";
          if (m->up()) {
            out << "leader=" << m->host->leader() << " term=" << m->host->term() << " commit=" << m->host->commit_index();
          } else {
            out << "down";
          }
          out << " applied=" << m->live.state.applied << " apply_queue=" << m->apply_queue.size()
              << (m->apply_scheduled ? " (apply scheduled)" : "");
        }
        Fail(out.str());
        break;
      }
      now = e.at;
      ++step;
      if (e.type == EventType::kLivenessProbe) {
        live = OnLivenessProbe();
        if (!live) Schedule(EventType::kLivenessProbe, now + kProbeIntervalMs);
      } else {
        Dispatch(e);
      }
      if (step > kMaxSteps) Fail("too many steps");
    }
    HostSimResult result;
    result.ok = checker.ok();
    if (!result.ok) result.failure = "at " + std::to_string(now) + "ms, " + checker.violation();
    stats.steps = step;
    stats.leaders = leader_terms.size();
    result.stats = stats;
    for (auto& [mid, m] : members) Crash(*m);
    std::error_code ec;
    fs::remove_all(root, ec);
    return result;
  }

  void Dispatch(Event& e) {
    switch (e.type) {
      case EventType::kDeliver: {
        const bool snapshot = e.message.type == raft::MessageType::kSnapshot;
        Member* to = Find(e.node);
        Member* from = Find(e.message.from);
        if (!LinkUp(e.message.from, e.node) || to == nullptr || !to->up()) {
          if (snapshot) ReportSnapshot(e.message, false, now);
          if (from != nullptr && from->up() && Chance(0.5)) from->host->ReportUnreachable(e.node);
          return;
        }
        if (to->live.state.removed.count(e.message.from)) {
          // etcd's transport: "the member has been permanently removed".
          if (from != nullptr && from->up()) Retire(*from, "told by " + std::to_string(to->id) + " it was removed");
          return;
        }
        if (snapshot) ReportSnapshot(e.message, true, now);
        to->host->Step(std::move(e.message));
        Turn(*to);
        return;
      }
      case EventType::kForward: {
        Member* to = Find(e.node);
        if (to == nullptr || !to->up() || !LinkUp(e.from, e.node)) return;
        for (auto& [pid, data] : e.proposals) {
          server::RaftHost::Proposal p;
          p.id = pid;
          p.data = std::move(data);
          p.forwarded = true;
          p.origin = e.from;
          to->host->Propose(std::move(p));
        }
        Turn(*to);
        return;
      }
      case EventType::kRefuse:
        return;  // the origin's waiter fails (nothing to check here)
      case EventType::kSnapshotReport: {
        Member* m = Find(e.node);
        if (m == nullptr || !m->up()) return;
        m->host->ReportSnapshot(e.message.to, !e.message.reject);
        Turn(*m);
        return;
      }
      case EventType::kTurn: {
        Member* m = Find(e.node);
        if (m == nullptr || !m->up() || m->incarnation != e.incarnation) return;
        Turn(*m);
        if (m->up()) {
          const int64_t next = Between(so.tick_ms - so.tick_jitter_ms, so.tick_ms + so.tick_jitter_ms);
          Schedule(EventType::kTurn, now + std::max<int64_t>(1, next), m->id, m->incarnation);
        }
        return;
      }
      case EventType::kApply: {
        Member* m = Find(e.node);
        if (m == nullptr || !m->up() || m->incarnation != e.incarnation) return;
        ApplyBatch(*m);
        return;
      }
      case EventType::kPropose:
        OnPropose();
        ScheduleNext(EventType::kPropose, so.propose_interval_ms);
        return;
      case EventType::kRead:
        OnRead();
        ScheduleNext(EventType::kRead, so.read_interval_ms);
        return;
      case EventType::kPartition:
        if (!healing && !partitioned) OnPartition();
        return;
      case EventType::kHeal:
        if (trace && partitioned) Trace("partition heals");
        blocked.clear();
        partitioned = false;
        if (!healing) ScheduleNext(EventType::kPartition, so.partition_interval_ms);
        return;
      case EventType::kCrash:
        if (healing) return;
        OnCrash();
        ScheduleNext(EventType::kCrash, so.crash_interval_ms);
        return;
      case EventType::kArmedCrash: {
        Member* m = Find(e.node);
        if (healing || m == nullptr || !m->up() || m->incarnation != e.incarnation) return;
        Crash(*m);
        ScheduleRestart(*m);
        return;
      }
      case EventType::kRestart: {
        Member* m = Find(e.node);
        if (m == nullptr || m->up() || m->retired) return;
        Start(*m);
        return;
      }
      case EventType::kTransfer:
        if (healing) return;
        OnTransfer();
        ScheduleNext(EventType::kTransfer, so.transfer_interval_ms);
        return;
      case EventType::kConfChange:
        if (healing) return;
        OnConfChange();
        ScheduleNext(EventType::kConfChange, so.conf_change_interval_ms);
        return;
      case EventType::kHealAll:
        OnHealAll();
        Schedule(EventType::kLivenessProbe, now + kProbeIntervalMs);
        return;
      case EventType::kLivenessProbe:
        return;
    }
  }

  // ------------------------------------------------------------ workload
  uint64_t NewProposal(std::string data) {
    const uint64_t id = next_proposal++;
    proposal_data[id] = std::move(data);
    return id;
  }

  void OnPropose() {
    auto up = UpMembers();
    if (up.empty()) return;
    Member* m = up[Uniform(up.size())];
    const int n = static_cast<int>(Between(1, so.max_batch));
    for (int i = 0; i < n; ++i) {
      std::string data = "w" + std::to_string(so.seed) + "." + std::to_string(next_proposal) + ".";
      data.resize(std::max(data.size(), o.proposal_bytes), 'x');
      server::RaftHost::Proposal p;
      p.data = data;
      p.id = NewProposal(std::move(data));
      ++stats.proposals;
      m->host->Propose(std::move(p));
    }
    Turn(*m);
  }

  void OnRead() {
    auto up = UpMembers();
    if (up.empty()) return;
    Member* m = up[Uniform(up.size())];
    ++stats.reads_started;
    const uint64_t committed = checker.MaxCommitted();
    const std::string context = "r" + std::to_string(next_read++);
    const uint64_t inc = m->incarnation;
    m->host->ReadIndex([this, m, inc, committed, context](const Status& s) {
      if (!s.ok() || m->incarnation != inc) return;
      ++stats.reads_served;
      checker.OnReadServed(step, m->id, context, m->serving_index, committed, m->live.state.applied);
    });
    Turn(*m);
  }

  void OnTransfer() {
    Member* leader = FindLeader();
    if (leader == nullptr) return;
    const raft::ConfState& conf = leader->store->LastConfState();
    if (conf.voters.empty()) return;
    const NodeId target = conf.voters[Uniform(conf.voters.size())];
    ++stats.transfers;
    if (trace) Trace("leader " + std::to_string(leader->id) + " asked to transfer to " + std::to_string(target));
    leader->host->TransferLeader(target, [](const Status&) {});
    Turn(*leader);
  }

  void OnConfChange() {
    Member* leader = FindLeader();
    if (leader == nullptr) return;
    const raft::ConfState conf = leader->store->LastConfState();
    const std::vector<raft::ConfChange> choices =
        sim::ConfChangeChoices(conf, static_cast<int>(members.size()), so.max_nodes, next_node_id);
    if (choices.empty()) return;
    const raft::ConfChange change = choices[Uniform(choices.size())];
    const std::string blob = raft::EncodeConfChange(change);
    server::RaftHost::Proposal p;
    p.data = std::string(1, server::RaftHost::kConfChangeMarker) + blob;
    p.id = NewProposal(blob);
    ++stats.conf_changes;
    if (trace) {
      Trace("leader " + std::to_string(leader->id) + " proposes change " + std::to_string(static_cast<int>(change.type)) +
            " of member " + std::to_string(change.node_id));
    }
    leader->host->Propose(std::move(p));
    if (change.node_id == next_node_id) {
      // The new member starts empty and waits for the leader (--initial-cluster-state existing).
      ++next_node_id;
      Start(AddMember(change.node_id));
    }
    Turn(*leader);
  }

  // ------------------------------------------------------------ faults
  void OnPartition() {
    std::vector<NodeId> ids;
    for (auto& [mid, m] : members) {
      if (!m->retired) ids.push_back(mid);
    }
    if (ids.size() < 2) return;
    Member* leader = FindLeader();
    std::ostringstream what;
    if (leader != nullptr && Chance(so.target_leader_rate)) {
      std::set<NodeId> side = {leader->id};
      const size_t minority = (ids.size() - 1) / 2;
      while (side.size() < 1 + Uniform(minority + 1)) side.insert(ids[Uniform(ids.size())]);
      for (NodeId a : ids) {
        for (NodeId b : ids) {
          if (side.count(a) != side.count(b)) blocked.insert({a, b});
        }
      }
      what << "leader " << leader->id << " stranded with " << side.size() - 1 << " members";
    } else if (const uint64_t kind = Uniform(3); kind == 0) {
      const NodeId alone = ids[Uniform(ids.size())];
      for (NodeId other : ids) {
        if (other == alone) continue;
        blocked.insert({alone, other});
        blocked.insert({other, alone});
      }
      what << "member " << alone << " isolated";
    } else if (kind == 1) {
      std::set<NodeId> side;
      for (NodeId a : ids) {
        if (Chance(0.5)) side.insert(a);
      }
      for (NodeId a : ids) {
        for (NodeId b : ids) {
          if (side.count(a) != side.count(b)) blocked.insert({a, b});
        }
      }
      what << "split, " << side.size() << " on one side";
    } else {
      what << "one-way:";
      const int links = static_cast<int>(Between(1, static_cast<int64_t>(ids.size())));
      for (int i = 0; i < links; ++i) {
        const NodeId a = ids[Uniform(ids.size())];
        const NodeId b = ids[Uniform(ids.size())];
        if (a == b) continue;
        blocked.insert({a, b});
        what << " " << a << "->" << b;
      }
    }
    partitioned = true;
    ++stats.partitions;
    if (trace) Trace("partition: " + what.str());
    Schedule(EventType::kHeal, now + Between(50, std::max<int64_t>(50, so.partition_max_ms)));
  }

  void OnCrash() {
    auto up = UpMembers();
    if (up.empty()) return;
    Member* m = up[Uniform(up.size())];
    Member* leader = FindLeader();
    if (leader != nullptr && Chance(so.target_leader_rate)) m = leader;
    if (Chance(0.5)) {
      // The power fails during the member's next log write or sync (or in a
      // while, if it writes nothing).
      m->env->ArmCrash();
      Schedule(EventType::kArmedCrash, now + Between(20, 200), m->id, m->incarnation);
      return;
    }
    Crash(*m);
    ScheduleRestart(*m);
  }

  void ScheduleRestart(Member& m) {
    ++stats.crashes;
    Schedule(EventType::kRestart, now + Between(10, std::max<int64_t>(10, so.restart_max_ms)), m.id);
  }

  void OnHealAll() {
    healing = true;
    heal_started_at = now;
    if (trace) Trace("--- heal: network repaired, all members restart, faults stop ---");
    blocked.clear();
    partitioned = false;
    so.drop_rate = 0;
    so.duplicate_rate = 0;
    so.long_delay_rate = 0;
    so.drop_own_term_appends_rate = 0;
    for (auto& [mid, m] : members) {
      if (m->up()) m->env->Disarm();
      if (!m->up() && !m->retired) Start(*m);
    }
    liveness_marker.clear();
  }

  bool OnLivenessProbe() {
    Member* leader = FindLeader();
    if (leader == nullptr) return false;
    const raft::ConfState conf = leader->store->LastConfState();
    // A marker per leader term, proposed again if the host refused it (a
    // backlog over the uncommitted-bytes limit, a transfer under way).
    const std::string marker = "live-" + std::to_string(leader->host->term());
    if (marker_index == 0 &&
        (liveness_marker != marker || marker_refused || now - marker_proposed_at > 50 * so.tick_ms)) {
      server::RaftHost::Proposal p;
      p.data = marker + "." + std::to_string(next_proposal);
      p.id = NewProposal(p.data);
      marker_id = p.id;
      marker_refused = false;
      if (leader->host->Propose(std::move(p))) {
        liveness_marker = marker;
        marker_proposed_at = now;
      }
      Turn(*leader);
    }
    if (marker_index == 0) return false;
    auto done = [&](NodeId id) {
      Member* m = Find(id);
      return m != nullptr && m->up() && m->live.state.applied >= marker_index;
    };
    for (NodeId id : conf.voters) {
      if (!done(id)) return false;
    }
    if (!voters_live) {
      voters_live = true;
      stats.recovery_ms = now - heal_started_at;
    }
    for (NodeId id : conf.learners) {
      if (!done(id)) return false;
    }
    return true;
  }
};

std::string HostSoakSummary::ToString() const {
  std::ostringstream out;
  out << runs << " runs, " << failures << " failed, " << seconds << " s; " << totals.ToString();
  return out.str();
}

HostSoakSummary RunHostSeeds(const std::string& profile, uint64_t first_seed, uint64_t count,
                             bool stop_at_first_failure, std::ostream* progress, bool lying_sync) {
  HostSoakSummary summary;
  const auto t0 = std::chrono::steady_clock::now();
  for (uint64_t seed = first_seed; seed < first_seed + count; ++seed) {
    auto options = HostSimOptions::ForSeed(profile, seed);
    CHECK(options.ok()) << options.status().ToString();
    options->lying_sync = lying_sync;
    HostSimResult r = HostSimulation(*options).Run();
    ++summary.runs;
    summary.totals.Add(r.stats);
    if (!r.ok) {
      ++summary.failures;
      summary.reports.push_back("seed " + std::to_string(seed) + " (" + profile + "): " + r.failure +
                                "\n  options: " + options->sim.ToString() + "\n  replay: " + options->Repro());
      if (progress) *progress << summary.reports.back() << std::endl;
      if (stop_at_first_failure) break;
    }
    if (progress && (seed - first_seed + 1) % 100 == 0) {
      *progress << "  " << (seed - first_seed + 1) << " seeds, " << summary.failures << " failed" << std::endl;
    }
  }
  summary.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return summary;
}

HostSimulation::HostSimulation(HostSimOptions options) : world_(std::make_unique<World>(std::move(options), nullptr)) {}
HostSimulation::~HostSimulation() = default;

HostSimResult HostSimulation::Run() {
  world_->trace = trace_;
  return world_->Run();
}

}  // namespace cairn::hostsim
