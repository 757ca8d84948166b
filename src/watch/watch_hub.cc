#include "watch/watch_hub.h"

#include <algorithm>
#include <limits>
#include <span>
#include <utility>

#include "common/check.h"
#include "common/logging.h"

namespace cairn::watch {

namespace {
// etcd's mvcc errors, which it puts into cancel_reason verbatim.
constexpr char kErrEmptyWatcherRange[] = "mvcc: watcher range is empty";
constexpr char kErrWatcherDuplicateId[] = "mvcc: duplicate watch ID provided on the WatchStream";

// Room left for the response's own fields when sizing catch-up batches.
constexpr size_t kResponseOverheadBytes = 64;
}  // namespace

Status WatchHubOptions::Validate() const {
  if (max_pending_responses == 0) {
    return Status(Code::kInvalidArgument, "watch: max_pending_responses must be > 0");
  }
  if (max_pending_bytes == 0) {
    return Status(Code::kInvalidArgument, "watch: max_pending_bytes must be > 0");
  }
  if (max_control_responses == 0) {
    return Status(Code::kInvalidArgument, "watch: max_control_responses must be > 0");
  }
  if (max_request_bytes < 1024) {
    return Status(Code::kInvalidArgument, "watch: max_request_bytes must be >= 1024");
  }
  if (max_watchers_per_sync == 0) {
    return Status(Code::kInvalidArgument, "watch: max_watchers_per_sync must be > 0");
  }
  return Status::Ok();
}

// Streams to wake once the hub lock is released. Holds strong references so
// a stream cannot be destroyed between the unlock and the call; declare it
// before the lock so the references are dropped after the unlock too (a
// dropped last reference runs ~WatchStream, which takes the hub lock).
class WatchHub::ReadyList {
 public:
  void Add(WatchStream* s) {
    if (auto strong = s->weak_from_this().lock()) streams_.push_back(std::move(strong));
  }
  void Run() {
    for (auto& s : streams_) s->NotifyReady();
    streams_.clear();
  }

 private:
  std::vector<std::shared_ptr<WatchStream>> streams_;
};

WatchHub::WatchHub(const mvcc::KvStore* store, WatchHubOptions options,
                   HeaderFiller header_filler)
    : store_(store),
      header_filler_(std::move(header_filler)),
      options_(std::move(options)),
      published_rev_(store->CurrentRevision()) {
  Status s = options_.Validate();
  CHECK(s.ok()) << s.ToString();
}

WatchHub::~WatchHub() {
  std::lock_guard<std::mutex> lock(mu_);
  CHECK(streams_ == 0) << streams_ << " watch streams outlive their hub";
  CHECK(watchers_ == 0) << watchers_ << " watchers outlive their hub";
}

std::shared_ptr<WatchStream> WatchHub::NewStream(std::function<void()> on_ready) {
  std::shared_ptr<WatchStream> s(new WatchStream(this, std::move(on_ready)));
  std::lock_guard<std::mutex> lock(mu_);
  streams_++;
  return s;
}

int64_t WatchHub::published_revision() const {
  std::lock_guard<std::mutex> lock(mu_);
  return published_rev_;
}

size_t WatchHub::WatcherCount() const {
  std::lock_guard<std::mutex> lock(mu_);
  return watchers_;
}

size_t WatchHub::SlowWatcherCount() const {
  std::lock_guard<std::mutex> lock(mu_);
  return unsynced_.size();
}

size_t WatchHub::StreamCount() const {
  std::lock_guard<std::mutex> lock(mu_);
  return streams_;
}

QueuedResponse WatchHub::NewResponse(int64_t watch_id, int64_t header_rev) {
  QueuedResponse r;
  r.watch_id = watch_id;
  r.revision = header_rev;
  return r;
}

// ------------------------------------------------------------ stream operations

int64_t WatchHub::CreateWatch(WatchStream* s, const etcdserverpb::WatchCreateRequest& request,
                              const std::string& refused) {
  ReadyList ready;
  int64_t id = kInvalidWatchId;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (s->closed_) return kInvalidWatchId;
    // As v3rpc: "\0" is the smallest key; range_end "\0" means ">= key".
    std::string key = request.key().empty() ? std::string(1, '\0') : request.key();
    std::string end = request.range_end();
    const bool from_key = end.size() == 1 && end[0] == '\0';
    if (from_key) end.clear();
    const char* error = nullptr;
    if (!refused.empty()) {
      error = refused.c_str();
    } else if (!end.empty() && key >= end) {
      error = kErrEmptyWatcherRange;
    } else if (request.watch_id() != 0) {  // 0 is clientv3.AutoWatchID
      if (s->watchers_.Contains(request.watch_id())) {
        error = kErrWatcherDuplicateId;
      } else {
        id = request.watch_id();
      }
    } else {
      while (s->watchers_.Contains(s->next_watch_id_)) s->next_watch_id_++;
      id = s->next_watch_id_++;
    }
    // The created response goes first, whatever follows for the watch. Its
    // header revision is the one the watch starts after.
    QueuedResponse created = NewResponse(id, published_rev_);
    created.created = true;
    if (error != nullptr) {
      created.canceled = true;
      created.set_cancel_reason(error);
      created.watch_id = kInvalidWatchId;
    }
    bool notify = false;
    s->PushControl(std::move(created), &notify);
    if (notify) ready.Add(s);
    if (error == nullptr) {
      AddWatcher(Watcher::Create(next_hub_id_++, id, s, key, end, from_key, request),
                 request.start_revision(), &ready);
    }
  }
  ready.Run();
  return id;
}

void WatchHub::AddWatcher(WatcherRef w, int64_t start, ReadyList* ready) {
  // v3rpc turns 0 into "the revision after the current one"; a negative
  // start means "from the beginning of the history".
  if (start == 0) start = published_rev_ + 1;
  if (start < 0) start = 1;
  w->next_rev = start;
  watchers_++;
  w->stream->watchers_.Insert(w);
  if (w->progress_notify) progress_watchers_[w->hub_id] = w.get();
  if (start > published_rev_) {
    w->state = Watcher::State::kSynced;
    synced_.Add(w.get());
    return;
  }
  w->state = Watcher::State::kUnsynced;
  unsynced_[w->hub_id] = w.get();
  w->stream->unsynced_count_++;
  // Answer a compacted start at once rather than at the next SyncUnsynced.
  const int64_t compact_rev = store_->CompactRevision();
  if (start < compact_rev) SendCompacted(w.get(), compact_rev, ready);
}

bool WatchHub::CancelWatch(WatchStream* s, int64_t watch_id) {
  ReadyList ready;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (s->closed_) return false;
    Watcher* w = s->watchers_.Find(watch_id);
    if (w == nullptr) return false;
    RemoveWatcher(w, &ready);
    QueuedResponse canceled = NewResponse(watch_id, published_rev_);
    canceled.canceled = true;
    bool notify = false;
    s->PushControl(std::move(canceled), &notify);
    if (notify) ready.Add(s);
  }
  ready.Run();
  return true;
}

void WatchHub::RequestProgress(WatchStream* s) {
  ReadyList ready;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (s->closed_) return;
    if (s->unsynced_count_ == 0) {
      SendStreamProgress(s, &ready);
    } else {
      s->progress_deferred_ = true;  // answered by MakeSynced / RemoveWatcher
    }
  }
  ready.Run();
}

void WatchHub::CloseStream(WatchStream* s) {
  std::lock_guard<std::mutex> lock(mu_);
  if (s->closed_) return;
  s->closed_ = true;
  while (!s->watchers_.empty()) RemoveWatcher(s->watchers_.back(), nullptr);
  CHECK(s->unsynced_count_ == 0) << "closed stream still counts unsynced watchers";
  CHECK(streams_ > 0) << "stream count underflow";
  streams_--;
}

// ------------------------------------------------------------ state changes

void WatchHub::MakeUnsynced(Watcher* w, int64_t next_rev) {
  CHECK(w->state == Watcher::State::kSynced) << "watcher " << w->hub_id << " is not synced";
  synced_.Remove(w);
  w->state = Watcher::State::kUnsynced;
  w->next_rev = next_rev;
  unsynced_[w->hub_id] = w;
  w->stream->unsynced_count_++;
}

void WatchHub::MakeSynced(Watcher* w, ReadyList* ready) {
  CHECK(w->state == Watcher::State::kUnsynced) << "watcher " << w->hub_id << " is not unsynced";
  CHECK(w->next_rev > published_rev_) << "watcher " << w->hub_id << " at " << w->next_rev
                                      << " is behind published " << published_rev_;
  unsynced_.erase(w->hub_id);
  w->state = Watcher::State::kSynced;
  synced_.Add(w);
  WatchStream* s = w->stream;
  CHECK(s->unsynced_count_ > 0) << "unsynced count underflow";
  if (--s->unsynced_count_ == 0 && s->progress_deferred_) SendStreamProgress(s, ready);
}

// `ready` is null when the whole stream is closing (nothing to send).
void WatchHub::RemoveWatcher(Watcher* w, ReadyList* ready) {
  WatchStream* s = w->stream;
  const bool was_unsynced = w->state == Watcher::State::kUnsynced;
  if (w->state == Watcher::State::kSynced) {
    synced_.Remove(w);
  } else {
    CHECK(was_unsynced) << "watcher " << w->hub_id << " removed twice";
    unsynced_.erase(w->hub_id);
  }
  w->state = Watcher::State::kRemoved;
  progress_watchers_.erase(w->hub_id);
  if (was_unsynced) {
    CHECK(s->unsynced_count_ > 0) << "unsynced count underflow";
    if (--s->unsynced_count_ == 0 && s->progress_deferred_ && ready != nullptr) {
      SendStreamProgress(s, ready);
    }
  }
  CHECK(watchers_ > 0) << "watcher count underflow";
  watchers_--;
  // Last: may destroy *w unless SyncUnsynced holds it (hence the copy of
  // its id: erase must not read a key it has destroyed).
  const int64_t watch_id = w->watch_id;
  CHECK(s->watchers_.Erase(watch_id) != nullptr) << "watch " << watch_id << " not in its stream";
}

void WatchHub::SendCompacted(Watcher* w, int64_t compact_rev, ReadyList* ready) {
  // etcd sends this response with header revision 0 (the mvcc response
  // carries no revision) and canceled = compact_revision != 0.
  QueuedResponse r = NewResponse(w->watch_id, 0);
  r.set_compact_revision(compact_rev);
  r.canceled = true;
  bool notify = false;
  WatchStream* s = w->stream;
  s->PushControl(std::move(r), &notify);
  if (notify) ready->Add(s);
  RemoveWatcher(w, ready);
}

void WatchHub::SendStreamProgress(WatchStream* s, ReadyList* ready) {
  s->progress_deferred_ = false;
  bool notify = false;
  s->PushControl(NewResponse(kInvalidWatchId, published_rev_), &notify);
  if (notify) ready->Add(s);
}

// ------------------------------------------------------------ live delivery

void WatchHub::Restored(int64_t rev) {
  std::lock_guard<std::mutex> lock(mu_);
  if (rev <= published_rev_) return;
  std::vector<Watcher*> synced;
  synced_.ForEach([&](Watcher* w) { synced.push_back(w); });
  for (Watcher* w : synced) MakeUnsynced(w, std::max(w->next_rev, published_rev_ + 1));
  published_rev_ = rev;
}

namespace {
constexpr size_t kKeptMatchesCapacity = 4096;
}  // namespace

void WatchHub::Publish(int64_t rev, const std::vector<mvccpb::Event>& events) {
  ReadyList ready;
  {
    std::lock_guard<std::mutex> lock(mu_);
    // The apply thread may commit a revision, then find the hub built in
    // the meantime (already counting that revision) and publish it.
    if (rev <= published_rev_) return;
    if (rev > published_rev_ + 1) {
      // Revisions nobody handed us (a restored snapshot): every synced
      // watcher reads them from storage, as etcd's Restore.
      CAIRN_LOG(kWarn) << "watch: revisions " << published_rev_ + 1 << ".." << rev - 1
                       << " were not published; synced watchers catch up from storage";
      std::vector<Watcher*> synced;
      synced_.ForEach([&](Watcher* w) { synced.push_back(w); });
      for (Watcher* w : synced) MakeUnsynced(w, std::max(w->next_rev, published_rev_ + 1));
    }
    published_rev_ = rev;
    if (synced_.empty()) return;
    // Collect the matches first: delivering may move a watcher out of
    // synced_ while ForEachMatch walks it.
    matches_.clear();
    for (size_t i = 0; i < events.size(); i++) {
      const mvccpb::Event& ev = events[i];
      CHECK(ev.kv().mod_revision() == rev)
          << "event of revision " << ev.kv().mod_revision() << " published as " << rev;
      synced_.ForEachMatch(ev.kv().key(), [&](Watcher* w) {
        if (w->next_rev > rev) return;  // starts at a later revision
        matches_.emplace_back(w, static_cast<uint32_t>(i));
      });
    }
    if (matches_.empty()) return;
    // Encoded once for every watcher (the point of EventBlock).
    const EventBlockRef block = EventBlock::Encode(events);
    if (events.size() > 1) {
      // Group per watcher, in hub id order so that delivery is
      // deterministic, keeping each watcher's events in order.
      std::stable_sort(matches_.begin(), matches_.end(), [](const auto& a, const auto& b) {
        return a.first->hub_id < b.first->hub_id;
      });
    }
    for (size_t i = 0; i < matches_.size();) {
      size_t j = i + 1;
      while (j < matches_.size() && matches_[j].first == matches_[i].first) j++;
      StageLive(block, std::span(matches_).subspan(i, j - i));
      i = j;
    }
    // A fan-out to many watchers would keep 16 bytes per watcher between
    // revisions (1.6 MB for 100,000); a small one keeps its room.
    if (matches_.capacity() > kKeptMatchesCapacity) {
      std::vector<std::pair<Watcher*, uint32_t>>().swap(matches_);
    } else {
      matches_.clear();
    }
    PushStaged(rev, &ready);
  }
  ready.Run();
}

void WatchHub::StageLive(const EventBlockRef& block,
                         std::span<const std::pair<Watcher*, uint32_t>> matches) {
  Watcher* w = matches.front().first;
  EventSelection selected(block, w->prev_kv);
  for (const auto& [unused, i] : matches) {
    if (w->Accepts(block->is_put(i))) selected.Add(i);
  }
  if (selected.empty()) return;  // all filtered out: etcd sends nothing
  WatchStream* s = w->stream;
  if (s->staged_.empty()) staged_streams_.push_back(s);
  auto& selections = s->staged_selections_;
  if (selections.empty() || !selections.back().SameAs(selected)) selections.push_back(std::move(selected));
  s->staged_.emplace_back(w, static_cast<uint32_t>(selections.size() - 1));
}

namespace {
constexpr size_t kKeptStagedCapacity = 16;
}  // namespace

void WatchHub::PushStaged(int64_t rev, ReadyList* ready) {
  for (WatchStream* s : staged_streams_) {
    bool notify = false;
    {
      std::lock_guard<std::mutex> lock(s->queue_mu_);
      const auto& staged = s->staged_;
      auto& selections = s->staged_selections_;
      for (size_t i = 0; i < staged.size();) {
        // A group of watchers behind on this stream takes the revision as
        // one merge, as each of them would merge it into its own response.
        if (const size_t n = s->TryMergeIntoGroupLocked(staged, selections, i, rev); n > 0) {
          for (size_t k = i; k < i + n; k++) staged[k].first->events_since_progress = true;
          i += n;
          continue;
        }
        const auto [w, index] = staged[i++];
        // The selection's last user takes it; the others a copy.
        const bool last_use = i == staged.size() || staged[i].second != index;
        EventSelection selected = last_use ? std::move(selections[index]) : selections[index];
        if (s->TryPushLiveLocked(w, rev, std::move(selected), &notify)) {
          w->events_since_progress = true;
        } else {
          push_failed_.push_back(w);
        }
      }
    }
    // A stream of many watchers would keep room for all of them between
    // revisions; a small one keeps its room.
    if (s->staged_.capacity() > kKeptStagedCapacity) {
      WatchStream::Staged().swap(s->staged_);
    } else {
      s->staged_.clear();
    }
    if (s->staged_selections_.capacity() > kKeptStagedCapacity) {
      std::vector<EventSelection>().swap(s->staged_selections_);
    } else {
      s->staged_selections_.clear();
    }
    if (notify) ready->Add(s);
  }
  staged_streams_.clear();
  // Slow consumers: forget this revision and fetch it from storage later.
  for (Watcher* w : push_failed_) MakeUnsynced(w, rev);
  push_failed_.clear();
}

// ------------------------------------------------------------ catch-up

size_t WatchHub::SyncUnsynced(size_t max_events) {
  CHECK(max_events > 0) << "SyncUnsynced needs room for at least one event";
  std::lock_guard<std::mutex> sync_lock(sync_mu_);
  ReadyList ready;
  size_t work = 0;
  std::vector<WatcherRef> chosen;
  int64_t target = 0;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (unsynced_.empty()) return 0;
    target = published_rev_;
    const int64_t compact_rev = store_->CompactRevision();
    // Round robin from the cursor so that no watcher starves. Candidates
    // are collected first: handling them changes unsynced_.
    std::vector<Watcher*> candidates;
    const size_t limit = std::min(options_.max_watchers_per_sync, unsynced_.size());
    auto it = unsynced_.upper_bound(sync_cursor_);
    while (candidates.size() < limit) {
      if (it == unsynced_.end()) it = unsynced_.begin();
      candidates.push_back(it->second);
      ++it;
    }
    sync_cursor_ = candidates.back()->hub_id;
    for (Watcher* w : candidates) {
      if (w->next_rev < compact_rev) {
        SendCompacted(w, compact_rev, &ready);
        work++;
      } else if (w->next_rev > target) {
        MakeSynced(w, &ready);  // nothing of the history left to read
        work++;
      } else if (w->stream->HasRoomForEvents()) {
        chosen.push_back(w->stream->watchers_.Ref(w));
      }
      // else: its consumer is stalled; reading for it now would be wasted.
    }
  }
  if (!chosen.empty()) work += CatchUp(chosen, target, max_events, &ready);
  ready.Run();
  return work;
}

size_t WatchHub::CatchUp(const std::vector<WatcherRef>& chosen, int64_t target,
                         size_t max_events, ReadyList* ready) {
  // Step 2 of the sync protocol: no hub lock held. The watchers' next_rev
  // cannot change meanwhile: only SyncUnsynced moves unsynced watchers and
  // sync_mu_ serialises it; a concurrent cancel only marks them removed.
  std::unique_ptr<mvcc::ReadTxn> txn = store_->Read();
  CHECK(txn->Rev() >= target) << "storage at " << txn->Rev() << " behind published " << target;
  const int64_t compact_rev = txn->FirstRev();
  int64_t from = std::numeric_limits<int64_t>::max();
  bool with_prev_kv = false;
  for (const auto& w : chosen) {
    if (w->next_rev < compact_rev) continue;
    from = std::min(from, w->next_rev);
    with_prev_kv = with_prev_kv || w->prev_kv;
  }
  EventBlockRef block;
  int64_t batch_next = from;  // first revision not covered by `block`
  if (from <= target) {
    auto read = txn->Events(from, target, max_events, with_prev_kv, &batch_next);
    if (!read.ok()) {
      CAIRN_LOG(kError) << "watch: reading revisions " << from << ".." << target
                        << " for catch-up failed: " << read.status().ToString();
      return 0;
    }
    CHECK(batch_next > from) << "catch-up read made no progress at " << from;
    // Encoded once for every chosen watcher.
    block = EventBlock::Encode(read.value());
  }
  txn.reset();
  if (block == nullptr) block = EventBlock::Encode({});

  // Step 3: back under the lock.
  size_t work = 0;
  std::lock_guard<std::mutex> lock(mu_);
  for (const auto& w : chosen) {
    if (w->state == Watcher::State::kRemoved) continue;
    CHECK(w->state == Watcher::State::kUnsynced) << "chosen watcher " << w->hub_id << " synced";
    if (w->next_rev < compact_rev) {
      SendCompacted(w.get(), compact_rev, ready);
      work++;
      continue;
    }
    if (w->next_rev >= batch_next) continue;  // the capped batch ended before it
    work += DeliverCatchUp(w.get(), block, batch_next, ready);
    if (w->next_rev > published_rev_) MakeSynced(w.get(), ready);
  }
  return work;
}

// Queues the watcher's events of revisions [w->next_rev, batch_next) in one
// response, as many whole revisions as its stream's byte budget allows, and
// advances next_rev past them. Returns events queued, or 1 when it only
// advanced.
size_t WatchHub::DeliverCatchUp(Watcher* w, const EventBlockRef& block,
                                int64_t batch_next, ReadyList* ready) {
  bool always_one = false;
  const size_t budget = w->stream->EventBytesAvailable(&always_one);
  size_t used = kResponseOverheadBytes;
  int64_t delivered_to = batch_next;  // first revision not delivered
  EventSelection selected(block, w->prev_kv);
  const EventBlock& b = *block;
  // The first event of revision next_rev (revisions ascend in the block).
  size_t lo = 0;
  size_t hi = b.size();
  while (lo < hi) {
    const size_t mid = (lo + hi) / 2;
    if (b.revision(mid) < w->next_rev) {
      lo = mid + 1;
    } else {
      hi = mid;
    }
  }
  for (size_t i = lo; i < b.size();) {
    const int64_t rev = b.revision(i);
    const size_t before = selected.count();
    size_t group_bytes = 0;
    for (; i < b.size() && b.revision(i) == rev; ++i) {
      if (!w->Contains(b.key(i)) || !w->Accepts(b.is_put(i))) continue;
      selected.Add(static_cast<uint32_t>(i));
      group_bytes += b.wire_size(i, w->prev_kv);
    }
    if (group_bytes == 0) continue;  // nothing of this revision for the watcher
    const bool first_group = before == 0;
    if (used + group_bytes > budget && !(first_group && always_one)) {
      selected.Truncate(before);
      delivered_to = rev;
      break;
    }
    used += group_bytes;
  }
  if (selected.empty()) {
    if (delivered_to == w->next_rev) return 0;  // not even one revision fits now
    w->next_rev = delivered_to;
    return 1;
  }
  const size_t n = selected.count();
  // The header says how far the watcher is complete (etcd says the store's
  // current revision, which for a capped batch overstates it).
  QueuedResponse r = NewResponse(w->watch_id, delivered_to - 1);
  r.events.Append(std::move(selected));
  bool notify = false;
  if (!w->stream->TryPushEvent(std::move(r), w->fragment, &w->queued_seq, &notify)) {
    return 0;  // retry later
  }
  w->events_since_progress = true;
  if (notify) ready->Add(w->stream);
  w->next_rev = delivered_to;
  return n;
}

// ------------------------------------------------------------ progress

void WatchHub::NotifyProgress() {
  ReadyList ready;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto& [id, w] : progress_watchers_) {
      if (w->state == Watcher::State::kSynced && !w->events_since_progress) {
        bool notify = false;
        // Skipped when the stream is full: it is busy with events anyway.
        if (w->stream->TryPushEvent(NewResponse(w->watch_id, published_rev_), false, nullptr,
                                    &notify) &&
            notify) {
          ready.Add(w->stream);
        }
      }
      w->events_since_progress = false;
    }
  }
  ready.Run();
}

}  // namespace cairn::watch
