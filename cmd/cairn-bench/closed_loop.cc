#include "closed_loop.h"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <mutex>

namespace cairn::bench {
namespace {

using Clock = std::chrono::steady_clock;

// A failed call may complete inline, inside Start(): restarting from inside
// that callback would recurse once per failure. Past this depth the client
// is handed to the runner's thread instead.
constexpr int kMaxInlineDepth = 8;
thread_local int tls_start_depth = 0;

// Distinct error messages kept per client; the rest count as "(other)".
constexpr size_t kMaxErrorMessages = 16;

struct ClientSlot {
  OpClient* client = nullptr;
  std::vector<LatencyHistogram> histograms;  // one per kind
  uint64_t errors = 0;
  std::map<std::string, uint64_t> error_messages;
  Clock::time_point started;
};

class Loop {
 public:
  Loop(const RunLimits& limits, int clients) : limits_(limits), active_(clients) {}

  void Start(std::vector<ClientSlot>& slots) {
    start_ = Clock::now();
    deadline_ = start_ + std::chrono::duration_cast<Clock::duration>(
                             std::chrono::duration<double>(limits_.duration_seconds));
    last_retire_ = start_;
    for (auto& slot : slots) Begin(&slot);
  }

  // Waits until every client retired, restarting handed-over clients and
  // redrawing `progress` meanwhile. Returns the elapsed seconds.
  double Wait(ProgressBar* progress) {
    std::unique_lock<std::mutex> lock(mu_);
    while (active_ > 0) {
      cv_.wait_for(lock, std::chrono::milliseconds(50),
                   [&] { return active_ == 0 || !restart_.empty(); });
      while (!restart_.empty()) {
        ClientSlot* slot = restart_.front();
        restart_.pop_front();
        lock.unlock();
        Begin(slot);
        lock.lock();
      }
      if (progress != nullptr) {
        lock.unlock();
        progress->Update(completed_.load(std::memory_order_relaxed));
        lock.lock();
      }
    }
    return std::chrono::duration<double>(last_retire_ - start_).count();
  }

 private:
  bool ClaimTicket(int64_t* ticket) {
    if (limits_.duration_seconds > 0) {
      if (Clock::now() >= deadline_) return false;
      *ticket = next_ticket_.fetch_add(1, std::memory_order_relaxed);
      return true;
    }
    *ticket = next_ticket_.fetch_add(1, std::memory_order_relaxed);
    return *ticket < limits_.total;
  }

  void Begin(ClientSlot* slot) {
    int64_t ticket = 0;
    if (!ClaimTicket(&ticket)) {
      Retire();
      return;
    }
    slot->started = Clock::now();
    ++tls_start_depth;
    slot->client->Start(ticket, [this, slot](const grpc::Status& status, int kind) {
      OnDone(slot, status, kind);
    });
    --tls_start_depth;
  }

  void OnDone(ClientSlot* slot, const grpc::Status& status, int kind) {
    const auto latency = Clock::now() - slot->started;
    if (status.ok()) {
      const int index = (kind >= 0 && kind < static_cast<int>(slot->histograms.size())) ? kind : 0;
      slot->histograms[index].Record(static_cast<uint64_t>(
          std::chrono::duration_cast<std::chrono::nanoseconds>(latency).count()));
    } else {
      ++slot->errors;
      std::string message = DescribeStatus(status);
      if (slot->error_messages.size() >= kMaxErrorMessages &&
          slot->error_messages.count(message) == 0) {
        message = "(other)";
      }
      ++slot->error_messages[message];
    }
    completed_.fetch_add(1, std::memory_order_relaxed);
    if (tls_start_depth >= kMaxInlineDepth) {
      std::lock_guard<std::mutex> lock(mu_);
      restart_.push_back(slot);  // at most one entry per client: bounded
      cv_.notify_one();
      return;
    }
    Begin(slot);
  }

  void Retire() {
    std::lock_guard<std::mutex> lock(mu_);
    last_retire_ = Clock::now();
    if (--active_ == 0) cv_.notify_one();
  }

  const RunLimits limits_;
  Clock::time_point start_;
  Clock::time_point deadline_;
  std::atomic<int64_t> next_ticket_{0};
  std::atomic<int64_t> completed_{0};

  std::mutex mu_;
  std::condition_variable cv_;
  int active_;                          // GUARDED_BY(mu_)
  std::deque<ClientSlot*> restart_;     // GUARDED_BY(mu_)
  Clock::time_point last_retire_;       // GUARDED_BY(mu_)
};

}  // namespace

std::string DescribeStatus(const grpc::Status& status) {
  static const char* const kNames[] = {
      "OK",           "CANCELLED",        "UNKNOWN",        "INVALID_ARGUMENT",
      "DEADLINE_EXCEEDED", "NOT_FOUND",   "ALREADY_EXISTS", "PERMISSION_DENIED",
      "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE",
      "UNIMPLEMENTED", "INTERNAL",        "UNAVAILABLE",    "DATA_LOSS",
      "UNAUTHENTICATED"};
  const int code = static_cast<int>(status.error_code());
  std::string text = (code >= 0 && code <= 16) ? kNames[code] : std::to_string(code);
  std::string message = status.error_message();
  if (message.size() > 120) message.resize(120);
  if (!message.empty()) text += ": " + message;
  return text;
}

RunResult RunClosedLoop(std::vector<std::unique_ptr<OpClient>>& clients,
                        const std::vector<std::string>& kind_names, const RunLimits& limits,
                        const std::string& progress_label) {
  std::vector<ClientSlot> slots(clients.size());
  for (size_t i = 0; i < clients.size(); ++i) {
    slots[i].client = clients[i].get();
    slots[i].histograms.resize(kind_names.size());
  }
  std::unique_ptr<ProgressBar> progress;
  if (!progress_label.empty()) {
    progress = std::make_unique<ProgressBar>(progress_label, limits.duration_seconds > 0 ? 0 : limits.total,
                                             limits.duration_seconds);
  }

  Loop loop(limits, static_cast<int>(slots.size()));
  loop.Start(slots);
  RunResult result;
  result.elapsed_seconds = loop.Wait(progress.get());
  if (progress) progress->Finish();
  for (auto& client : clients) client->Close();

  for (const auto& name : kind_names) result.kinds.push_back(OperationStats{name, {}});
  for (auto& slot : slots) {
    for (size_t k = 0; k < slot.histograms.size(); ++k) {
      result.kinds[k].latency.Merge(slot.histograms[k]);
      result.all.Merge(slot.histograms[k]);
    }
    result.errors += slot.errors;
    for (const auto& [message, count] : slot.error_messages) result.error_messages[message] += count;
  }
  result.ok = result.all.count();
  return result;
}

}  // namespace cairn::bench
