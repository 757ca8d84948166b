// WatchStream: the ordered, bounded output queue of one client stream. The
// watch bookkeeping itself lives in WatchHub (watch_hub.cc).
#include <cstdint>
#include <string>

#include "common/check.h"
#include "watch/watch_hub.h"
#include "watch/wire.h"

namespace cairn::watch {

namespace {
// Upper bound of a serialized ResponseHeader inside a WatchResponse (four
// varint fields of at most 10 bytes plus tags, and the field's own tag and
// length). NextEncoded() fills the header after the size decisions.
constexpr size_t kMaxHeaderBytes = 48;
// What a response takes besides its events, for the queue's byte budget.
constexpr size_t kResponseBytes = 64;
}  // namespace

const std::string& QueuedResponse::cancel_reason() const {
  static const std::string kNone;
  return rare ? rare->cancel_reason : kNone;
}

namespace {
// Bytes of an event response against the stream's budget.
size_t BudgetBytes(const QueuedResponse& r) { return kResponseBytes + r.events.bytes(); }
}  // namespace

WatchStream::WatchStream(WatchHub* hub, std::function<void()> on_ready)
    : hub_(hub), on_ready_(std::move(on_ready)) {}

WatchStream::~WatchStream() { Close(); }

int64_t WatchStream::Create(const etcdserverpb::WatchCreateRequest& request) {
  return hub_->CreateWatch(this, request, {});
}

void WatchStream::Refuse(const etcdserverpb::WatchCreateRequest& request, const std::string& reason) {
  hub_->CreateWatch(this, request, reason);
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

bool WatchStream::Next(etcdserverpb::WatchResponse* out) {
  out->Clear();
  std::string bytes;
  if (!NextEncoded(&bytes)) return false;
  CHECK(out->ParseFromString(bytes)) << "watch response does not parse";
  return true;
}

bool WatchStream::FrontIsEvent() const {
  std::lock_guard<std::mutex> lock(queue_mu_);
  return !queue_.empty() && queue_.front().is_event;
}

bool WatchStream::NextEncoded(std::string* out, NextInfo* info) {
  out->clear();
  // Filled before taking the queue lock: the filler may take locks of its own.
  etcdserverpb::ResponseHeader header;
  if (hub_->header_filler_) hub_->header_filler_(&header);
  std::lock_guard<std::mutex> lock(queue_mu_);
  if (queue_.empty()) {
    // The reader stops here; the next push must wake it.
    want_notify_ = !queue_closed_;
    return false;
  }
  QueuedResponse& p = queue_.front();
  const size_t total = p.events.count();
  const bool needs_fragments =
      p.next_event > 0 || (p.fragment && total >= 2 &&
                           BudgetBytes(p) + kMaxHeaderBytes >= hub_->options_.max_request_bytes);
  size_t take = total - p.next_event;
  if (needs_fragments) take = FragmentEvents(p);
  const bool more_fragments = p.next_event + take < total;

  // As protobuf would serialize the WatchResponse: fields in number order,
  // zero values left out, the header always present.
  std::string h;
  wire::AppendVarintField(&h, 1, header.cluster_id());
  wire::AppendVarintField(&h, 2, header.member_id());
  wire::AppendVarintField(&h, 3, static_cast<uint64_t>(p.revision));
  wire::AppendVarintField(&h, 4, header.raft_term());
  out->reserve(h.size() + 48 + p.cancel_reason().size() +
               (take == total ? p.events.bytes() : 0));
  out->push_back(static_cast<char>((1 << 3) | 2));
  wire::AppendVarint(out, h.size());
  out->append(h);
  wire::AppendVarintField(out, 2, static_cast<uint64_t>(p.watch_id));
  wire::AppendVarintField(out, 3, p.created ? 1 : 0);
  wire::AppendVarintField(out, 4, p.canceled ? 1 : 0);
  wire::AppendVarintField(out, 5, static_cast<uint64_t>(p.compact_revision()));
  wire::AppendBytesField(out, 6, p.cancel_reason());
  wire::AppendVarintField(out, 7, more_fragments ? 1 : 0);
  p.events.ForEachWire(p.next_event, take, [&](std::string_view bytes) { out->append(bytes); });
  if (info != nullptr) info->merged = p.events.merged();
  p.next_event += static_cast<uint32_t>(take);
  if (!more_fragments) {
    if (p.is_event) {
      event_responses_--;
      event_bytes_ -= BudgetBytes(p);
    } else {
      control_responses_--;
    }
    if (!p.NextInGroup()) {
      queue_.pop_front();
      popped_++;
    }
  }
  if (info != nullptr) info->queued = event_responses_ + control_responses_;
  return true;
}

// As etcd's sendFragments: every fragment but the last has fragment=true;
// events are added while the fragment stays below max_request_bytes, but
// each fragment carries at least one event.
size_t WatchStream::FragmentEvents(const QueuedResponse& p) const {
  const size_t limit = hub_->options_.max_request_bytes;
  size_t size = kMaxHeaderBytes + 48 + p.cancel_reason().size();
  size_t take = 0;
  p.events.ForEachSize(p.next_event, [&](size_t add) {
    if (take >= 1 && size + add >= limit) return false;
    size += add;
    take++;
    return true;
  });
  return take;
}

bool WatchStream::TryPushEvent(QueuedResponse response, bool fragment, uint64_t* merge_seq,
                               bool* notify) {
  std::lock_guard<std::mutex> lock(queue_mu_);
  return TryPushEventLocked(std::move(response), fragment, merge_seq, notify);
}

QueuedResponse* WatchStream::MergeTargetLocked(const uint64_t* merge_seq, int64_t watch_id,
                                                     size_t add) {
  if (merge_seq == nullptr || *merge_seq == Watcher::kNoSeq || *merge_seq < popped_ ||
      *merge_seq < merge_floor_) {
    return nullptr;
  }
  QueuedResponse& prev = queue_[*merge_seq - popped_];
  if (prev.is_event && prev.next_event == 0 && prev.watch_id == watch_id && !prev.events.empty() &&
      !prev.grouped() &&
      BudgetBytes(prev) + add <= hub_->options_.max_merged_response_bytes) {
    return &prev;
  }
  return nullptr;
}

template <typename Events>
bool WatchStream::MergeLocked(QueuedResponse* prev, Events&& events, int64_t revision, size_t add) {
  if (event_bytes_ + add > hub_->options_.max_pending_bytes) return false;
  prev->events.Append(std::forward<Events>(events));
  prev->revision = revision;
  event_bytes_ += add;
  return true;  // the reader was already told about `prev`
}

bool WatchStream::TryPushEventLocked(QueuedResponse response, bool fragment, uint64_t* merge_seq,
                                     bool* notify) {
  if (queue_closed_) return true;  // nobody will read it; not a slow consumer
  if (!response.events.empty()) {
    const size_t add = response.events.bytes();
    if (QueuedResponse* prev = MergeTargetLocked(merge_seq, response.watch_id, add)) {
      return MergeLocked(prev, std::move(response.events), response.revision, add);
    }
  }
  const size_t bytes = BudgetBytes(response);
  if (event_responses_ > 0 && !EventRoomLocked(bytes)) return false;
  if (response.events.empty()) merge_floor_ = pushed_ + 1;  // a progress response
  if (merge_seq != nullptr) *merge_seq = pushed_;
  queue_.push_back(std::move(response));
  queue_.back().is_event = true;
  queue_.back().fragment = fragment;
  pushed_++;
  event_responses_++;
  event_bytes_ += bytes;
  *notify = *notify || want_notify_;
  want_notify_ = false;
  return true;
}

bool WatchStream::TryPushLiveLocked(Watcher* w, int64_t revision, EventSelection&& selected,
                                    bool* notify) {
  if (queue_closed_) return true;
  // The merge (the common case under load) builds no response.
  const size_t add = selected.bytes();
  if (QueuedResponse* prev = MergeTargetLocked(&w->queued_seq, w->watch_id, add)) {
    return MergeLocked(prev, std::move(selected), revision, add);
  }
  // The same events as the response queued last, for another watcher of
  // this stream: one more id in that entry. Not a response that may be
  // fragmented (fragments are cut per response). A group is never merged
  // into, so only a watcher with nothing queued joins one: on a backed-up
  // stream each watcher's later revisions still merge into its own response.
  const bool nothing_queued = w->queued_seq == Watcher::kNoSeq || w->queued_seq < popped_;
  if (nothing_queued && !queue_.empty()) {
    QueuedResponse& last = queue_.back();
    if (last.is_event && last.revision == revision && last.next_event == 0 &&
        last.fragment == w->fragment && !(last.fragment && selected.count() >= 2) &&
        last.compact_revision() == 0 && last.cancel_reason().empty() && last.events.SameAs(selected)) {
      const size_t bytes = BudgetBytes(last);
      if (!EventRoomLocked(bytes)) return false;
      last.AddToGroup(w->watch_id);
      w->queued_seq = pushed_ - 1;  // a group: never a merge target
      event_responses_++;
      event_bytes_ += bytes;
      return true;  // the reader was already told about `last`
    }
  }
  return PushLiveLocked(w, revision, std::move(selected), notify);
}

size_t WatchStream::TryMergeIntoGroupLocked(const Staged& staged, const std::vector<EventSelection>& selections,
                                            size_t i, int64_t revision) {
  const Watcher* w = staged[i].first;
  const uint64_t seq = w->queued_seq;
  if (queue_closed_ || seq == Watcher::kNoSeq || seq < popped_ || seq < merge_floor_) return 0;
  QueuedResponse& g = queue_[seq - popped_];
  if (!g.grouped() || g.rare->group_next != 0 || g.next_event != 0 || !g.is_event || g.events.empty() ||
      g.watch_id != w->watch_id || g.revision >= revision) {
    return 0;
  }
  const EventSelection& events = selections[staged[i].second];
  const std::vector<int64_t>& others = g.rare->group;
  if (staged.size() - i < 1 + others.size()) return 0;
  for (size_t k = 0; k < others.size(); k++) {
    const auto& [member, selected] = staged[i + 1 + k];
    if (member->watch_id != others[k] || member->queued_seq != seq || selected != staged[i].second) return 0;
  }
  const WatchHubOptions& o = hub_->options_;
  const size_t add = events.bytes();
  const size_t members = 1 + others.size();
  if (BudgetBytes(g) + add > o.max_merged_response_bytes || event_bytes_ + add * members > o.max_pending_bytes) {
    return 0;
  }
  g.events.Append(events);
  g.revision = revision;
  event_bytes_ += add * members;
  return members;  // the reader was already told about `g`
}

bool WatchStream::EventRoomLocked(size_t bytes) const {
  const WatchHubOptions& o = hub_->options_;
  return event_responses_ < o.max_pending_responses && event_bytes_ + bytes <= o.max_pending_bytes;
}

bool WatchStream::PushLiveLocked(Watcher* w, int64_t revision, EventSelection&& selected, bool* notify) {
  QueuedResponse r;
  r.watch_id = w->watch_id;
  r.revision = revision;
  r.events.Append(std::move(selected));
  return TryPushEventLocked(std::move(r), w->fragment, &w->queued_seq, notify);
}

void WatchStream::PushControl(QueuedResponse response, bool* notify) {
  std::lock_guard<std::mutex> lock(queue_mu_);
  if (queue_closed_) return;
  queue_.push_back(std::move(response));
  pushed_++;
  merge_floor_ = pushed_;
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
  popped_ = pushed_;
  event_responses_ = 0;
  event_bytes_ = 0;
  control_responses_ = 0;
}

void WatchStream::NotifyReady() {
  std::lock_guard<std::mutex> lock(callback_mu_);
  if (on_ready_) on_ready_();
}

}  // namespace cairn::watch
