// EventBlock and EventSelection: watch events serialized once and shared by
// every response that carries them.
//
// A revision watched by 1,000 watchers used to be copied 1,000 times as
// protobuf messages (a KeyValue with two strings per copy) and serialized
// 1,000 times by gRPC; malloc and free were half of the server's CPU in the
// fan-out benchmark. Now the apply thread (live events) or the catch-up
// reader (events from storage) encodes each event once, in the exact wire
// form of a WatchResponse `events` field (tag, length, Event), with and
// without prev_kv; a queued response holds a reference to the block and the
// runs of event indexes it carries, and the writer copies those bytes into
// the response it sends.
//
// Thread safety: an EventBlock is immutable once built and shared as
// shared_ptr<const EventBlock>; EventSelection is a value type.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <boost/smart_ptr/intrusive_ptr.hpp>
#include <boost/smart_ptr/intrusive_ref_counter.hpp>

#include "mvccpb/kv.pb.h"

namespace cairn::watch {

class EventBlock;
// A reference to a shared block: one pointer (a shared_ptr is two), since
// every queued response holds one.
using EventBlockRef = boost::intrusive_ptr<const EventBlock>;

class EventBlock : public boost::intrusive_ref_counter<EventBlock, boost::thread_safe_counter> {
 public:
  // Encodes `events` (in revision order). The prev_kv form is kept only when
  // some event has a prev_kv; otherwise both forms are the same bytes.
  static EventBlockRef Encode(const std::vector<mvccpb::Event>& events);

  size_t size() const { return meta_.size(); }
  int64_t revision(size_t i) const { return meta_[i].revision; }
  bool is_put(size_t i) const { return meta_[i].put; }
  std::string_view key(size_t i) const {
    return std::string_view(keys_).substr(meta_[i].key_offset, meta_[i].key_size);
  }
  // Wire bytes of event i (field tag, length and Event), with prev_kv when
  // `prev_kv` and the event has one.
  size_t wire_size(size_t i, bool prev_kv) const {
    const auto& off = offsets(prev_kv);
    return off[i + 1] - off[i];
  }
  // The wire bytes of events [begin, end), contiguous.
  std::string_view wire(size_t begin, size_t end, bool prev_kv) const {
    const auto& off = offsets(prev_kv);
    return std::string_view(bytes(prev_kv)).substr(off[begin], off[end] - off[begin]);
  }

 private:
  struct Meta {
    int64_t revision;
    uint32_t key_offset;
    uint32_t key_size;
    bool put;
  };
  const std::vector<size_t>& offsets(bool prev_kv) const {
    return prev_kv && has_prev_ ? offsets_prev_ : offsets_;
  }
  const std::string& bytes(bool prev_kv) const { return prev_kv && has_prev_ ? wire_prev_ : wire_; }

  std::vector<Meta> meta_;
  std::string keys_;
  std::string wire_;                // without prev_kv
  std::vector<size_t> offsets_;     // size() + 1 offsets into wire_
  bool has_prev_ = false;
  std::string wire_prev_;           // with prev_kv, when has_prev_
  std::vector<size_t> offsets_prev_;
};

// The events of one block one response carries: runs of indexes, in order.
// Most responses carry one run (a whole revision, or a watcher's share of a
// catch-up batch), which lives inline.
class EventSelection {
 public:
  EventSelection() = default;
  EventSelection(EventBlockRef block, bool prev_kv)
      : block_(std::move(block)), prev_kv_(prev_kv) {}

  // Appends event i of the block; i must be greater than the last one added.
  void Add(uint32_t i);
  // Drops the events added after the first `count`.
  void Truncate(size_t count);

  size_t count() const { return count_; }
  bool empty() const { return count_ == 0; }
  // Wire bytes of the selected events.
  size_t bytes() const { return bytes_; }
  const EventBlock* block() const { return block_.get(); }
  const EventBlockRef& block_ref() const { return block_; }
  // Whether the selected events are one run of consecutive events.
  bool single_run() const { return more_.empty(); }
  // Gives the block reference away (the selection is then to be dropped).
  EventBlockRef release_block() { return std::move(block_); }
  bool prev_kv() const { return prev_kv_; }
  // Whether `o` selects the same events of the same block, with the same
  // prev_kv.
  bool SameAs(const EventSelection& o) const {
    if (block_.get() != o.block_.get() || prev_kv_ != o.prev_kv_ || count_ != o.count_ ||
        more_.size() != o.more_.size() || first_.begin != o.first_.begin || first_.end != o.first_.end) {
      return false;
    }
    for (size_t i = 0; i < more_.size(); i++) {
      if (more_[i].begin != o.more_[i].begin || more_[i].end != o.more_[i].end) return false;
    }
    return true;
  }

  // Calls fn(begin, end) for each run of events [begin, end) of the block,
  // skipping the first `skip` selected events and stopping after `take`.
  template <typename Fn>
  void ForEachRun(size_t skip, size_t take, Fn&& fn) const {
    auto visit = [&](Run r) {
      if (take == 0) return;
      const uint32_t n = r.end - r.begin;
      if (skip >= n) {
        skip -= n;
        return;
      }
      r.begin += static_cast<uint32_t>(skip);
      skip = 0;
      if (r.end - r.begin > take) r.end = r.begin + static_cast<uint32_t>(take);
      take -= r.end - r.begin;
      fn(r.begin, r.end);
    };
    if (count_ == 0) return;
    visit(first_);
    for (const Run& r : more_) visit(r);
  }

 private:
  struct Run {
    uint32_t begin = 0;
    uint32_t end = 0;
  };
  EventBlockRef block_;
  bool prev_kv_ = false;
  Run first_;
  std::vector<Run> more_;
  size_t count_ = 0;
  size_t bytes_ = 0;
};

// The events one queued response carries: runs of consecutive events of
// blocks, in order. A response usually holds one run (a revision, or a
// watcher's share of a catch-up batch), which lives inline; a watcher whose
// stream is backed up gets later revisions appended to its queued response
// (see WatchStream::TryPushEvent) and then holds one run per revision. A run
// is 16 bytes: under load the apply thread appends one per watcher and
// revision, so its size is memory traffic; and every queued response holds
// an EventList (40 bytes), so its size is memory per watcher. Every part of
// one list has the same prev_kv (they are one watcher's).
class EventList {
 public:
  void Append(const EventSelection& part) {
    if (part.empty()) return;
    part.ForEachRun(0, part.count(), [&](uint32_t begin, uint32_t end) {
      AddRun(Run{part.block_ref(), begin, end}, part.prev_kv());
    });
  }
  void Append(EventSelection&& part) {
    if (part.empty()) return;
    if (!part.single_run()) {
      Append(static_cast<const EventSelection&>(part));
      return;
    }
    uint32_t begin = 0, end = 0;
    part.ForEachRun(0, part.count(), [&](uint32_t b, uint32_t e) { begin = b, end = e; });
    const bool prev_kv = part.prev_kv();
    AddRun(Run{part.release_block(), begin, end}, prev_kv);
  }
  void Append(EventList&& other) {
    if (other.empty()) return;
    AddRun(std::move(other.first_), other.prev_kv_);
    if (other.rest_ != nullptr) {
      for (Run& r : *other.rest_) AddRun(std::move(r), other.prev_kv_);
    }
    other = EventList();
  }

  size_t count() const { return count_; }
  bool empty() const { return count_ == 0; }
  size_t bytes() const { return bytes_; }
  // True when it holds events of several blocks (revisions merged into one
  // response, or a catch-up batch spanning blocks).
  bool merged() const { return merged_; }
  // Whether it holds exactly the events `part` selects, with the same
  // prev_kv (one run of the same block).
  bool SameAs(const EventSelection& part) const {
    if (rest_ != nullptr || count_ == 0 || count_ != part.count() || prev_kv_ != part.prev_kv() ||
        !part.single_run() || first_.block.get() != part.block()) {
      return false;
    }
    bool same = false;
    part.ForEachRun(0, part.count(), [&](uint32_t b, uint32_t e) { same = b == first_.begin && e == first_.end; });
    return same;
  }

  // Calls fn(wire bytes) for each contiguous run of the events, skipping
  // the first `skip` and stopping after `take`.
  template <typename Fn>
  void ForEachWire(size_t skip, size_t take, Fn&& fn) const {
    ForEachRun(skip, take, [&](const Run& r, uint32_t begin, uint32_t end) {
      fn(r.block->wire(begin, end, prev_kv_));
      return true;
    });
  }

  // Calls fn(wire size) for each event from the `skip`th on while fn
  // returns true.
  template <typename Fn>
  void ForEachSize(size_t skip, Fn&& fn) const {
    ForEachRun(skip, count_, [&](const Run& r, uint32_t begin, uint32_t end) {
      for (uint32_t i = begin; i < end; i++) {
        if (!fn(r.block->wire_size(i, prev_kv_))) return false;
      }
      return true;
    });
  }

 private:
  struct Run {
    EventBlockRef block;
    uint32_t begin = 0;
    uint32_t end = 0;
  };

  void AddRun(Run r, bool prev_kv) {
    const size_t n = r.end - r.begin;
    if (n == 0) return;
    bytes_ += r.block->wire(r.begin, r.end, prev_kv).size();
    if (count_ == 0) {
      count_ = static_cast<uint32_t>(n);
      prev_kv_ = prev_kv;
      first_ = std::move(r);
      return;
    }
    count_ += static_cast<uint32_t>(n);
    merged_ = merged_ || r.block != first_.block;
    if (rest_ == nullptr) rest_ = std::make_unique<std::vector<Run>>();
    rest_->push_back(std::move(r));
  }

  // Calls fn(run, begin, end) for the events [skip, skip + take) across the
  // runs, until fn returns false.
  template <typename Fn>
  void ForEachRun(size_t skip, size_t take, Fn&& fn) const {
    if (count_ == 0) return;
    auto visit = [&](const Run& r) {
      if (take == 0) return false;
      const size_t n = r.end - r.begin;
      if (skip >= n) {
        skip -= n;
        return true;
      }
      const uint32_t begin = r.begin + static_cast<uint32_t>(skip);
      const size_t here = std::min(take, n - skip);
      skip = 0;
      take -= here;
      return fn(r, begin, begin + static_cast<uint32_t>(here));
    };
    if (!visit(first_)) return;
    if (rest_ == nullptr) return;
    for (const Run& r : *rest_) {
      if (!visit(r)) return;
    }
  }

  Run first_;
  std::unique_ptr<std::vector<Run>> rest_;  // allocated for a second run only
  size_t bytes_ = 0;
  // Events of one response: at most one revision's, or a byte budget's.
  uint32_t count_ = 0;
  bool prev_kv_ = false;
  bool merged_ = false;
};

}  // namespace cairn::watch
