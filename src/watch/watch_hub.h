// WatchHub: etcd's watchable store (mvcc/watchable_store.go) on top of
// mvcc::KvStore, and WatchStream, the per-gRPC-stream handle the API layer
// reads responses from.
//
// Every watcher is either
//   synced:   it has been given (queued on its stream) every accepted event of
//             every revision <= published_revision(); Publish hands it the
//             next revision directly from memory; or
//   unsynced: it has been given exactly the events of revisions < next_rev
//             (<= published_revision()) and SyncUnsynced replays the rest
//             from storage (ReadTxn::Events) until it is level with the hub.
// A watcher leaves "synced" when its stream's output queue is full (the
// consumer is slow) or when it is created with a start revision that is not
// in the future; it never drops or buffers events beyond the bounded queue:
// it falls behind and catches up from storage later.
//
// Sync protocol (why there is no gap and no duplicate). The hub keeps
// published_revision_, the last revision handed to Publish, and changes it
// only under mu_, together with delivering that revision to the synced
// watchers. SyncUnsynced works in three steps:
//   1. under mu_: pick unsynced watchers and target = published_revision_;
//   2. without locks: read [min next_rev, target] (capped) from a storage
//      snapshot taken after step 1, so the snapshot holds every revision
//      <= target (Publish runs only after KvStore::Commit);
//   3. under mu_: queue each watcher's events in [next_rev, batch end],
//      advance next_rev past the batch, and if now next_rev >
//      published_revision_ (which may have moved on during step 2) move it to
//      synced. A revision published during step 2 was not given to the
//      still-unsynced watcher, and next_rev <= that revision keeps it
//      unsynced, so the next round reads it from storage.
// The move to synced happens under the same lock as Publish, so the first
// revision Publish gives a newly synced watcher is exactly next_rev.
//
// Compaction: a watcher that needs a revision < the store's compacted
// revision C (at creation, or while unsynced) gets etcd's compacted response
// (watch_id, compact_revision, canceled=true) and is removed. As etcd 3.4
// (watcherGroup.chooseAll: minRev < compactRev), a watch from C itself is
// served: compaction keeps the puts of revision C in the change log (their
// versions survive it) and drops its deletes, so it gets the part of
// revision C that etcd can still send. Catch-up checks against the compacted revision of the very
// snapshot it reads, which is sound as long as the applier calls
// KvStore::SetCompactRevisionAfterCommit before CompactPhysical.
//
// Thread safety: WatchHub and WatchStream are thread-safe. Publish must be
// called by one thread (the apply thread) in revision order. The hub creates
// no thread: the server drives SyncUnsynced and NotifyProgress. Callbacks
// (on_ready, the header filler) are never invoked with a hub lock held.
//
// Ownership: the hub must outlive every stream it created (destroy the gRPC
// server, whose reactors hold the streams, before the hub).
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <span>
#include <vector>

#include "absl/container/btree_map.h"
#include "common/ring_queue.h"
#include "common/status.h"
#include "etcdserverpb/rpc.pb.h"
#include "mvcc/kv_store.h"
#include "mvccpb/kv.pb.h"
#include "watch/event_block.h"
#include "watch/watcher.h"

namespace cairn::watch {

// etcd's clientv3.InvalidWatchID: the watch_id of a refused create and of a
// stream-wide progress response.
inline constexpr int64_t kInvalidWatchId = -1;

struct WatchHubOptions {
  // Event responses (including periodic progress notifications) queued on one
  // stream before its synced watchers fall back to catching up from storage.
  // Default: 128 (etcd's chanBufLen).
  size_t max_pending_responses = 128;
  // Bytes of queued event responses per stream. A single response larger
  // than this is still queued when the stream has nothing else pending, so a
  // huge revision cannot stall a watcher forever. Default: 8 MiB.
  size_t max_pending_bytes = 8 << 20;
  // Control responses (created, canceled, progress) queued per stream before
  // WatchStream::CanAcceptRequest() asks the reader to stop reading requests.
  // Default: 16 (etcd's ctrlStreamBufLen).
  size_t max_control_responses = 16;
  // Responses of watchers that asked for `fragment` are split into fragments
  // below this size (etcd: --max-request-bytes plus 512 KiB of gRPC
  // overhead). Default: 1.5 MiB + 512 KiB.
  size_t max_request_bytes = (3 << 19) + (512 << 10);
  // A watcher's later events are appended to its previous response while
  // that one is still queued and smaller than this (see
  // WatchStream::TryPushEvent). 0: never merge (one response per watcher and
  // revision until the queue is full). Default: 64 KiB.
  size_t max_merged_response_bytes = 64 << 10;
  // Unsynced watchers looked at per SyncUnsynced call. Default: 512 (etcd's
  // maxWatchersPerSync).
  size_t max_watchers_per_sync = 512;

  Status Validate() const;
};

class WatchHub;

// A response waiting in a stream's queue. The header's other fields are
// filled when it is sent; events are references into shared EventBlocks.
// 72 bytes: a stream of many watchers queues one per watcher and revision
// while its client reads (in a RingQueue, which frees its array once the
// client has read everything).
struct QueuedResponse {
  int64_t watch_id = 0;
  int64_t revision = 0;  // the header's revision
  EventList events;

  int64_t compact_revision() const { return rare ? rare->compact_revision : 0; }
  const std::string& cancel_reason() const;
  void set_compact_revision(int64_t rev) { Rare()->compact_revision = rev; }
  void set_cancel_reason(std::string reason) { Rare()->cancel_reason = std::move(reason); }

  // A group: the same events for several watchers of the stream (the live
  // fan-out of one revision to watchers of one key or range queues one
  // entry, not one per watcher). The response goes out once per watch id:
  // watch_id first, then each of these in order (watch_id takes each in
  // turn as the previous one is sent).
  bool grouped() const { return rare != nullptr && !rare->group.empty(); }
  void AddToGroup(int64_t id) { Rare()->group.push_back(id); }
  // Moves watch_id to the next id of the group; false when none is left.
  bool NextInGroup() {
    if (!grouped() || rare->group_next == rare->group.size()) return false;
    watch_id = rare->group[rare->group_next++];
    next_event = 0;
    return true;
  }

  // The fields only a compacted or refused watch's response carries, or a
  // group's.
  struct RareFields {
    int64_t compact_revision = 0;
    std::string cancel_reason;
    std::vector<int64_t> group;
    size_t group_next = 0;
  };
  std::unique_ptr<RareFields> rare;

  // The stream's own, set when queued.
  uint32_t next_event = 0;  // fragmentation cursor
  bool created = false;
  bool canceled = false;
  bool is_event = false;    // counts against the event budget (else control)
  bool fragment = false;    // may be split by Next()

 private:
  RareFields* Rare() {
    if (rare == nullptr) rare = std::make_unique<RareFields>();
    return rare.get();
  }
};

// The watches of one client stream and their ordered output queue.
//
// Responses come out of Next() in the order they were produced: a watch's
// created response before its events, its events in revision order, its
// canceled response last, a progress response after every event it covers.
//
// Thread safety: all methods may be called from any thread. on_ready is
// invoked after a response was queued on a stream whose reader last found it
// empty (Next() returned false): from Publish / SyncUnsynced /
// NotifyProgress, or synchronously from Create / Cancel / RequestProgress on
// the caller's thread, never with a hub lock held and never after Close()
// returned. on_ready may call Next() but not Close(); Close() must not be
// called while holding a lock on_ready takes.
class WatchStream : public std::enable_shared_from_this<WatchStream> {
 public:
  WatchStream(const WatchStream&) = delete;
  WatchStream& operator=(const WatchStream&) = delete;
  ~WatchStream();  // Close()s

  // Creates a watch as etcd's v3rpc does: an empty key means "\0", range_end
  // "\0" means every key >= key, start_revision 0 means "from the next
  // revision", watch_id 0 means "pick the lowest free id". Queues the created
  // response (created=true; on error also canceled=true, watch_id -1 and
  // cancel_reason "mvcc: watcher range is empty" or "mvcc: duplicate watch ID
  // provided on the WatchStream"). Returns the watch id or kInvalidWatchId.
  int64_t Create(const etcdserverpb::WatchCreateRequest& request);
  // Answers a create request the server refused (auth): created and
  // canceled, watch_id -1, `reason` as the cancel reason; no watch is made.
  void Refuse(const etcdserverpb::WatchCreateRequest& request, const std::string& reason);

  // Cancels a watch and queues its canceled response. Returns false (and
  // queues nothing, as etcd) when the stream has no such watch.
  bool Cancel(int64_t watch_id);

  // Queues one progress response (watch_id -1, header revision = the
  // published revision) as soon as every watch of the stream is synced: now,
  // or when the last unsynced one catches up. Requests made while one is
  // pending are merged into it (as etcd 3.5; 3.4 answered at once, which
  // could report a revision the stream's unsynced watchers had not reached).
  void RequestProgress();

  // Pops the next response (or the next fragment of it) into `out`,
  // serialized as an etcdserverpb.WatchResponse, header filled by the hub's
  // header filler and the response's revision. Non-blocking: returns false
  // when nothing is queued.
  // What NextEncoded tells its writer besides the bytes.
  struct NextInfo {
    size_t queued = 0;    // responses still queued behind this one
    bool merged = false;  // it carries events of several revisions
  };
  bool NextEncoded(std::string* out, NextInfo* info = nullptr);
  // True if the response Next() would return is an event response (not a
  // created, canceled or progress one).
  bool FrontIsEvent() const;
  // The same, parsed (for tests and tools; the server sends NextEncoded's
  // bytes as they are).
  bool Next(etcdserverpb::WatchResponse* out);

  // False while max_control_responses control responses are queued: the
  // reader should stop taking requests until Next() has drained some. This
  // bounds the control queue by the client's own pace.
  bool CanAcceptRequest() const;

  // Removes every watch, drops queued responses, and stops on_ready; waits
  // for an on_ready call in progress. Idempotent.
  void Close();

  size_t WatcherCount() const;

 private:
  friend class WatchHub;

  WatchStream(WatchHub* hub, std::function<void()> on_ready);

  // Queue side; REQUIRES: hub mu_ held (lock order: hub mu_, then queue_mu_).
  // Each returns in *notify whether on_ready must be invoked afterwards.
  //
  // TryPushEvent queues an event response, or returns false when the
  // stream's budget is spent (the watcher must then catch up from storage).
  // With `merge_seq` (the watcher's Watcher::queued_seq) it first tries to
  // append the events to the watcher's previous response if that one is
  // still queued, unsent, behind no control response and small: a backed-up
  // stream then sends one response per watcher carrying several revisions
  // (as etcd does for watchers that fell behind) instead of one gRPC write
  // per watcher and revision. *merge_seq is updated either way.
  bool TryPushEvent(QueuedResponse response, bool fragment, uint64_t* merge_seq, bool* notify);
  // The same; REQUIRES: queue_mu_ held (Publish pushes every response of a
  // revision for one stream under one lock).
  bool TryPushEventLocked(QueuedResponse response, bool fragment, uint64_t* merge_seq,
                          bool* notify);
  // Publish's path: the events `selected` of revision `revision` for `w`,
  // as TryPushEventLocked(response of them, w->fragment, &w->queued_seq),
  // without building a response when they are merged into a queued one or
  // are the same as the last queued response's (w joins its group).
  bool TryPushLiveLocked(Watcher* w, int64_t revision, EventSelection&& selected, bool* notify);
  // Publish's staging of one stream (see staged_).
  using Staged = std::vector<std::pair<Watcher*, uint32_t>>;
  // Publish's path for a group: when staged[i] is the first member of the
  // group holding its watcher's last queued response, nothing of that group
  // was sent yet, and the next members of staged (from i) are the group's
  // other members in order with the same events (the same selection index:
  // StageLive shares one selection among consecutive equal ones), merges those events into
  // the group once and returns the number of staged entries so handled (the
  // group's size); else 0 and nothing changes. REQUIRES: queue_mu_ held.
  size_t TryMergeIntoGroupLocked(const Staged& staged, const std::vector<EventSelection>& selections, size_t i,
                                 int64_t revision);
  // Whether the event budget takes one more response of `bytes` (budget
  // bytes). REQUIRES: queue_mu_ held.
  bool EventRoomLocked(size_t bytes) const;
  // TryPushLiveLocked's new entry (no merge, no group).
  bool PushLiveLocked(Watcher* w, int64_t revision, EventSelection&& selected, bool* notify);
  // The queued response of `watch_id` that `add` more bytes of events may be
  // merged into (see TryPushEvent), or null. REQUIRES: queue_mu_ held.
  QueuedResponse* MergeTargetLocked(const uint64_t* merge_seq, int64_t watch_id, size_t add);
  template <typename Events>
  bool MergeLocked(QueuedResponse* prev, Events&& events, int64_t revision, size_t add);
  void PushControl(QueuedResponse response, bool* notify);
  bool HasRoomForEvents() const;
  // Bytes an event response may take now. *empty tells whether no event
  // response is queued (then one response of any size is accepted).
  size_t EventBytesAvailable(bool* empty) const;
  void CloseQueue();
  void NotifyReady();
  // The events of `p` the next fragment carries (from p->next_event on).
  size_t FragmentEvents(const QueuedResponse& p) const;

  WatchHub* const hub_;

  // Guarded by the hub's mu_. The stream owns its watchers (counted so that
  // SyncUnsynced may keep one alive while it reads storage unlocked).
  WatcherList watchers_;
  // Publish's scratch: this stream's responses of the revision being
  // published, pushed together (see WatchHub::Publish): (watcher, index in
  // staged_selections_). Watchers staged one after another with the same
  // events (one prefix's watchers) share one selection: 16 bytes per watcher
  // staged, not 80.
  Staged staged_;
  std::vector<EventSelection> staged_selections_;
  int64_t next_watch_id_ = 0;
  size_t unsynced_count_ = 0;
  bool progress_deferred_ = false;
  bool closed_ = false;

  mutable std::mutex queue_mu_;
  RingQueue<QueuedResponse> queue_;          // GUARDED_BY(queue_mu_)
  // Sequence numbers: queue_[i] was pushed as number popped_ + i.
  uint64_t pushed_ = 0;               // GUARDED_BY(queue_mu_)
  uint64_t popped_ = 0;               // GUARDED_BY(queue_mu_)
  // Responses pushed before this number never get events merged into them:
  // a control or progress response was queued after them, and events must
  // not overtake it.
  uint64_t merge_floor_ = 0;          // GUARDED_BY(queue_mu_)
  size_t event_responses_ = 0;        // GUARDED_BY(queue_mu_)
  size_t event_bytes_ = 0;            // GUARDED_BY(queue_mu_)
  size_t control_responses_ = 0;      // GUARDED_BY(queue_mu_)
  bool want_notify_ = true;           // GUARDED_BY(queue_mu_)
  bool queue_closed_ = false;         // GUARDED_BY(queue_mu_)

  std::mutex callback_mu_;            // held while on_ready runs
  std::function<void()> on_ready_;    // GUARDED_BY(callback_mu_)
};

class WatchHub {
 public:
  // Fills the fields of a response header other than the revision (cluster
  // id, member id, raft term). Called from the thread calling
  // WatchStream::Next, without hub locks; must be thread-safe.
  using HeaderFiller = std::function<void(etcdserverpb::ResponseHeader*)>;

  // REQUIRES: store is open; from now on Publish is called for every
  // committed revision (the hub starts at store->CurrentRevision()).
  // `store` must outlive the hub.
  WatchHub(const mvcc::KvStore* store, WatchHubOptions options, HeaderFiller header_filler);
  ~WatchHub();  // REQUIRES: every stream was destroyed
  WatchHub(const WatchHub&) = delete;
  WatchHub& operator=(const WatchHub&) = delete;

  // A stream for one client connection; see WatchStream for on_ready.
  std::shared_ptr<WatchStream> NewStream(std::function<void()> on_ready);

  // Delivers the events of revision `rev` (all with mod_revision == rev, in
  // sub-revision order, prev_kv filled) to the synced watchers. Call right
  // after KvStore::Commit made `rev` current, from the apply thread only.
  // Never blocks on a consumer: a watcher whose stream is full becomes
  // unsynced instead. Revisions <= published_revision() are ignored (they
  // were committed before the hub was built, which read the store's current
  // revision); a jump over unpublished revisions (the hub was built late, a
  // restored snapshot) sends every synced watcher to storage for them.
  void Publish(int64_t rev, const std::vector<mvccpb::Event>& events);

  // The store jumped to revision `rev` without Publish (a snapshot from the
  // leader replaced it): every synced watcher reads the revisions it has not
  // seen from storage, in order, as after a Publish that skips revisions.
  // From the apply side (no Publish concurrently).
  void Restored(int64_t rev);

  // Catch-up work: reads at most `max_events` events (whole revisions) from
  // storage for up to max_watchers_per_sync unsynced watchers whose streams
  // have room, queues them, moves watchers that caught up to synced and
  // cancels compacted ones. Returns the work done (events queued plus
  // watchers advanced, synced or canceled); 0 means nothing could be done
  // now. The server calls it in a loop from one thread, sleeping briefly
  // (etcd: up to 100 ms) when it returns 0. Memory per call is bounded by
  // max_events events.
  size_t SyncUnsynced(size_t max_events);

  // The periodic progress notification (etcd's --watch-progress-notify-
  // interval, default 10 min): every synced watcher that asked for
  // progress_notify and got no event response since the previous call gets
  // an empty response with the published revision (skipped if its stream is
  // full: it is busy receiving anyway). Called by the server's timer.
  void NotifyProgress();

  int64_t published_revision() const;
  size_t WatcherCount() const;
  size_t SlowWatcherCount() const;  // unsynced watchers
  size_t StreamCount() const;

  const WatchHubOptions& options() const { return options_; }

 private:
  friend class WatchStream;
  class ReadyList;

  // WatchStream's operations, under mu_.
  // `refused` non-empty: answer the request as refused with that reason.
  int64_t CreateWatch(WatchStream* s, const etcdserverpb::WatchCreateRequest& request,
                      const std::string& refused);
  bool CancelWatch(WatchStream* s, int64_t watch_id);
  void RequestProgress(WatchStream* s);
  void CloseStream(WatchStream* s);

  // REQUIRES: mu_ held.
  void AddWatcher(WatcherRef w, int64_t start, ReadyList* ready);
  void MakeUnsynced(Watcher* w, int64_t next_rev);
  void MakeSynced(Watcher* w, ReadyList* ready);
  void RemoveWatcher(Watcher* w, ReadyList* ready);
  void SendCompacted(Watcher* w, int64_t compact_rev, ReadyList* ready);
  void SendStreamProgress(WatchStream* s, ReadyList* ready);
  // `matches`: one watcher's (watcher, event index) matches, in order.
  // Stages its events on its stream (WatchStream::staged_).
  void StageLive(const EventBlockRef& block,
                 std::span<const std::pair<Watcher*, uint32_t>> matches);
  // Pushes the staged responses of every stream in staged_streams_, one
  // queue lock per stream; a watcher whose stream is full becomes unsynced.
  void PushStaged(int64_t rev, ReadyList* ready);
  // Steps 2 and 3 of the sync protocol; REQUIRES: sync_mu_ held, mu_ not held.
  size_t CatchUp(const std::vector<WatcherRef>& chosen, int64_t target,
                 size_t max_events, ReadyList* ready);
  size_t DeliverCatchUp(Watcher* w, const EventBlockRef& block,
                        int64_t batch_next, ReadyList* ready);
  static QueuedResponse NewResponse(int64_t watch_id, int64_t header_rev);

  const mvcc::KvStore* const store_;
  const HeaderFiller header_filler_;
  const WatchHubOptions options_;

  std::mutex sync_mu_;  // serialises SyncUnsynced; taken before mu_
  mutable std::mutex mu_;
  int64_t published_rev_;                                   // GUARDED_BY(mu_)
  uint64_t next_hub_id_ = 1;                                // GUARDED_BY(mu_)
  size_t watchers_ = 0;  // owned by their streams              GUARDED_BY(mu_)
  WatcherIndex synced_;                                     // GUARDED_BY(mu_)
  absl::btree_map<uint64_t, Watcher*> unsynced_;            // GUARDED_BY(mu_)
  absl::btree_map<uint64_t, Watcher*> progress_watchers_;   // GUARDED_BY(mu_)
  uint64_t sync_cursor_ = 0;  // round robin over unsynced_  GUARDED_BY(mu_)
  // Publish's scratch: (watcher, event index) matches of one revision.
  std::vector<std::pair<Watcher*, uint32_t>> matches_;      // GUARDED_BY(mu_)
  // Publish's scratch: the streams with staged responses, in first-staged order.
  std::vector<WatchStream*> staged_streams_;                // GUARDED_BY(mu_)
  std::vector<Watcher*> push_failed_;                       // GUARDED_BY(mu_)
  size_t streams_ = 0;                                      // GUARDED_BY(mu_)
};

}  // namespace cairn::watch
