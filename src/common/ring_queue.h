// RingQueue<T>: a FIFO in one circular array that holds no memory while
// empty. For queues that are empty most of the time and fill in bursts: a
// watch stream's output queue (src/watch/) is empty between revisions and
// takes one response per watcher when a revision arrives.
//
// Why not std::deque: libstdc++'s deque keeps a 64-byte map and a 512-byte
// block even when empty, and allocates one 512-byte block per few elements
// as it grows; with 1,000 streams those blocks, freed in a different order
// than allocated, left jemalloc's 512-byte slabs at 23% use (100,000
// watchers: 3.9 MB resident for 1.1 MB live, docs/benchmarks.md).
//
// Capacity grows by half when full and halves when a pop leaves it a
// quarter full (elements moved; amortised O(1) either way), rounded up to
// what the allocator gave; the array is freed when the last element is
// popped, so a drained queue costs nothing. Not thread-safe.
#pragma once

#include <malloc.h>

#include <cassert>
#include <cstddef>
#include <new>
#include <utility>

namespace cairn {

template <typename T>
class RingQueue {
 public:
  RingQueue() = default;
  RingQueue(const RingQueue&) = delete;
  RingQueue& operator=(const RingQueue&) = delete;
  ~RingQueue() { clear(); }

  bool empty() const { return size_ == 0; }
  size_t size() const { return size_; }
  size_t capacity() const { return capacity_; }

  T& front() { return data_[head_]; }
  const T& front() const { return data_[head_]; }
  T& back() { return (*this)[size_ - 1]; }
  // The i-th element from the front; REQUIRES: i < size().
  T& operator[](size_t i) {
    assert(i < size_);
    return data_[Slot(i)];
  }
  const T& operator[](size_t i) const {
    assert(i < size_);
    return data_[Slot(i)];
  }

  void push_back(T&& value) {
    if (size_ == capacity_) Resize(capacity_ == 0 ? kInitialCapacity : capacity_ + capacity_ / 2);
    new (&data_[Slot(size_)]) T(std::move(value));
    size_++;
  }

  // REQUIRES: !empty().
  void pop_front() {
    assert(size_ > 0);
    data_[head_].~T();
    if (++head_ == capacity_) head_ = 0;
    if (--size_ == 0) {
      Release();
    } else if (capacity_ > kInitialCapacity && size_ <= capacity_ / 4) {
      Resize(capacity_ / 2);  // a draining queue gives memory back as it goes
    }
  }

  void clear() {
    while (size_ > 0) {
      data_[head_].~T();
      if (++head_ == capacity_) head_ = 0;
      size_--;
    }
    Release();
  }

 private:
  static constexpr size_t kInitialCapacity = 8;

  size_t Slot(size_t i) const {
    const size_t slot = head_ + i;
    return slot < capacity_ ? slot : slot - capacity_;
  }

  // Moves the elements into a new array of at least `capacity` (>= size_)
  // elements: as many as the allocator's size class holds (jemalloc rounds
  // 100 responses of 72 bytes up to 8 KiB; 128 of them would take 10 KiB).
  void Resize(size_t capacity) {
    size_t bytes = capacity * sizeof(T);
    T* data = static_cast<T*>(::operator new(bytes, std::align_val_t(alignof(T))));
    bytes = malloc_usable_size(data);
    for (size_t i = 0; i < size_; i++) {
      T& from = (*this)[i];
      new (&data[i]) T(std::move(from));
      from.~T();
    }
    Release();
    data_ = data;
    capacity_ = bytes / sizeof(T);
  }

  // Frees the array; REQUIRES: its elements destroyed.
  void Release() {
    if (data_ != nullptr) ::operator delete(data_, std::align_val_t(alignof(T)));
    data_ = nullptr;
    capacity_ = 0;
    head_ = 0;
  }

  T* data_ = nullptr;
  size_t capacity_ = 0;
  size_t head_ = 0;
  size_t size_ = 0;
};

}  // namespace cairn
