// WatchStream: the ordered, bounded output queue of one client stream. The
// watch bookkeeping itself lives in WatchHub (watch_hub.cc).
#include <google/protobuf/io/coded_stream.h>

#include <cstdint>
#include <limits>

#include "common/check.h"
#include "watch/watch_hub.h"

namespace cairn::watch {

namespace {
// Upper bound of a serialized ResponseHeader inside a WatchResponse (four
// varint fields of at most 10 bytes plus tags, and the field's own tag and
// length). Next() fills the header after the size decisions.
constexpr size_t kMaxHeaderBytes = 48;
}  // namespace

WatchStream::WatchStream(WatchHub* hub, std::function<void()> on_ready)
    : hub_(hub), on_ready_(std::move(on_ready)) {}

WatchStream::~WatchStream() { Close(); }

int64_t WatchStream::Create(const etcdserverpb::WatchCreateRequest& request) {
  return hub_->CreateWatch(this, request);
}

bool WatchStream::Cancel(int64_t watch_id) { return hub_->CancelWatch(this, watch_id); }

void WatchStream::RequestProgress() { hub_->RequestProgress(this); }

void WatchStream::Close() {
  hub_->CloseStream(this);
  CloseQueue();
  // Once this returns no on_ready runs or will run: NotifyReady holds
  // callback_mu_ while calling it.
  std::lock_guard<std::mutex> lock(callback_mu_);
  on_ready_ = nullptr;
}

size_t WatchStream::WatcherCount() const {
  std::lock_guard<std::mutex> lock(hub_->mu_);
  return watchers_.size();
}

bool WatchStream::CanAcceptRequest() const {
  std::lock_guard<std::mutex> lock(queue_mu_);
  return control_responses_ < hub_->options_.max_control_responses;
}

bool WatchStream::HasMore() const {
  std::lock_guard<std::mutex> lock(queue_mu_);
  return !queue_.empty();
}

bool WatchStream::Next(etcdserverpb::WatchResponse* out) {
  out->Clear();
  {
    std::lock_guard<std::mutex> lock(queue_mu_);
    if (queue_.empty()) {
      // The reader stops here; the next push must wake it.
      want_notify_ = !queue_closed_;
      return false;
    }
    Pending& p = queue_.front();
    bool finished = true;
    const bool needs_fragments =
        p.next_event > 0 || (p.fragment && p.response.events_size() >= 2 &&
                             p.bytes + kMaxHeaderBytes >= hub_->options_.max_request_bytes);
    if (needs_fragments) {
      finished = TakeFragment(&p, out);
    } else {
      *out = std::move(p.response);
    }
    if (finished) {
      if (p.is_event) {
        event_responses_--;
        event_bytes_ -= p.bytes;
      } else {
        control_responses_--;
      }
      queue_.pop_front();
    }
  }
  const int64_t rev = out->header().revision();
  if (hub_->header_filler_) hub_->header_filler_(out->mutable_header());
  out->mutable_header()->set_revision(rev);
  return true;
}

// As etcd's sendFragments: every fragment but the last has fragment=true;
// events are added while the fragment stays below max_request_bytes, but
// each fragment carries at least one event.
bool WatchStream::TakeFragment(Pending* p, etcdserverpb::WatchResponse* out) const {
  etcdserverpb::WatchResponse& whole = p->response;
  *out->mutable_header() = whole.header();
  out->set_watch_id(whole.watch_id());
  out->set_created(whole.created());
  out->set_canceled(whole.canceled());
  out->set_compact_revision(whole.compact_revision());
  out->set_cancel_reason(whole.cancel_reason());
  out->set_fragment(true);
  const size_t limit = hub_->options_.max_request_bytes;
  size_t size = out->ByteSizeLong() + kMaxHeaderBytes;
  const int n = whole.events_size();
  while (p->next_event < n) {
    mvccpb::Event* ev = whole.mutable_events(p->next_event);
    const size_t ev_size = ev->ByteSizeLong();
    const size_t add =
        1 + google::protobuf::io::CodedOutputStream::VarintSize64(ev_size) + ev_size;
    if (out->events_size() >= 1 && size + add >= limit) break;
    size += add;
    out->add_events()->Swap(ev);
    p->next_event++;
  }
  if (p->next_event < n) return false;
  out->set_fragment(false);
  return true;
}

bool WatchStream::TryPushEvent(etcdserverpb::WatchResponse response, bool fragment,
                               bool* notify) {
  const size_t bytes = response.ByteSizeLong();
  std::lock_guard<std::mutex> lock(queue_mu_);
  if (queue_closed_) return true;  // nobody will read it; not a slow consumer
  const WatchHubOptions& o = hub_->options_;
  if (event_responses_ > 0 &&
      (event_responses_ >= o.max_pending_responses || event_bytes_ + bytes > o.max_pending_bytes)) {
    return false;
  }
  Pending p;
  p.response = std::move(response);
  p.bytes = bytes;
  p.is_event = true;
  p.fragment = fragment;
  queue_.push_back(std::move(p));
  event_responses_++;
  event_bytes_ += bytes;
  *notify = *notify || want_notify_;
  want_notify_ = false;
  return true;
}

void WatchStream::PushControl(etcdserverpb::WatchResponse response, bool* notify) {
  std::lock_guard<std::mutex> lock(queue_mu_);
  if (queue_closed_) return;
  Pending p;
  p.bytes = response.ByteSizeLong();
  p.response = std::move(response);
  queue_.push_back(std::move(p));
  control_responses_++;
  *notify = *notify || want_notify_;
  want_notify_ = false;
}

bool WatchStream::HasRoomForEvents() const {
  std::lock_guard<std::mutex> lock(queue_mu_);
  const WatchHubOptions& o = hub_->options_;
  return event_responses_ == 0 ||
         (event_responses_ < o.max_pending_responses && event_bytes_ < o.max_pending_bytes);
}

size_t WatchStream::EventBytesAvailable(bool* empty) const {
  std::lock_guard<std::mutex> lock(queue_mu_);
  const WatchHubOptions& o = hub_->options_;
  *empty = event_responses_ == 0;
  if (event_responses_ >= o.max_pending_responses || event_bytes_ >= o.max_pending_bytes) return 0;
  return o.max_pending_bytes - event_bytes_;
}

void WatchStream::CloseQueue() {
  std::lock_guard<std::mutex> lock(queue_mu_);
  queue_closed_ = true;
  want_notify_ = false;
  queue_.clear();
  event_responses_ = 0;
  event_bytes_ = 0;
  control_responses_ = 0;
}

void WatchStream::NotifyReady() {
  std::lock_guard<std::mutex> lock(callback_mu_);
  if (on_ready_) on_ready_();
}

}  // namespace cairn::watch
