#include "report.h"

#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <iomanip>
#include <sstream>

namespace cairn::bench {
namespace {

constexpr double kNanosPerMilli = 1e6;

struct Quantile {
  const char* name;
  double quantile;
};
constexpr Quantile kQuantiles[] = {
    {"p50", 0.50}, {"p90", 0.90}, {"p99", 0.99}, {"p99.9", 0.999}};

double Millis(uint64_t ns) { return static_cast<double>(ns) / kNanosPerMilli; }

// Rounds to microseconds so JSON stays readable.
double Round3(double v) { return static_cast<double>(static_cast<int64_t>(v * 1000 + 0.5)) / 1000; }

void PrintLatencyLine(std::ostream& out, const std::string& label, const LatencyHistogram& h) {
  out << "  " << std::left << std::setw(10) << label << std::right << std::fixed
      << std::setprecision(3);
  for (const auto& q : kQuantiles) {
    out << "  " << q.name << " " << std::setw(8) << Millis(h.ValueAtQuantile(q.quantile));
  }
  out << "  max " << std::setw(8) << Millis(h.max_ns()) << "  (ms, n=" << h.count() << ")\n";
}

}  // namespace

double ProcessCpuSeconds() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  auto seconds = [](const timeval& tv) { return tv.tv_sec + tv.tv_usec / 1e6; };
  return seconds(usage.ru_utime) + seconds(usage.ru_stime);
}

nlohmann::json LatencySummaryJson(const LatencyHistogram& histogram) {
  nlohmann::json j = nlohmann::json::object();
  for (const auto& q : kQuantiles) j[q.name] = Round3(Millis(histogram.ValueAtQuantile(q.quantile)));
  j["max"] = Round3(Millis(histogram.max_ns()));
  j["min"] = Round3(Millis(histogram.min_ns()));
  j["mean"] = Round3(histogram.mean_ns() / kNanosPerMilli);
  j["count"] = histogram.count();
  return j;
}

nlohmann::json Report::ToJson() const {
  nlohmann::json j;
  j["workload"] = workload;
  j["config"] = config;
  j["elapsed_seconds"] = Round3(elapsed_seconds);
  j["ok"] = ok;
  j["errors"] = errors;
  j["error_messages"] = error_messages;
  j["unit"] = unit;
  j["throughput"] = Round3(Throughput());
  j["latency_ms"] = LatencySummaryJson(latency);
  nlohmann::json by_kind = nlohmann::json::object();
  for (const auto& kind : kinds) {
    by_kind[kind.name] = LatencySummaryJson(kind.latency);
  }
  j["kinds"] = by_kind;
  j["extra"] = extra;
  j["client_cpu_seconds"] = Round3(client_cpu_seconds);
  j["passed"] = passed;
  return j;
}

void Report::PrintText(std::ostream& out) const {
  out << "workload:   " << workload << "\n";
  out << "config:     " << config.dump() << "\n";
  out << std::fixed << std::setprecision(3);
  out << "elapsed:    " << elapsed_seconds << " s\n";
  out << "completed:  " << ok << " " << unit << ", " << errors << " errors\n";
  out << std::setprecision(1);
  out << "throughput: " << Throughput() << " " << unit << "/s\n";
  out << std::setprecision(2);
  out << "client cpu: " << client_cpu_seconds << " s\n";
  out << "latency:\n";
  PrintLatencyLine(out, "all", latency);
  if (kinds.size() > 1) {
    for (const auto& kind : kinds) PrintLatencyLine(out, kind.name, kind.latency);
  }
  if (!error_messages.empty()) {
    out << "errors by cause:\n";
    for (const auto& [message, count] : error_messages) {
      out << "  " << count << "  " << message << "\n";
    }
  }
  if (!extra.empty()) {
    out << "details:\n";
    for (const auto& [key, value] : extra.items()) out << "  " << key << ": " << value.dump() << "\n";
  }
  out << "result:     " << (passed ? "PASS" : "FAIL") << "\n";
}

ProgressBar::ProgressBar(std::string label, int64_t total, double duration_seconds)
    : enabled_(isatty(STDOUT_FILENO) == 1),
      label_(std::move(label)),
      total_(total),
      duration_seconds_(duration_seconds),
      start_(std::chrono::steady_clock::now()),
      last_draw_(start_) {}

void ProgressBar::Update(int64_t done) {
  if (!enabled_) return;
  const auto now = std::chrono::steady_clock::now();
  if (drawn_ && now - last_draw_ < std::chrono::milliseconds(100)) return;
  last_draw_ = now;
  const double elapsed = std::chrono::duration<double>(now - start_).count();
  double fraction = 0;
  if (total_ > 0) {
    fraction = static_cast<double>(done) / static_cast<double>(total_);
  } else if (duration_seconds_ > 0) {
    fraction = elapsed / duration_seconds_;
  }
  fraction = std::clamp(fraction, 0.0, 1.0);
  constexpr int kWidth = 30;
  const int filled = static_cast<int>(fraction * kWidth);
  std::string bar(static_cast<size_t>(filled), '#');
  bar.append(static_cast<size_t>(kWidth - filled), '.');
  const double rate = elapsed > 0 ? done / elapsed : 0;
  std::fprintf(stdout, "\r%s [%s] %3d%%  %lld  %.0f/s ", label_.c_str(), bar.c_str(),
               static_cast<int>(fraction * 100), static_cast<long long>(done), rate);
  std::fflush(stdout);
  drawn_ = true;
}

void ProgressBar::Finish() {
  if (!enabled_ || !drawn_) return;
  std::fprintf(stdout, "\r\033[2K");
  std::fflush(stdout);
  drawn_ = false;
}

}  // namespace cairn::bench
