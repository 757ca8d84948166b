#include "sim/soak.h"

#include <chrono>
#include <sstream>

namespace cairn::sim {

std::string SoakSummary::ToString() const {
  std::ostringstream out;
  out << runs << " runs, " << failures << " failed, " << seconds << "s; totals: "
      << totals.ToString();
  return out.str();
}

std::string FailureReport(const SimOptions& options, const SimResult& result) {
  std::ostringstream out;
  out << "seed " << options.seed << " (profile " << options.profile << ") FAILED: "
      << result.failure << "\n  options: " << options.ToString()
      << "\n  stats: " << result.stats.ToString() << "\n  reproduce: " << options.Repro();
  return out.str();
}

namespace {
void Add(SimStats& total, const SimStats& s) {
  total.steps += s.steps;
  total.messages_sent += s.messages_sent;
  total.messages_delivered += s.messages_delivered;
  total.entries_applied += s.entries_applied;
  total.proposals_accepted += s.proposals_accepted;
  total.reads_started += s.reads_started;
  total.reads_served += s.reads_served;
  total.leaders += s.leaders;
  total.crashes += s.crashes;
  total.partitions += s.partitions;
  total.snapshots_installed += s.snapshots_installed;
  total.conf_changes += s.conf_changes;
  total.transfers += s.transfers;
  total.recovery_ms = std::max(total.recovery_ms, s.recovery_ms);  // worst case
}
}  // namespace

SoakSummary RunSeeds(const std::string& profile, uint64_t first_seed, uint64_t count,
                     bool stop_at_first_failure, std::ostream* progress) {
  SoakSummary summary;
  const auto start = std::chrono::steady_clock::now();
  for (uint64_t seed = first_seed; seed < first_seed + count; ++seed) {
    auto options = SimOptions::ForSeed(profile, seed);
    if (!options.ok()) {
      summary.reports.push_back(options.status().ToString());
      ++summary.failures;
      break;
    }
    SimResult result = Simulation(*options).Run();
    ++summary.runs;
    Add(summary.totals, result.stats);
    if (!result.ok) {
      ++summary.failures;
      summary.reports.push_back(FailureReport(*options, result));
      if (progress) *progress << summary.reports.back() << std::endl;
      if (stop_at_first_failure) break;
    }
    if (progress && summary.runs % 1000 == 0) {
      const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      *progress << "  " << summary.runs << " seeds, " << summary.failures << " failed, " << s << "s"
                << std::endl;
    }
  }
  summary.seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return summary;
}

}  // namespace cairn::sim
