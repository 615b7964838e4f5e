// Immutable values shared by everyone holding an equal one. A member's name,
// address, tags and release are held by every node that knows the member,
// and in the simulator every node lives in one process: interned, a
// cluster of N nodes keeps each such value once instead of N times, and a
// node keeps one copy where it held several (its member table, events,
// reports, records).
//
// Thread-safe: handles are copied and dropped on any thread; the pool is
// locked only to intern a value and to drop the last handle to one.
#pragma once

#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <compare>
#include <cstddef>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <ostream>
#include <string>
#include <string_view>
#include <unordered_set>
#include <utility>

namespace starling {

namespace intern {

// One pool per value type. Rep is the shared value with its count; the pool
// holds every live Rep, keyed by the value.
template <class T, class Hash>
class Pool {
 public:
  struct Rep {
    std::atomic<uint32_t> refs{1};
    size_t hash = 0;
    T value;
  };

  static Pool& Get() {
    static Pool* pool = new Pool;  // never destroyed: handles may outlive static destruction
    return *pool;
  }

  template <class K>
  Rep* Intern(const K& key) {
    const size_t h = Hash{}(key);
    std::lock_guard lock(mu_);
    if (auto it = reps_.find(Probe<K>{h, &key}); it != reps_.end()) {
      (*it)->refs.fetch_add(1, std::memory_order_relaxed);
      return *it;
    }
    Rep* r = new Rep;
    r->hash = h;
    r->value = T(key);
    reps_.insert(r);
    return r;
  }

  static void Ref(Rep* r) {
    if (r) r->refs.fetch_add(1, std::memory_order_relaxed);
  }

  // The count only falls to zero under the lock, where Intern would have
  // raised it again, so a Rep found in the pool is never one being freed.
  void Unref(Rep* r) {
    if (!r) return;
    uint32_t n = r->refs.load(std::memory_order_relaxed);
    while (n > 1)
      if (r->refs.compare_exchange_weak(n, n - 1, std::memory_order_acq_rel)) return;
    std::lock_guard lock(mu_);
    if (r->refs.fetch_sub(1, std::memory_order_acq_rel) != 1) return;
    reps_.erase(r);
    delete r;
  }

  size_t size() {
    std::lock_guard lock(mu_);
    return reps_.size();
  }

 private:
  template <class K>
  struct Probe {
    size_t hash;
    const K* key;
  };
  struct RepHash {
    using is_transparent = void;
    size_t operator()(const Rep* r) const { return r->hash; }
    template <class K>
    size_t operator()(const Probe<K>& p) const {
      return p.hash;
    }
  };
  struct RepEq {
    using is_transparent = void;
    bool operator()(const Rep* a, const Rep* b) const { return a == b; }
    template <class K>
    bool operator()(const Probe<K>& p, const Rep* r) const {
      return p.hash == r->hash && r->value == *p.key;
    }
    template <class K>
    bool operator()(const Rep* r, const Probe<K>& p) const {
      return p.hash == r->hash && r->value == *p.key;
    }
  };
  std::mutex mu_;
  std::unordered_set<Rep*, RepHash, RepEq> reps_;
};

// A counted handle to a pooled value; the default handle holds T{}.
template <class T, class Hash>
class Handle {
  using P = Pool<T, Hash>;

 public:
  Handle() noexcept = default;
  Handle(const Handle& o) noexcept : rep_(o.rep_) { P::Ref(rep_); }
  Handle(Handle&& o) noexcept : rep_(std::exchange(o.rep_, nullptr)) {}
  Handle& operator=(const Handle& o) noexcept {
    if (rep_ != o.rep_) {
      P::Ref(o.rep_);
      P::Get().Unref(std::exchange(rep_, o.rep_));
    }
    return *this;
  }
  Handle& operator=(Handle&& o) noexcept {
    if (this != &o) P::Get().Unref(std::exchange(rep_, std::exchange(o.rep_, nullptr)));
    return *this;
  }
  ~Handle() { P::Get().Unref(rep_); }

  const T& get() const noexcept { return rep_ ? rep_->value : Empty(); }
  // Equal values share one Rep, so identity is equality.
  bool same(const Handle& o) const noexcept { return rep_ == o.rep_; }
  const void* identity() const noexcept { return rep_; }
  static size_t pooled() { return P::Get().size(); }

 protected:
  template <class K>
  explicit Handle(const K& key, bool empty) : rep_(empty ? nullptr : P::Get().Intern(key)) {}

 private:
  static const T& Empty() {
    static const T* empty = new T();
    return *empty;
  }
  typename P::Rep* rep_ = nullptr;
};

// A handle to a pooled record, made from a record of its own type (a
// member's record, a node's report): the holders of equal records keep one.
template <class T, class Hash>
class Interned : public Handle<T, Hash> {
 public:
  Interned() noexcept = default;
  explicit Interned(const T& v) : Handle<T, Hash>(v, false) {}
};

// Values made from a key (a document parsed from the state its digest
// names, a record parsed from the write its stamp names), shared by
// everyone asking for the same key while anyone holds one. `make` may return
// null (nothing is kept then).
template <class Key, class V>
class SharedCache {
 public:
  template <class Make>
  std::shared_ptr<const V> Get(const Key& key, Make&& make) {
    {
      std::lock_guard lock(mu_);
      if (auto it = made_.find(key); it != made_.end())
        if (auto v = it->second.lock()) return v;
    }
    std::shared_ptr<const V> v = make();
    if (!v) return v;
    std::lock_guard lock(mu_);
    made_[key] = v;
    if (made_.size() >= sweep_at_) {
      std::erase_if(made_, [](const auto& kv) { return kv.second.expired(); });
      sweep_at_ = std::max<size_t>(64, made_.size() * 2);
    }
    return v;
  }

 private:
  std::mutex mu_;
  std::map<Key, std::weak_ptr<const V>> made_;
  size_t sweep_at_ = 64;
};

struct TextHash {
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};

}  // namespace intern

// An interned string: eight bytes, copied by a count, compared by identity.
class Atom : public intern::Handle<std::string, intern::TextHash> {
  using Base = intern::Handle<std::string, intern::TextHash>;

 public:
  Atom() noexcept = default;
  Atom(std::string_view s) : Base(s, s.empty()) {}
  Atom(const std::string& s) : Atom(std::string_view(s)) {}
  Atom(const char* s) : Atom(std::string_view(s)) {}

  const std::string& str() const noexcept { return get(); }
  operator const std::string&() const noexcept { return get(); }
  operator std::string_view() const noexcept { return get(); }
  const char* c_str() const noexcept { return get().c_str(); }
  const char* data() const noexcept { return get().data(); }
  size_t size() const noexcept { return get().size(); }
  bool empty() const noexcept { return get().empty(); }
  auto begin() const noexcept { return get().begin(); }
  auto end() const noexcept { return get().end(); }

  friend bool operator==(const Atom& a, const Atom& b) noexcept { return a.same(b); }
  friend bool operator==(const Atom& a, std::string_view b) noexcept { return a.str() == b; }
  friend bool operator==(const Atom& a, const std::string& b) noexcept { return a.str() == b; }
  friend bool operator==(const Atom& a, const char* b) noexcept { return a.str() == b; }
  friend std::strong_ordering operator<=>(const Atom& a, const Atom& b) noexcept {
    return a.same(b) ? std::strong_ordering::equal : a.str() <=> b.str();
  }
  friend std::strong_ordering operator<=>(const Atom& a, std::string_view b) noexcept { return a.str() <=> b; }
  friend std::strong_ordering operator<=>(const Atom& a, const std::string& b) noexcept { return a.str() <=> b; }
  friend std::strong_ordering operator<=>(const Atom& a, const char* b) noexcept {
    return a.str() <=> std::string_view(b);
  }
  friend std::string operator+(const Atom& a, std::string_view b) { return a.str() + std::string(b); }
  friend std::string operator+(std::string_view a, const Atom& b) { return std::string(a) + b.str(); }
  friend std::string operator+(const Atom& a, const std::string& b) { return a.str() + b; }
  friend std::string operator+(const std::string& a, const Atom& b) { return a + b.str(); }
  friend std::string operator+(const Atom& a, const char* b) { return a.str() + b; }
  friend std::string operator+(const char* a, const Atom& b) { return a + b.str(); }
  friend std::string operator+(std::string&& a, const Atom& b) { return std::move(a) + b.str(); }
  friend std::ostream& operator<<(std::ostream& os, const Atom& a) { return os << a.str(); }
};

}  // namespace starling

template <>
struct std::hash<starling::Atom> {
  size_t operator()(const starling::Atom& a) const noexcept { return std::hash<const void*>{}(a.identity()); }
};

template <>
struct fmt::formatter<starling::Atom> : fmt::formatter<std::string_view> {
  template <class Ctx>
  auto format(const starling::Atom& a, Ctx& ctx) const {
    return fmt::formatter<std::string_view>::format(std::string_view(a.str()), ctx);
  }
};
