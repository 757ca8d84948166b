#include "kv_clients.h"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <random>
#include <unordered_map>

#include "keys.h"

namespace cairn::bench {
namespace {

using etcdserverpb::Compare;

// A fresh ClientContext per call (gRPC forbids reusing one). The previous
// context is kept until the next call, so a context is never destroyed from
// inside its own completion callback (which is where the next call starts).
class CallContexts {
 public:
  explicit CallContexts(double timeout_seconds)
      : timeout_(std::chrono::duration_cast<std::chrono::microseconds>(
            std::chrono::duration<double>(timeout_seconds))) {}

  grpc::ClientContext* Next() {
    previous_ = std::move(current_);
    current_ = std::make_unique<grpc::ClientContext>();
    current_->set_deadline(std::chrono::system_clock::now() + timeout_);
    return current_.get();
  }

 private:
  std::chrono::microseconds timeout_;
  std::unique_ptr<grpc::ClientContext> current_;
  std::unique_ptr<grpc::ClientContext> previous_;
};

KeyOptions ToKeyOptions(const KeySpec& keys) {
  KeyOptions options;
  options.key_size = keys.key_size;
  options.value_size = keys.value_size;
  options.key_space = keys.key_space;
  options.sequential_keys = keys.sequential;
  return options;
}

class PutClient : public OpClient {
 public:
  PutClient(Connection& connection, const KeySpec& keys, double timeout_seconds)
      : connection_(connection), keys_(keys), chooser_(ToKeyOptions(keys), keys.seed),
        contexts_(timeout_seconds) {
    request_.set_value(MakeValue(keys.value_size));
  }

  void Start(int64_t ticket, Done done) override {
    request_.set_key(FormatKey(keys_.prefix, keys_.key_size, chooser_.Next(ticket)));
    connection_.kv->async()->Put(contexts_.Next(), &request_, &response_,
                                 [done = std::move(done)](grpc::Status s) { done(s, 0); });
  }

 private:
  Connection& connection_;
  const KeySpec keys_;
  KeyChooser chooser_;
  CallContexts contexts_;
  etcdserverpb::PutRequest request_;
  etcdserverpb::PutResponse response_;
};

class RangeClient : public OpClient {
 public:
  RangeClient(Connection& connection, const KeySpec& keys, Consistency consistency,
              int64_t prefix_keys, bool expect_found, double timeout_seconds)
      : connection_(connection), keys_(keys), chooser_(ToKeyOptions(keys), keys.seed),
        prefix_keys_(prefix_keys), expect_found_(expect_found), contexts_(timeout_seconds) {
    request_.set_serializable(consistency == Consistency::kSerializable);
    if (prefix_keys_ > 1) {
      request_.set_key(keys.prefix);
      request_.set_range_end(PrefixEnd(keys.prefix));
    }
  }

  void Start(int64_t ticket, Done done) override {
    if (prefix_keys_ <= 1) {
      request_.set_key(FormatKey(keys_.prefix, keys_.key_size, chooser_.Next(ticket)));
    }
    connection_.kv->async()->Range(
        contexts_.Next(), &request_, &response_, [this, done = std::move(done)](grpc::Status s) {
          const int64_t expected = prefix_keys_ > 1 ? prefix_keys_ : 1;
          if (s.ok() && expect_found_ && response_.kvs_size() != expected) {
            s = grpc::Status(grpc::StatusCode::DATA_LOSS,
                             "range returned " + std::to_string(response_.kvs_size()) +
                                 " keys, expected " + std::to_string(expected));
          }
          done(s, 0);
        });
  }

 private:
  Connection& connection_;
  const KeySpec keys_;
  KeyChooser chooser_;
  const int64_t prefix_keys_;
  const bool expect_found_;
  CallContexts contexts_;
  etcdserverpb::RangeRequest request_;
  etcdserverpb::RangeResponse response_;
};

class TxnPutClient : public OpClient {
 public:
  TxnPutClient(Connection& connection, const KeySpec& keys, int client_index, int client_count,
               double timeout_seconds)
      : connection_(connection), keys_(keys), chooser_(OwnedKeys(keys, client_count), keys.seed),
        client_index_(client_index), client_count_(client_count), contexts_(timeout_seconds) {
    Compare* compare = request_.add_compare();
    compare->set_result(Compare::EQUAL);
    compare->set_target(Compare::MOD);
    request_.add_success()->mutable_request_put()->set_value(MakeValue(keys.value_size));
    request_.add_failure()->mutable_request_range();
  }

  void Start(int64_t ticket, Done done) override {
    int64_t index = chooser_.Next(ticket);
    if (client_count_ > 0) index = client_index_ + index * client_count_;
    std::string key = FormatKey(keys_.prefix, keys_.key_size, index);
    Compare* compare = request_.mutable_compare(0);
    compare->set_key(key);
    auto known = known_revisions_.find(index);
    compare->set_mod_revision(known == known_revisions_.end() ? 0 : known->second);
    request_.mutable_success(0)->mutable_request_put()->set_key(key);
    request_.mutable_failure(0)->mutable_request_range()->set_key(key);
    connection_.kv->async()->Txn(
        contexts_.Next(), &request_, &response_,
        [this, index, done = std::move(done)](grpc::Status s) {
          if (!s.ok()) {
            done(s, 0);
            return;
          }
          if (response_.succeeded()) {
            known_revisions_[index] = response_.header().revision();
            done(s, 0);
            return;
          }
          int64_t current = 0;
          if (response_.responses_size() == 1 &&
              response_.responses(0).response_range().kvs_size() == 1) {
            current = response_.responses(0).response_range().kvs(0).mod_revision();
          }
          known_revisions_[index] = current;
          done(s, 1);
        });
  }

 private:
  static KeyOptions OwnedKeys(const KeySpec& keys, int client_count) {
    KeyOptions options = ToKeyOptions(keys);
    if (client_count > 0) options.key_space = std::max<int64_t>(1, keys.key_space / client_count);
    return options;
  }

  Connection& connection_;
  const KeySpec keys_;
  KeyChooser chooser_;
  const int client_index_;
  const int client_count_;
  CallContexts contexts_;
  // Last mod_revision seen per key index; at most one entry per key touched,
  // so bounded by the key space this client may touch.
  std::unordered_map<int64_t, int64_t> known_revisions_;
  etcdserverpb::TxnRequest request_;
  etcdserverpb::TxnResponse response_;
};

class MixedClient : public OpClient {
 public:
  MixedClient(Connection& connection, const KeySpec& keys, const MixedOptions& options,
              double timeout_seconds)
      : connection_(connection), keys_(keys), chooser_(ToKeyOptions(keys), keys.seed),
        read_fraction_(options.read_fraction), random_(keys.seed ^ 0x5bd1e995),
        contexts_(timeout_seconds) {
    range_request_.set_serializable(options.consistency == Consistency::kSerializable);
    put_request_.set_value(MakeValue(keys.value_size));
  }

  void Start(int64_t ticket, Done done) override {
    std::string key = FormatKey(keys_.prefix, keys_.key_size, chooser_.Next(ticket));
    if (std::uniform_real_distribution<double>(0, 1)(random_) < read_fraction_) {
      range_request_.set_key(std::move(key));
      connection_.kv->async()->Range(contexts_.Next(), &range_request_, &range_response_,
                                     [done = std::move(done)](grpc::Status s) { done(s, 0); });
    } else {
      put_request_.set_key(std::move(key));
      connection_.kv->async()->Put(contexts_.Next(), &put_request_, &put_response_,
                                   [done = std::move(done)](grpc::Status s) { done(s, 1); });
    }
  }

 private:
  Connection& connection_;
  const KeySpec keys_;
  KeyChooser chooser_;
  const double read_fraction_;
  std::mt19937_64 random_;
  CallContexts contexts_;
  etcdserverpb::RangeRequest range_request_;
  etcdserverpb::RangeResponse range_response_;
  etcdserverpb::PutRequest put_request_;
  etcdserverpb::PutResponse put_response_;
};

// One keep-alive stream. An operation is one write and one read; `done` runs
// once both have completed, because the next operation's write may only be
// started after the previous write's OnWriteDone.
class LeaseKeepAliveClient
    : public OpClient,
      public grpc::ClientBidiReactor<etcdserverpb::LeaseKeepAliveRequest,
                                     etcdserverpb::LeaseKeepAliveResponse> {
 public:
  LeaseKeepAliveClient(Connection& connection, int64_t lease_id, double timeout_seconds)
      : connection_(connection), lease_id_(lease_id), timeout_seconds_(timeout_seconds) {
    request_.set_id(lease_id);
    connection_.lease->async()->LeaseKeepAlive(&context_, this);
    StartCall();
  }

  ~LeaseKeepAliveClient() override { Close(); }

  void Start(int64_t /*ticket*/, Done done) override {
    if (broken_) {
      done(grpc::Status(grpc::StatusCode::UNAVAILABLE, "keep-alive stream closed"), 0);
      return;
    }
    done_ = std::move(done);
    status_ = grpc::Status::OK;
    pending_.store(2, std::memory_order_release);
    StartRead(&response_);
    StartWrite(&request_);
  }

  void OnWriteDone(bool /*ok*/) override { FinishHalf(); }  // a failed write fails the read

  void OnReadDone(bool ok) override {
    if (!ok) {
      broken_ = true;
      status_ = grpc::Status(grpc::StatusCode::UNAVAILABLE, "keep-alive stream closed");
    } else if (response_.ttl() <= 0) {
      status_ = grpc::Status(grpc::StatusCode::NOT_FOUND, "lease not found or expired");
    }
    FinishHalf();
  }

  void OnDone(const grpc::Status& /*status*/) override {
    std::lock_guard<std::mutex> lock(mu_);
    stream_done_ = true;
    cv_.notify_all();
  }

  void Close() override {
    if (closed_) return;
    closed_ = true;
    if (!broken_) StartWritesDone();
    std::unique_lock<std::mutex> lock(mu_);
    if (!cv_.wait_for(lock, std::chrono::seconds(5), [&] { return stream_done_; })) {
      context_.TryCancel();
      cv_.wait(lock, [&] { return stream_done_; });  // OnDone always follows a cancel
    }
    lock.unlock();
    grpc::ClientContext revoke_context;
    revoke_context.set_deadline(std::chrono::system_clock::now() +
                                std::chrono::milliseconds(static_cast<int64_t>(timeout_seconds_ * 1000)));
    etcdserverpb::LeaseRevokeRequest revoke;
    revoke.set_id(lease_id_);
    etcdserverpb::LeaseRevokeResponse ignored;
    (void)connection_.lease->LeaseRevoke(&revoke_context, revoke, &ignored);  // best effort
  }

 private:
  void FinishHalf() {
    if (pending_.fetch_sub(1, std::memory_order_acq_rel) != 1) return;
    Done done = std::move(done_);
    done(status_, 0);
  }

  Connection& connection_;
  const int64_t lease_id_;
  const double timeout_seconds_;
  grpc::ClientContext context_;
  etcdserverpb::LeaseKeepAliveRequest request_;
  etcdserverpb::LeaseKeepAliveResponse response_;
  Done done_;
  grpc::Status status_;
  std::atomic<int> pending_{0};
  bool broken_ = false;
  bool closed_ = false;

  std::mutex mu_;
  std::condition_variable cv_;
  bool stream_done_ = false;  // GUARDED_BY(mu_)
};

}  // namespace

std::unique_ptr<OpClient> MakePutClient(Connection& connection, const KeySpec& keys,
                                        double timeout_seconds) {
  return std::make_unique<PutClient>(connection, keys, timeout_seconds);
}

std::unique_ptr<OpClient> MakeRangeClient(Connection& connection, const KeySpec& keys,
                                          Consistency consistency, int64_t prefix_keys,
                                          bool expect_found, double timeout_seconds) {
  return std::make_unique<RangeClient>(connection, keys, consistency, prefix_keys, expect_found,
                                       timeout_seconds);
}

std::unique_ptr<OpClient> MakeTxnPutClient(Connection& connection, const KeySpec& keys,
                                           int client_index, int client_count,
                                           double timeout_seconds) {
  return std::make_unique<TxnPutClient>(connection, keys, client_index, client_count,
                                        timeout_seconds);
}

std::unique_ptr<OpClient> MakeMixedClient(Connection& connection, const KeySpec& keys,
                                          const MixedOptions& options, double timeout_seconds) {
  return std::make_unique<MixedClient>(connection, keys, options, timeout_seconds);
}

std::unique_ptr<OpClient> MakeLeaseKeepAliveClient(Connection& connection, int64_t ttl_seconds,
                                                   double timeout_seconds, std::string* error) {
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() +
                       std::chrono::milliseconds(static_cast<int64_t>(timeout_seconds * 1000)));
  etcdserverpb::LeaseGrantRequest request;
  request.set_ttl(ttl_seconds);
  etcdserverpb::LeaseGrantResponse response;
  grpc::Status status = connection.lease->LeaseGrant(&context, request, &response);
  if (!status.ok() || !response.error().empty()) {
    *error = "lease grant: " + (status.ok() ? response.error() : DescribeStatus(status));
    return nullptr;
  }
  return std::make_unique<LeaseKeepAliveClient>(connection, response.id(), timeout_seconds);
}

}  // namespace cairn::bench
