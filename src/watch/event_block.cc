#include "watch/event_block.h"

#include <google/protobuf/io/coded_stream.h>

#include "common/check.h"
#include "watch/wire.h"

namespace cairn::watch {

namespace {
using google::protobuf::io::CodedOutputStream;

// Field tags of mvccpb.Event and of WatchResponse.events (wire type 0 =
// varint, 2 = length-delimited).
constexpr uint8_t kEventTypeTag = (1 << 3) | 0;
constexpr uint8_t kEventKvTag = (2 << 3) | 2;
constexpr uint8_t kEventPrevKvTag = (3 << 3) | 2;
constexpr uint8_t kResponseEventsTag = (11 << 3) | 2;

size_t FieldSize(size_t payload) { return 1 + CodedOutputStream::VarintSize64(payload) + payload; }

// Appends a serialized message `m` of `size` bytes (ByteSizeLong already
// called, so its cached sizes are valid).
void AppendMessage(const google::protobuf::MessageLite& m, size_t size, std::string* out) {
  const size_t at = out->size();
  out->resize(at + size);
  uint8_t* p = reinterpret_cast<uint8_t*>(out->data() + at);
  uint8_t* end = m.SerializeWithCachedSizesToArray(p);
  CHECK(end == p + size) << "event serialized to " << (end - p) << " bytes, expected " << size;
}
}  // namespace

EventBlockRef EventBlock::Encode(const std::vector<mvccpb::Event>& events) {
  boost::intrusive_ptr<EventBlock> block(new EventBlock());
  EventBlock& b = *block;
  b.meta_.reserve(events.size());
  b.offsets_.reserve(events.size() + 1);
  b.offsets_.push_back(0);
  for (const mvccpb::Event& ev : events) b.has_prev_ = b.has_prev_ || ev.has_prev_kv();
  if (b.has_prev_) {
    b.offsets_prev_.reserve(events.size() + 1);
    b.offsets_prev_.push_back(0);
  }
  for (const mvccpb::Event& ev : events) {
    const std::string& key = ev.kv().key();
    b.meta_.push_back(Meta{ev.kv().mod_revision(), static_cast<uint32_t>(b.keys_.size()),
                           static_cast<uint32_t>(key.size()), ev.type() == mvccpb::Event::PUT});
    b.keys_.append(key);

    const uint64_t type = static_cast<uint64_t>(ev.type());
    const size_t kv_size = ev.kv().ByteSizeLong();
    const size_t type_size = type != 0 ? 1 + CodedOutputStream::VarintSize64(type) : 0;
    const size_t body = type_size + FieldSize(kv_size);
    const size_t event_start = b.wire_.size();
    b.wire_.push_back(static_cast<char>(kResponseEventsTag));
    wire::AppendVarint(&b.wire_, body);
    const size_t body_start = b.wire_.size();
    if (type != 0) {
      b.wire_.push_back(static_cast<char>(kEventTypeTag));
      wire::AppendVarint(&b.wire_, type);
    }
    b.wire_.push_back(static_cast<char>(kEventKvTag));
    wire::AppendVarint(&b.wire_, kv_size);
    AppendMessage(ev.kv(), kv_size, &b.wire_);
    b.offsets_.push_back(b.wire_.size());

    if (!b.has_prev_) continue;
    if (!ev.has_prev_kv()) {
      b.wire_prev_.append(b.wire_, event_start, b.wire_.size() - event_start);
    } else {
      const size_t prev_size = ev.prev_kv().ByteSizeLong();
      b.wire_prev_.push_back(static_cast<char>(kResponseEventsTag));
      wire::AppendVarint(&b.wire_prev_, body + FieldSize(prev_size));
      b.wire_prev_.append(b.wire_, body_start, b.wire_.size() - body_start);
      b.wire_prev_.push_back(static_cast<char>(kEventPrevKvTag));
      wire::AppendVarint(&b.wire_prev_, prev_size);
      AppendMessage(ev.prev_kv(), prev_size, &b.wire_prev_);
    }
    b.offsets_prev_.push_back(b.wire_prev_.size());
  }
  return block;
}

void EventSelection::Add(uint32_t i) {
  CHECK(block_ != nullptr && i < block_->size()) << "event " << i << " is not in the block";
  bytes_ += block_->wire_size(i, prev_kv_);
  if (count_ == 0) {
    first_ = Run{i, i + 1};
  } else {
    Run& last = more_.empty() ? first_ : more_.back();
    CHECK(i >= last.end) << "events added out of order";
    if (i == last.end) {
      last.end++;
    } else {
      more_.push_back(Run{i, i + 1});
    }
  }
  count_++;
}

void EventSelection::Truncate(size_t count) {
  if (count >= count_) return;
  EventSelection kept(block_, prev_kv_);
  ForEachRun(0, count, [&](uint32_t begin, uint32_t end) {
    for (uint32_t i = begin; i < end; i++) kept.Add(i);
  });
  *this = std::move(kept);
}

}  // namespace cairn::watch
