// The keyring: key syntax, rotation rules, and the sealed frame.
#include <gtest/gtest.h>

#include "starling/membership/keyring.h"

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

TEST(Keyring, AnyInstalledKeyOpensButNothingElseDoes) {
  Keyring old_ring, both, stranger;
  const Key a = Keyring::Generate(), b = Keyring::Generate();
  ASSERT_TRUE(old_ring.Install(a).ok());
  ASSERT_TRUE(both.Install(b).ok());
  ASSERT_TRUE(both.Install(a).ok());
  ASSERT_TRUE(stranger.Install(Keyring::Generate()).ok());
  const Bytes clear = {'h', 'e', 'l', 'l', 'o'};
  Bytes sealed = old_ring.Encrypt(clear);
  EXPECT_EQ(sealed.size(), clear.size() + Keyring::kOverhead);
  EXPECT_TRUE(Keyring::IsSealed(sealed));
  EXPECT_FALSE(Keyring::IsSealed(clear));
  EXPECT_EQ(both.Decrypt(sealed), clear) << "a secondary key opens";
  EXPECT_EQ(old_ring.Decrypt(both.Encrypt(clear)), std::nullopt) << "sealed with b, which old_ring lacks";
  EXPECT_EQ(stranger.Decrypt(sealed), std::nullopt);
  EXPECT_NE(old_ring.Encrypt(clear), sealed) << "a fresh nonce every time";
  // Every single-bit flip, and every truncation, fails.
  for (size_t i = 0; i < sealed.size(); ++i) {
    Bytes t = sealed;
    t[i] ^= 0x80;
    EXPECT_EQ(both.Decrypt(t), std::nullopt) << "bit flip at " << i;
    EXPECT_EQ(both.Decrypt(ByteView(sealed.data(), i)), std::nullopt) << "cut at " << i;
  }
  EXPECT_EQ(both.Decrypt(both.Encrypt({})), Bytes{}) << "an empty frame is still authenticated";
}

}  // namespace
}  // namespace starling::membership
