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

#include "mvccpb/kv.pb.h"

namespace cairn::watch {

class EventBlock {
 public:
  // Encodes `events` (in revision order). The prev_kv form is kept only when
  // some event has a prev_kv; otherwise both forms are the same bytes.
  static std::shared_ptr<const EventBlock> Encode(const std::vector<mvccpb::Event>& events);

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
  EventSelection(std::shared_ptr<const EventBlock> block, bool prev_kv)
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
  bool prev_kv() const { return prev_kv_; }

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
  std::shared_ptr<const EventBlock> block_;
  bool prev_kv_ = false;
  Run first_;
  std::vector<Run> more_;
  size_t count_ = 0;
  size_t bytes_ = 0;
};

// The events one queued response carries: one selection per block, in
// order. A response usually holds one; a watcher whose stream is backed up
// gets later revisions appended to its queued response (see
// WatchStream::TryPushEvent) and then holds several.
class EventList {
 public:
  void Append(EventSelection part) {
    if (part.empty()) return;
    count_ += part.count();
    bytes_ += part.bytes();
    if (first_.empty()) {
      first_ = std::move(part);
    } else {
      rest_.push_back(std::move(part));
    }
  }
  void Append(EventList&& other) {
    Append(std::move(other.first_));
    for (EventSelection& part : other.rest_) Append(std::move(part));
    other = EventList();
  }

  size_t count() const { return count_; }
  bool empty() const { return count_ == 0; }
  size_t bytes() const { return bytes_; }
  // True when it holds events of several blocks (revisions merged into one
  // response, or a catch-up batch spanning blocks).
  bool merged() const { return !rest_.empty(); }

  // Calls fn(wire bytes) for each contiguous run of the events, skipping
  // the first `skip` and stopping after `take`.
  template <typename Fn>
  void ForEachWire(size_t skip, size_t take, Fn&& fn) const {
    ForEachRun(skip, take, [&](const EventSelection& part, uint32_t begin, uint32_t end) {
      fn(part.block()->wire(begin, end, part.prev_kv()));
      return true;
    });
  }

  // Calls fn(wire size) for each event from the `skip`th on while fn
  // returns true.
  template <typename Fn>
  void ForEachSize(size_t skip, Fn&& fn) const {
    ForEachRun(skip, count_, [&](const EventSelection& part, uint32_t begin, uint32_t end) {
      for (uint32_t i = begin; i < end; i++) {
        if (!fn(part.block()->wire_size(i, part.prev_kv()))) return false;
      }
      return true;
    });
  }

 private:
  // Calls fn(part, begin, end) for the runs of events [skip, skip + take)
  // across the parts, until fn returns false.
  template <typename Fn>
  void ForEachRun(size_t skip, size_t take, Fn&& fn) const {
    bool go = true;
    auto visit = [&](const EventSelection& part) {
      const size_t n = part.count();
      if (!go || take == 0) return;
      if (skip >= n) {
        skip -= n;
        return;
      }
      const size_t here = std::min(take, n - skip);
      part.ForEachRun(skip, here, [&](uint32_t begin, uint32_t end) {
        if (go) go = fn(part, begin, end);
      });
      skip = 0;
      take -= here;
    };
    if (first_.empty()) return;
    visit(first_);
    for (const EventSelection& part : rest_) visit(part);
  }

  EventSelection first_;
  std::vector<EventSelection> rest_;
  size_t count_ = 0;
  size_t bytes_ = 0;
};

}  // namespace cairn::watch
