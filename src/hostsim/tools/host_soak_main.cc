// host-soak: the simulator that drives the server's own Raft host (see
// hostsim/host_simulation.h) over many seeds, or one seed with a trace.
//
//   host-soak --seeds=N [--start=S] [--profile=mixed|small|lease] [--keep-going]
//   host-soak --seed=S [--profile=mixed] [--trace]
//
// Exit status 1 if any seed failed. Also: make host-soak SEEDS=N / SEED=N TRACE=1.
#include <iostream>
#include <string>

#include "common/logging.h"
#include "hostsim/host_simulation.h"

namespace {

bool Flag(const std::string& arg, const std::string& name, std::string* value) {
  const std::string prefix = "--" + name + "=";
  if (arg.rfind(prefix, 0) != 0) return false;
  *value = arg.substr(prefix.size());
  return true;
}

int Usage() {
  std::cerr << "usage: host-soak [--profile=NAME] (--seeds=N [--start=S] [--keep-going] | --seed=S [--trace])\n";
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  std::string profile = "mixed";
  uint64_t seeds = 1000, start = 1, seed = 0;
  bool single = false, trace = false, keep_going = false;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    std::string v;
    try {
      if (Flag(arg, "profile", &v)) {
        profile = v;
      } else if (Flag(arg, "seeds", &v)) {
        seeds = std::stoull(v);
      } else if (Flag(arg, "start", &v)) {
        start = std::stoull(v);
      } else if (Flag(arg, "seed", &v)) {
        seed = std::stoull(v);
        single = true;
      } else if (arg == "--trace") {
        trace = true;
      } else if (arg == "--keep-going") {
        keep_going = true;
      } else {
        return Usage();
      }
    } catch (const std::exception&) {
      return Usage();
    }
  }
  cairn::SetLogLevel(trace ? cairn::LogLevel::kWarn : cairn::LogLevel::kError);
  if (single) {
    auto options = cairn::hostsim::HostSimOptions::ForSeed(profile, seed);
    if (!options.ok()) {
      std::cerr << options.status().ToString() << "\n";
      return 2;
    }
    std::cout << "options: " << options->sim.ToString() << " retention=" << options->log_retention_entries
              << " proposal_bytes=" << options->proposal_bytes << " apply_delay_ms=" << options->apply_delay_ms
              << "\n";
    cairn::hostsim::HostSimulation simulation(*options);
    if (trace) simulation.set_trace(&std::cout);
    auto result = simulation.Run();
    if (!result.ok) {
      std::cout << "seed " << seed << " FAILED: " << result.failure << "\n  replay: " << options->Repro() << "\n";
      return 1;
    }
    std::cout << "seed " << seed << " ok: " << result.stats.ToString() << "\n";
    return 0;
  }
  auto summary = cairn::hostsim::RunHostSeeds(profile, start, seeds, !keep_going, &std::cout);
  std::cout << profile << " seeds " << start << ".." << start + seeds - 1 << ": " << summary.ToString() << "\n";
  return summary.failures == 0 ? 0 : 1;
}
