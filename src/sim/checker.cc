#include "sim/checker.h"

#include <algorithm>
#include <sstream>
#include <string_view>

#include "common/check.h"

namespace cairn::sim {
namespace {

uint64_t Mix(uint64_t z) {
  z += 0x9e3779b97f4a7c15ULL;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

uint64_t HashBytes(const std::string& data) {
  uint64_t h = 0xcbf29ce484222325ULL;  // FNV-1a, stable across runs and builds
  for (unsigned char c : data) h = (h ^ c) * 0x100000001b3ULL;
  return h;
}

// Key for (index, term); terms stay far below 2^24 in a run.
uint64_t Key(uint64_t index, uint64_t term) { return (index << 24) ^ term; }

}  // namespace

uint64_t ChainHash(uint64_t previous, const raft::Entry& entry) {
  uint64_t h = Mix(previous ^ Mix(entry.index));
  h = Mix(h ^ entry.term);
  h = Mix(h ^ static_cast<uint64_t>(entry.type));
  h = Mix(h ^ HashBytes(entry.data));
  return h == 0 ? 1 : h;  // 0 means "unknown" in the checker
}

// ---------------------------------------------------------------- LogShadow

void LogShadow::Reset(uint64_t base_index, uint64_t base_term, uint64_t base_hash) {
  base_index_ = base_index;
  base_term_ = base_term;
  base_hash_ = base_hash;
  hashes_.clear();
  terms_.clear();
}

uint64_t LogShadow::HashAt(uint64_t index) const {
  CHECK(Has(index)) << "shadow has no " << index;
  return index == base_index_ ? base_hash_ : hashes_[index - base_index_ - 1];
}

uint64_t LogShadow::TermAt(uint64_t index) const {
  CHECK(Has(index)) << "shadow has no " << index;
  return index == base_index_ ? base_term_ : terms_[index - base_index_ - 1];
}

bool LogShadow::Append(const std::vector<raft::Entry>& entries) {
  if (entries.empty()) return true;
  const uint64_t from = entries.front().index;
  if (from <= base_index_ || from > last_index() + 1) return false;
  hashes_.resize(from - base_index_ - 1);
  terms_.resize(from - base_index_ - 1);
  uint64_t h = HashAt(from - 1);
  for (const raft::Entry& e : entries) {
    h = ChainHash(h, e);
    hashes_.push_back(h);
    terms_.push_back(e.term);
  }
  return true;
}

// ---------------------------------------------------------------- SafetyChecker

void SafetyChecker::Fail(uint64_t step, const std::string& what) {
  if (violation_) return;
  violation_ = "step " + std::to_string(step) + ": " + what;
}

void SafetyChecker::OnLeader(uint64_t step, NodeId id, uint64_t term, const LogShadow& log) {
  // The same node may lead a term twice if it crashed before its vote was
  // durable and nothing it did in that term escaped (RawNode holds every
  // message back until then); Log Matching catches it if something did.
  auto [it, inserted] = leaders_.emplace(term, id);
  if (!inserted && it->second != id) {
    std::ostringstream out;
    out << "Election Safety: nodes " << it->second << " and " << id << " both lead term " << term;
    Fail(step, out.str());
    return;
  }
  // Leader Completeness: every entry committed in an earlier term is in the
  // new leader's log. Comparing chain hashes at the highest such index
  // compares the whole prefix.
  uint64_t c = 0;
  for (auto it = commit_seen_in_term_.begin(); it != commit_seen_in_term_.end() && it->first < term;
       ++it) {
    c = std::max(c, it->second);
  }
  if (c == 0 || c < log.base_index()) return;  // a snapshot beyond c holds it
  if (!log.Has(c) || log.HashAt(c) != committed_[c]) {
    std::ostringstream out;
    out << "Leader Completeness: node " << id << " leads term " << term
        << " without entry " << c << ", committed in an earlier term (its log ends at "
        << log.last_index() << ")";
    Fail(step, out.str());
  }
}

void SafetyChecker::OnDurableEntries(uint64_t step, NodeId id,
                                     const std::vector<EntryMark>& entries) {
  for (const EntryMark& e : entries) {
    auto [it, inserted] = seen_.emplace(Key(e.index, e.term), e.hash);
    if (!inserted && it->second != e.hash) {
      std::ostringstream out;
      out << "Log Matching: node " << id << " persisted entry " << e.index << " of term " << e.term
          << " with a different prefix or content than another node's";
      Fail(step, out.str());
      return;
    }
  }
}

void SafetyChecker::CheckCommitted(uint64_t step, NodeId id, uint64_t index, uint64_t hash,
                                   const char* what) {
  if (index >= committed_.size()) committed_.resize(index + 1, 0);
  uint64_t& known = committed_[index];
  if (known == 0) {
    known = hash;
  } else if (known != hash) {
    std::ostringstream out;
    out << "State Machine Safety: node " << id << " " << what << " a different entry at index "
        << index << " than another node";
    Fail(step, out.str());
  }
}

void SafetyChecker::OnCommit(uint64_t step, NodeId id, uint64_t term, const LogShadow& log,
                             uint64_t commit) {
  uint64_t& seen = commit_seen_in_term_[term];
  seen = std::max(seen, commit);
  uint64_t& reported = reported_commit_[id];
  if (commit <= reported) return;
  if (!log.Has(commit)) {
    Fail(step, "node " + std::to_string(id) + " commits " + std::to_string(commit) +
                   " beyond its log " + std::to_string(log.last_index()));
    return;
  }
  for (uint64_t i = std::max(reported + 1, log.base_index()); i <= commit; ++i) {
    if (i == 0) continue;
    CheckCommitted(step, id, i, log.HashAt(i), "committed");
  }
  reported = commit;
}

void SafetyChecker::OnApplied(uint64_t step, NodeId id, uint64_t index, uint64_t state_hash) {
  if (index == 0) return;
  CheckCommitted(step, id, index, state_hash, "applied");
}

void SafetyChecker::OnReadServed(uint64_t step, NodeId id, const std::string& context,
                                 uint64_t read_index, uint64_t committed_at_start,
                                 uint64_t applied) {
  ++reads_served_;
  if (read_index < committed_at_start || applied < read_index) {
    std::ostringstream out;
    out << "Linearizable read: node " << id << " served read " << context << " at index "
        << read_index << " (applied " << applied << ") but index " << committed_at_start
        << " was committed before the read started";
    Fail(step, out.str());
  }
}

}  // namespace cairn::sim
