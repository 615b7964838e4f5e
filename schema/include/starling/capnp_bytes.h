#pragma once
// Byte-level helpers every Cap'n Proto codec shares: flat encoding, an aligned
// copy for reading (Cap'n Proto reads 8-byte words in place and our buffers
// carry no alignment promise), and reader limits sized to the input so a
// hostile message cannot make a decoder walk more than a few times its size.
#include <capnp/message.h>
#include <capnp/serialize.h>

#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <vector>

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

}  // namespace starling::capnp_bytes
