#include "watch_bench.h"

#include <atomic>
#include <charconv>
#include <chrono>
#include <condition_variable>
#include <fstream>
#include <mutex>
#include <thread>
#include <unordered_map>

#include <google/protobuf/arena.h>
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/support/proto_buffer_reader.h>

#include "closed_loop.h"
#include "keys.h"

namespace cairn::bench {
namespace {

using Clock = std::chrono::steady_clock;

constexpr uint64_t kMaxDeliveryBytes = uint64_t{1} << 30;
constexpr size_t kMaxCancelReasons = 16;

int64_t NowNanos() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch())
      .count();
}

// "<seq>:<send time ns>|" padded with 'x' to `size` (longer if it must be).
std::string EncodeValue(int64_t seq, int64_t send_ns, int size) {
  std::string value = std::to_string(seq) + ":" + std::to_string(send_ns) + "|";
  if (static_cast<int>(value.size()) < size) value.append(size - value.size(), 'x');
  return value;
}

bool DecodeValue(const std::string& value, int64_t* seq, int64_t* send_ns) {
  const char* begin = value.data();
  const char* end = begin + value.size();
  auto [p1, e1] = std::from_chars(begin, end, *seq);
  if (e1 != std::errc() || p1 == end || *p1 != ':') return false;
  auto [p2, e2] = std::from_chars(p1 + 1, end, *send_ns);
  return e2 == std::errc() && p2 != end && *p2 == '|';
}

// What the streams share with the coordinating thread.
struct WatchShared {
  std::mutex mu;
  std::condition_variable cv;
  int created = 0;        // GUARDED_BY(mu): watchers whose create was answered
  int streams_done = 0;   // GUARDED_BY(mu)
  std::atomic<uint64_t> events{0};
  std::atomic<uint64_t> event_responses{0};  // responses that carried events
};

// Delivery bookkeeping of one watcher. Only its stream's read callbacks touch
// it (reads on a stream never overlap).
struct WatcherState {
  std::vector<uint8_t> deliveries;  // per put sequence number, saturating
  int64_t last_revision = 0;
  uint64_t received = 0;
  uint64_t out_of_order = 0;
  uint64_t unexpected = 0;
};

// Responses arrive as raw bytes and are parsed into a message on the
// stream's arena, reset for each response: a reused WatchResponse would free
// and allocate every event's KeyValue again on each parse (protobuf's Clear
// deletes sub-messages), and malloc/free then took a fifth of this client's
// CPU with the writer unbounded. The client shares the machine's cores with
// the server; what it spends is not spent serving.
class WatchStream : public grpc::ClientBidiReactor<etcdserverpb::WatchRequest, grpc::ByteBuffer> {
 public:
  WatchStream(Connection& connection, const std::string& prefix, int watchers, int64_t puts,
              WatchShared* shared)
      : shared_(shared), arena_(ArenaOptions()), watchers_(watchers) {
    for (int i = 0; i < watchers; ++i) {
      watchers_[i].deliveries.assign(static_cast<size_t>(puts), 0);
    }
    auto* create = create_request_.mutable_create_request();
    create->set_key(prefix);
    create->set_range_end(PrefixEnd(prefix));
    grpc::TemplatedGenericStub<etcdserverpb::WatchRequest, grpc::ByteBuffer> stub(
        connection.channel);
    stub.PrepareBidiStreamingCall(&context_, "/etcdserverpb.Watch/Watch", grpc::StubOptions(), this);
    StartRead(&raw_);
    StartWrite(&create_request_);
    StartCall();
  }

  void OnWriteDone(bool ok) override {
    // Creates go one at a time: one write in flight per stream.
    if (ok && ++creates_sent_ < static_cast<int>(watchers_.size())) StartWrite(&create_request_);
  }

  void OnReadDone(bool ok) override {
    if (!ok) return;  // the stream ended; OnDone follows
    const int64_t now_ns = NowNanos();
    arena_.Reset();
    auto* response =
        google::protobuf::Arena::CreateMessage<etcdserverpb::WatchResponse>(&arena_);
    {
      grpc::ProtoBufferReader reader(&raw_);
      if (!response->ParseFromZeroCopyStream(&reader)) {
        ++unparsed_;
        StartRead(&raw_);
        return;
      }
    }
    const etcdserverpb::WatchResponse& r = *response;
    if (r.created()) {
      watch_index_[r.watch_id()] = created_++;
      std::lock_guard<std::mutex> lock(shared_->mu);
      ++shared_->created;
      shared_->cv.notify_all();
    }
    if (r.canceled()) {
      ++cancels_;
      if (cancel_reasons_.size() < kMaxCancelReasons) {
        cancel_reasons_.push_back("watch canceled: " + r.cancel_reason());
      }
    }
    auto found = watch_index_.find(r.watch_id());
    if (r.events_size() > 0) {
      if (found == watch_index_.end()) {
        ++unknown_watch_events_;
      } else {
        Deliver(r, &watchers_[found->second], now_ns);
      }
      shared_->events.fetch_add(r.events_size(), std::memory_order_relaxed);
      shared_->event_responses.fetch_add(1, std::memory_order_relaxed);
    }
    StartRead(&raw_);
  }

  void OnDone(const grpc::Status& status) override {
    final_status_ = status;
    std::lock_guard<std::mutex> lock(shared_->mu);
    ++shared_->streams_done;
    shared_->cv.notify_all();
  }

  void Cancel() { context_.TryCancel(); }

  // Valid after OnDone.
  std::vector<WatcherState>& watchers() { return watchers_; }
  const LatencyHistogram& latency() const { return latency_; }
  uint64_t cancels() const { return cancels_; }
  uint64_t unknown_watch_events() const { return unknown_watch_events_; }
  uint64_t unparsed() const { return unparsed_; }
  const std::vector<std::string>& cancel_reasons() const { return cancel_reasons_; }
  const grpc::Status& final_status() const { return final_status_; }

 private:
  // The arena starts in a block of the stream's own that Reset keeps (a
  // merged response is at most ~64 KiB of events; larger ones take more
  // blocks until the next Reset).
  google::protobuf::ArenaOptions ArenaOptions() {
    arena_block_.resize(256 << 10);
    google::protobuf::ArenaOptions o;
    o.initial_block = arena_block_.data();
    o.initial_block_size = arena_block_.size();
    o.start_block_size = 64 << 10;
    o.max_block_size = 1 << 20;
    return o;
  }

  void Deliver(const etcdserverpb::WatchResponse& response, WatcherState* watcher,
               int64_t now_ns) {
    for (const auto& event : response.events()) {
      ++watcher->received;
      if (event.kv().mod_revision() <= watcher->last_revision) ++watcher->out_of_order;
      watcher->last_revision = event.kv().mod_revision();
      int64_t seq = 0;
      int64_t send_ns = 0;
      if (event.type() != mvccpb::Event::PUT || !DecodeValue(event.kv().value(), &seq, &send_ns) ||
          seq < 0 || seq >= static_cast<int64_t>(watcher->deliveries.size())) {
        ++watcher->unexpected;
        continue;
      }
      uint8_t& count = watcher->deliveries[static_cast<size_t>(seq)];
      if (count < 255) ++count;
      latency_.Record(static_cast<uint64_t>(std::max<int64_t>(0, now_ns - send_ns)));
    }
  }

  WatchShared* shared_;
  grpc::ClientContext context_;
  etcdserverpb::WatchRequest create_request_;
  grpc::ByteBuffer raw_;              // the read in flight
  std::vector<char> arena_block_;     // before arena_: its first block
  google::protobuf::Arena arena_;     // the parsed response, until the next read
  int creates_sent_ = 0;
  int created_ = 0;
  std::unordered_map<int64_t, int> watch_index_;  // watch_id -> watcher
  std::vector<WatcherState> watchers_;
  LatencyHistogram latency_;
  uint64_t cancels_ = 0;
  uint64_t unknown_watch_events_ = 0;
  uint64_t unparsed_ = 0;  // responses that were not a WatchResponse
  std::vector<std::string> cancel_reasons_;
  grpc::Status final_status_;
};

// The open-loop writer: puts at a fixed rate from the calling thread, at
// most `max_in_flight` outstanding.
class Writer {
 public:
  Writer(ConnectionPool& pool, const KeySpec& keys, double timeout_seconds, int max_in_flight)
      : pool_(pool), keys_(keys), timeout_seconds_(timeout_seconds), max_in_flight_(max_in_flight) {}

  // 0 = not sent, 1 = acknowledged, 2 = failed (may or may not have applied).
  enum Ack : uint8_t { kNotSent = 0, kAcked = 1, kFailed = 2 };

  // rate 0: as fast as max_in_flight allows.
  void Run(int64_t puts, double rate, ProgressBar* progress) {
    acks_.assign(static_cast<size_t>(puts), kNotSent);
    const auto start = Clock::now();
    for (int64_t seq = 0; seq < puts; ++seq) {
      {
        std::unique_lock<std::mutex> lock(mu_);
        if (in_flight_ >= max_in_flight_) {
          if (rate > 0) ++stalls_;
          cv_.wait(lock, [&] { return in_flight_ < max_in_flight_; });
        }
        ++in_flight_;
      }
      if (rate > 0) {
        std::this_thread::sleep_until(start + std::chrono::duration_cast<Clock::duration>(
                                                  std::chrono::duration<double>(seq / rate)));
      }
      Send(seq);
      if (progress != nullptr) progress->Update(seq + 1);
    }
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [&] { return in_flight_ == 0; });
    elapsed_seconds_ = std::chrono::duration<double>(Clock::now() - start).count();
  }

  // Valid after Run().
  const std::vector<uint8_t>& acks() const { return acks_; }
  const LatencyHistogram& latency() const { return latency_; }
  uint64_t stalls() const { return stalls_; }
  double elapsed_seconds() const { return elapsed_seconds_; }
  const std::map<std::string, uint64_t>& errors() const { return errors_; }

 private:
  struct PendingPut {
    grpc::ClientContext context;
    etcdserverpb::PutRequest request;
    etcdserverpb::PutResponse response;
    int64_t seq = 0;
    int64_t send_ns = 0;
  };

  void Send(int64_t seq) {
    auto* put = new PendingPut();  // freed by its callback
    put->seq = seq;
    put->context.set_deadline(std::chrono::system_clock::now() +
                              std::chrono::microseconds(static_cast<int64_t>(timeout_seconds_ * 1e6)));
    put->request.set_key(FormatKey(keys_.prefix, keys_.key_size, seq % keys_.key_space));
    put->send_ns = NowNanos();
    put->request.set_value(EncodeValue(seq, put->send_ns, keys_.value_size));
    Connection& connection = pool_.ForClient(static_cast<int>(seq % pool_.size()));
    connection.kv->async()->Put(&put->context, &put->request, &put->response,
                                [this, put](grpc::Status status) { OnPutDone(put, status); });
  }

  void OnPutDone(PendingPut* put, const grpc::Status& status) {
    const int64_t latency_ns = NowNanos() - put->send_ns;
    const int64_t seq = put->seq;
    std::unique_ptr<PendingPut> owned(put);
    std::lock_guard<std::mutex> lock(mu_);
    if (status.ok()) {
      acks_[static_cast<size_t>(seq)] = kAcked;
      latency_.Record(static_cast<uint64_t>(latency_ns));
    } else {
      acks_[static_cast<size_t>(seq)] = kFailed;
      std::string message = DescribeStatus(status);
      if (errors_.size() >= kMaxCancelReasons && errors_.count(message) == 0) message = "(other)";
      ++errors_[message];
    }
    --in_flight_;
    cv_.notify_all();
  }

  ConnectionPool& pool_;
  const KeySpec keys_;
  const double timeout_seconds_;
  const int max_in_flight_;
  double elapsed_seconds_ = 0;

  std::mutex mu_;
  std::condition_variable cv_;
  int in_flight_ = 0;                        // GUARDED_BY(mu_)
  uint64_t stalls_ = 0;                      // GUARDED_BY(mu_)
  std::vector<uint8_t> acks_;                // GUARDED_BY(mu_) while running
  LatencyHistogram latency_;                 // GUARDED_BY(mu_)
  std::map<std::string, uint64_t> errors_;   // GUARDED_BY(mu_)
};

struct DeliveryCheck {
  uint64_t expected = 0;
  uint64_t missing = 0;
  uint64_t duplicates = 0;
  uint64_t unexpected = 0;
  uint64_t out_of_order = 0;
};

void CheckWatcher(const WatcherState& watcher, const std::vector<uint8_t>& acks,
                  DeliveryCheck* check) {
  for (size_t seq = 0; seq < acks.size(); ++seq) {
    const uint8_t seen = watcher.deliveries[seq];
    if (acks[seq] == Writer::kAcked) {
      ++check->expected;
      if (seen == 0) ++check->missing;
    }
    if (seen > 1) check->duplicates += seen - 1;
    if (acks[seq] == Writer::kNotSent && seen > 0) check->unexpected += seen;
  }
  check->unexpected += watcher.unexpected;
  check->out_of_order += watcher.out_of_order;
}

using Streams = std::vector<std::unique_ptr<WatchStream>>;

// Opens the streams and waits (up to 30 s) until every watcher is created,
// so that the timed part measures delivery, not setup. Returns whether all
// were created.
bool OpenStreams(ConnectionPool& pool, const KeySpec& keys, const WatchOptions& options,
                 int64_t puts, WatchShared* shared, Streams* streams) {
  for (int s = 0; s < options.streams; ++s) {
    const int count = options.watchers / options.streams + (s < options.watchers % options.streams);
    streams->push_back(
        std::make_unique<WatchStream>(pool.ForClient(s), keys.prefix, count, puts, shared));
  }
  std::unique_lock<std::mutex> lock(shared->mu);
  shared->cv.wait_for(lock, std::chrono::seconds(30), [&] {
    return shared->created == options.watchers || shared->streams_done > 0;
  });
  return shared->created == options.watchers;
}

// Waits until `expected` events arrived or `timeout_seconds` passed, then
// cancels every stream and waits for them to end. Returns when draining ended.
Clock::time_point DrainAndClose(WatchShared* shared, uint64_t expected, double timeout_seconds,
                   Streams* streams) {
  const auto deadline = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                           std::chrono::duration<double>(timeout_seconds));
  while (shared->events.load() < expected && Clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  const auto drained = Clock::now();
  // A short grace period to catch duplicates that would arrive just after.
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  for (auto& stream : *streams) stream->Cancel();
  std::unique_lock<std::mutex> lock(shared->mu);
  shared->cv.wait(lock, [&] { return shared->streams_done == static_cast<int>(streams->size()); });
  return drained;
}

// Checks every watcher against the writer's acknowledgements and fills the
// report's counts, latencies and verdict.
void Summarize(Streams& streams, const Writer& writer, const WatchShared& shared,
               bool all_created, const WatchOptions& options, int64_t puts, Report* report) {
  DeliveryCheck check;
  uint64_t stream_errors = all_created ? 0 : 1;
  uint64_t unknown_watch_events = 0;
  for (auto& stream : streams) {
    report->latency.Merge(stream->latency());
    for (const auto& watcher : stream->watchers()) CheckWatcher(watcher, writer.acks(), &check);
    stream_errors += stream->cancels();
    unknown_watch_events += stream->unknown_watch_events();
    if (stream->unparsed() > 0) {
      stream_errors += stream->unparsed();
      report->error_messages["watch response does not parse"] += stream->unparsed();
    }
    for (const auto& reason : stream->cancel_reasons()) ++report->error_messages[reason];
    const auto& status = stream->final_status();
    if (!status.ok() && status.error_code() != grpc::StatusCode::CANCELLED) {
      ++stream_errors;
      ++report->error_messages["watch stream: " + DescribeStatus(status)];
    }
  }
  if (!all_created) {
    ++report->error_messages["watchers not all created within 30 s (" +
                             std::to_string(shared.created) + " of " +
                             std::to_string(options.watchers) + ")"];
  }
  uint64_t put_errors = 0;
  for (const auto& [message, count] : writer.errors()) {
    report->error_messages["put: " + message] += count;
    put_errors += count;
  }
  uint64_t acked = 0;
  for (uint8_t ack : writer.acks()) acked += ack == Writer::kAcked;

  report->ok = report->latency.count();
  report->errors = put_errors + stream_errors;
  report->kinds.push_back(OperationStats{"delivery", report->latency});
  report->kinds.push_back(OperationStats{"put", writer.latency()});
  const bool exactly_once = all_created && check.missing == 0 && check.duplicates == 0 &&
                            check.unexpected == 0 && check.out_of_order == 0 &&
                            stream_errors == 0 && unknown_watch_events == 0;
  auto& extra = report->extra;
  extra["watchers"] = options.watchers;
  extra["streams"] = options.streams;
  extra["puts"] = puts;
  extra["puts_acked"] = acked;
  extra["put_errors"] = put_errors;
  extra["put_rate_target"] = options.put_rate;
  extra["put_rate_achieved"] =
      writer.elapsed_seconds() > 0 ? static_cast<double>(acked) / writer.elapsed_seconds() : 0.0;
  extra["writer_stalls"] = writer.stalls();
  extra["events_expected"] = check.expected;
  extra["events_received"] = shared.events.load();
  extra["event_responses"] = shared.event_responses.load();
  extra["missing"] = check.missing;
  extra["duplicates"] = check.duplicates;
  extra["unexpected"] = check.unexpected + unknown_watch_events;
  extra["out_of_order"] = check.out_of_order;
  extra["stream_errors"] = stream_errors;
  extra["exactly_once"] = exactly_once;
  report->passed = exactly_once && put_errors == 0;
}

}  // namespace

Report RunWatch(const CommonOptions& common, const KeySpec& keys, const WatchOptions& options,
                ConnectionPool& pool) {
  Report report;
  report.workload = "watch";
  report.unit = "events";
  const int64_t puts =
      common.duration_seconds > 0
          ? std::max<int64_t>(1, static_cast<int64_t>(common.duration_seconds * options.put_rate))
          : common.total;
  if (static_cast<uint64_t>(puts) * static_cast<uint64_t>(options.watchers) > kMaxDeliveryBytes) {
    report.passed = false;
    report.errors = 1;
    report.error_messages["watchers x puts exceeds 2^30: lower --total/--duration or --watchers"] = 1;
    return report;
  }

  WatchShared shared;
  Streams streams;
  const bool all_created = OpenStreams(pool, keys, options, puts, &shared, &streams);
  Writer writer(pool, keys, common.request_timeout_seconds, options.max_puts_in_flight);
  const auto start = Clock::now();
  uint64_t expected_events = 0;
  bool created_file_failed = false;
  if (all_created && !options.created_file.empty()) {
    std::ofstream created(options.created_file, std::ios::trunc);
    created_file_failed = !created;
  }
  if (all_created) {
    ProgressBar progress("watch", puts, 0);
    writer.Run(puts, options.put_rate, &progress);
    progress.Finish();
    for (uint8_t ack : writer.acks()) expected_events += ack == Writer::kAcked;
    expected_events *= static_cast<uint64_t>(options.watchers);
  }
  const auto drained = DrainAndClose(&shared, expected_events,
                                     all_created ? options.drain_timeout_seconds : 0, &streams);
  report.elapsed_seconds = std::chrono::duration<double>(drained - start).count();
  Summarize(streams, writer, shared, all_created, options, puts, &report);
  if (created_file_failed) {
    ++report.error_messages["cannot write --created-file " + options.created_file];
    report.errors++;
    report.passed = false;
  }
  return report;
}

}  // namespace cairn::bench
