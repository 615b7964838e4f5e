#pragma once
// Byte-level helpers every Cap'n Proto codec shares: flat encoding, an aligned
// copy for reading (Cap'n Proto reads 8-byte words in place and our buffers
// carry no alignment promise), and reader limits sized to the input so a
// hostile message cannot make a decoder walk more than a few times its size.
#include <capnp/message.h>
#include <capnp/serialize.h>
#include <kj/exception.h>

#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <vector>

#include "starling/status.h"

namespace starling::capnp_bytes {

inline std::vector<uint8_t> Flat(capnp::MessageBuilder& mb) {
  auto words = capnp::messageToFlatArray(mb);
  auto bytes = words.asBytes();
  return std::vector<uint8_t>(bytes.begin(), bytes.end());
}

// Copies whole words only; callers check the size is a multiple of 8.
inline kj::Array<capnp::word> Aligned(std::span<const uint8_t> bytes) {
  auto words = kj::heapArray<capnp::word>(bytes.size() / sizeof(capnp::word));
  if (!bytes.empty()) std::memcpy(words.begin(), bytes.data(), words.size() * sizeof(capnp::word));
  return words;
}

inline capnp::ReaderOptions Limits(size_t bytes) {
  capnp::ReaderOptions o;
  o.traversalLimitInWords = bytes / sizeof(capnp::word) * 4 + 64;
  o.nestingLimit = 16;
  return o;
}

inline std::string Str(capnp::Text::Reader t) { return std::string(t.cStr(), t.size()); }

// Reads a flat message of at most `max_bytes` with `fn(reader)`; bad sizes
// and Cap'n Proto's exceptions become kCorruption naming `what`.
template <typename T, typename Fn>
Result<T> DecodeGuarded(std::span<const uint8_t> bytes, size_t max_bytes, const std::string& what, Fn&& fn) {
  if (bytes.empty() || bytes.size() % sizeof(capnp::word) != 0 || bytes.size() > max_bytes)
    return Status::Corruption(what + " of " + std::to_string(bytes.size()) + " bytes");
  try {
    auto words = Aligned(bytes);
    capnp::FlatArrayMessageReader reader(words, Limits(bytes.size()));
    return fn(reader);
  } catch (const kj::Exception& e) {
    return Status::Corruption(what + ": " + e.getDescription().cStr());
  }
}

}  // namespace starling::capnp_bytes
