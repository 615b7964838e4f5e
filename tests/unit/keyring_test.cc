// The keyring: key syntax, rotation rules, fingerprints, the sealed frame, and
// the replay guard that reads its time and id.
#include <gtest/gtest.h>

#include "starling/membership/keyring.h"
#include "starling/membership/replay_guard.h"

namespace starling::membership {
namespace {

TEST(Keyring, KeysRoundTripAndBadOnesAreNamedWithoutEcho) {
  const Key k = Keyring::Generate();
  const std::string text = Keyring::FormatKey(k);
  EXPECT_EQ(text.size(), 44u);
  ASSERT_TRUE(Keyring::ParseKey(text).ok());
  EXPECT_EQ(*Keyring::ParseKey(text), k);
  EXPECT_EQ(*Keyring::ParseKey(text + "\n"), k) << "a trailing newline (from a file) is fine";
  EXPECT_NE(Keyring::Generate(), k);
  struct Bad {
    std::string text, says;
  };
  for (const Bad& b : {Bad{"", "empty"}, Bad{"not base64!", "not valid base64"},
                       Bad{"c2hvcnQ=", "decodes to 5 bytes, not 32"},
                       Bad{Keyring::FormatKey(k).substr(0, 40), "decodes to 30 bytes, not 32"}}) {
    auto r = Keyring::ParseKey(b.text);
    ASSERT_FALSE(r.ok()) << b.text;
    EXPECT_NE(r.status().message().find(b.says), std::string::npos) << r.status().message();
    if (!b.text.empty()) {
      EXPECT_EQ(r.status().message().find(b.text), std::string::npos) << "echoed the key";
    }
  }
}

TEST(Keyring, InstallUseRemoveFollowTheRotationRules) {
  Keyring ring;
  EXPECT_FALSE(ring.enabled());
  const Key a = Keyring::Generate(), b = Keyring::Generate();
  ASSERT_TRUE(ring.Install(a).ok());
  EXPECT_TRUE(ring.enabled());
  ASSERT_TRUE(ring.Install(b).ok());
  ASSERT_TRUE(ring.Install(b).ok()) << "installing twice is a no-op";
  EXPECT_EQ(ring.keys(), (std::vector<Key>{a, b})) << "the first key stays primary";
  EXPECT_EQ(ring.Remove(a).code(), Status::Code::kInvalidArgument) << "the primary cannot be removed";
  EXPECT_EQ(ring.Use(Keyring::Generate()).code(), Status::Code::kNotFound);
  ASSERT_TRUE(ring.Use(b).ok());
  EXPECT_EQ(ring.keys(), (std::vector<Key>{b, a}));
  ASSERT_TRUE(ring.Remove(a).ok());
  EXPECT_EQ(ring.Remove(a).code(), Status::Code::kNotFound);
  EXPECT_EQ(ring.keys(), (std::vector<Key>{b}));
  for (size_t i = 1; i < Keyring::kMaxKeys; ++i) ASSERT_TRUE(ring.Install(Keyring::Generate()).ok());
  EXPECT_EQ(ring.Install(Keyring::Generate()).code(), Status::Code::kInvalidArgument);
}

// The clear content of an opened frame; nullopt when it did not open.
std::optional<Bytes> Clear(const std::optional<OpenedFrame>& f) {
  if (!f) return std::nullopt;
  return f->clear;
}

TEST(Keyring, AnyInstalledKeyOpensButNothingElseDoes) {
  Keyring old_ring, both, stranger;
  const Key a = Keyring::Generate(), b = Keyring::Generate();
  ASSERT_TRUE(old_ring.Install(a).ok());
  ASSERT_TRUE(both.Install(b).ok());
  ASSERT_TRUE(both.Install(a).ok());
  ASSERT_TRUE(stranger.Install(Keyring::Generate()).ok());
  const Bytes clear = {'h', 'e', 'l', 'l', 'o'};
  const int64_t t = 1'790'000'000'123'456;
  Bytes sealed = old_ring.Encrypt(clear, t);
  EXPECT_EQ(sealed.size(), clear.size() + Keyring::kOverhead);
  EXPECT_TRUE(Keyring::IsSealed(sealed));
  EXPECT_FALSE(Keyring::IsSealed(clear));
  EXPECT_EQ(Clear(both.Decrypt(sealed)), clear) << "a secondary key opens";
  EXPECT_EQ(both.Decrypt(sealed)->sent_micros, t) << "the sender's time travels sealed";
  EXPECT_EQ(both.Decrypt(sealed)->id, both.Decrypt(sealed)->id);
  EXPECT_NE(both.Decrypt(sealed)->id, both.Decrypt(old_ring.Encrypt(clear, t))->id) << "every frame its own id";
  EXPECT_EQ(Clear(old_ring.Decrypt(both.Encrypt(clear, t))), std::nullopt) << "sealed with b, which old_ring lacks";
  EXPECT_EQ(Clear(stranger.Decrypt(sealed)), std::nullopt);
  EXPECT_NE(old_ring.Encrypt(clear, t), sealed) << "a fresh nonce every time";
  // Every single-bit flip (the time included), and every truncation, fails.
  for (size_t i = 0; i < sealed.size(); ++i) {
    Bytes f = sealed;
    f[i] ^= 0x80;
    EXPECT_EQ(Clear(both.Decrypt(f)), std::nullopt) << "bit flip at " << i;
    EXPECT_EQ(Clear(both.Decrypt(ByteView(sealed.data(), i))), std::nullopt) << "cut at " << i;
  }
  EXPECT_EQ(Clear(both.Decrypt(both.Encrypt({}, t))), Bytes{}) << "an empty frame is still authenticated";
  // A frame of the format before the time was sealed in is not opened.
  Bytes v1 = sealed;
  v1[Keyring::kHeaderBytes - 1] = 1;
  EXPECT_TRUE(Keyring::IsSealed(v1));
  EXPECT_EQ(Keyring::SealedFormat(v1), 1);
  EXPECT_EQ(Clear(both.Decrypt(v1)), std::nullopt);
}

TEST(Keyring, FingerprintsNameKeysWithoutShowingThem) {
  Keyring ring;
  const Key a = Keyring::Generate(), b = Keyring::Generate();
  ASSERT_TRUE(ring.Install(a).ok());
  ASSERT_TRUE(ring.Install(b).ok());
  const std::string fa = Keyring::Fingerprint(a);
  EXPECT_EQ(fa.size(), Keyring::kFingerprintChars);
  EXPECT_TRUE(Keyring::LooksLikeFingerprint(fa));
  EXPECT_EQ(Keyring::Fingerprint(a), fa) << "stable";
  EXPECT_NE(Keyring::Fingerprint(b), fa);
  EXPECT_EQ(Keyring::FormatKey(a).find(fa), std::string::npos);
  EXPECT_EQ(ring.ByFingerprint(fa), a);
  EXPECT_EQ(ring.ByFingerprint(Keyring::Fingerprint(b)), b);
  EXPECT_EQ(ring.ByFingerprint(Keyring::Fingerprint(Keyring::Generate())), std::nullopt);
  for (const char* not_one : {"", "0123", "0123456789ABCDEF", "0123456789abcdeg", "0123456789abcdef0"})
    EXPECT_FALSE(Keyring::LooksLikeFingerprint(not_one)) << not_one;
}

FrameId Id(uint8_t n) {
  FrameId id{};
  id[0] = n;
  return id;
}

TEST(ReplayGuard, AFrameIsAcceptedOnceAndOnlyNearThisClock) {
  using V = ReplayGuard::Verdict;
  const int64_t s = 1'000'000;
  ReplayGuard g(std::chrono::seconds(60), 1000);
  const int64_t now = 1'790'000'000 * s;
  EXPECT_EQ(g.Check(now, now - 2 * s, Id(1)), V::kFresh);
  EXPECT_EQ(g.Check(now + s, now - 2 * s, Id(1)), V::kReplayed) << "the same frame again";
  EXPECT_EQ(g.Check(now + s, now - 2 * s, Id(2)), V::kFresh) << "another frame of the same instant";
  EXPECT_EQ(g.Check(now, now - 61 * s, Id(3)), V::kOutOfWindow) << "sealed too long ago";
  EXPECT_EQ(g.Check(now, now + 61 * s, Id(4)), V::kOutOfWindow) << "sealed in the future (a clock ahead)";
  EXPECT_EQ(g.Check(now, now + 59 * s, Id(5)), V::kFresh) << "a clock a little ahead is fine";
  // Long after, the first frame is forgotten, and refused by the window.
  EXPECT_EQ(g.Check(now + 100 * s, now - 2 * s, Id(1)), V::kOutOfWindow);
  EXPECT_LE(g.size(), 1u) << "what fell out of the window is forgotten";
}

TEST(ReplayGuard, PastItsCapTheWindowNarrowsButNeverReopens) {
  using V = ReplayGuard::Verdict;
  const int64_t s = 1'000'000;
  const int64_t now = 1'790'000'000 * s;
  ReplayGuard g(std::chrono::seconds(60), 4);
  for (uint8_t i = 0; i < 8; ++i) EXPECT_EQ(g.Check(now, now - 10 * s + i, Id(i)), V::kFresh);
  EXPECT_EQ(g.size(), 4u);
  for (uint8_t i = 0; i < 8; ++i) EXPECT_EQ(g.Check(now, now - 10 * s + i, Id(i)), V::kReplayed) << int{i};
  EXPECT_EQ(g.Check(now, now - 10 * s + 2, Id(99)), V::kReplayed) << "at or before the floor: cannot be told apart";
  EXPECT_EQ(g.Check(now, now, Id(100)), V::kFresh) << "newer frames still pass";
}

}  // namespace
}  // namespace starling::membership
