#include <gtest/gtest.h>

#include "p2p/crypto/token_cipher.hpp"

using p2p::crypto::CipherError;
using p2p::crypto::TokenCipher;

namespace {
// Test keys: base64 of 32 bytes.
const std::string kKeyA = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";  // "0123456789abcdef0123456789abcdef"
const std::string kKeyB = "QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUE=";  // 32 x 'A'

std::string error_of(const std::function<void()>& action) {
  try {
    action();
  } catch (const CipherError& error) {
    return error.what();
  }
  return "";
}
}  // namespace

TEST(TokenCipher, SealsAndOpensWithTheSameAssociatedData) {
  const TokenCipher cipher(kKeyA);
  const auto sealed = cipher.seal("member-access-token", "batch_job:42");
  EXPECT_TRUE(sealed.starts_with("p2p1." + cipher.primary_key_id() + "."));
  EXPECT_EQ(sealed.find("member-access-token"), std::string::npos);
  EXPECT_EQ(cipher.open(sealed, "batch_job:42"), "member-access-token");
  EXPECT_NE(cipher.seal("member-access-token", "batch_job:42"), sealed) << "a fresh nonce every time";
  EXPECT_EQ(cipher.open(cipher.seal("", "x"), "x"), "");
}

TEST(TokenCipher, RefusesOtherOwnersTamperingAndUnknownKeys) {
  const TokenCipher cipher(kKeyA);
  const auto sealed = cipher.seal("member-access-token", "batch_job:42");
  EXPECT_EQ(error_of([&] { cipher.open(sealed, "batch_job:43"); }),
            "the sealed value does not authenticate (tampered, or bound to another owner)");
  std::string tampered = sealed;
  tampered[tampered.size() - 6] = tampered[tampered.size() - 6] == 'A' ? 'B' : 'A';
  EXPECT_EQ(error_of([&] { cipher.open(tampered, "batch_job:42"); }),
            "the sealed value does not authenticate (tampered, or bound to another owner)");
  const TokenCipher other(kKeyB);
  EXPECT_EQ(error_of([&] { other.open(sealed, "batch_job:42"); }),
            "sealed with key " + cipher.primary_key_id() + ", which is neither the current nor a retired key");
  EXPECT_EQ(error_of([&] { cipher.open("plain-token", "batch_job:42"); }), "not a sealed value (unknown format)");
}

TEST(TokenCipher, RotatedKeysStillOpenOldValues) {
  const auto sealed_with_a = TokenCipher(kKeyA).seal("refresh-token", "batch_job:7");
  const TokenCipher rotated(kKeyB, {kKeyA});
  EXPECT_EQ(rotated.open(sealed_with_a, "batch_job:7"), "refresh-token");
  EXPECT_TRUE(rotated.seal("x", "y").starts_with("p2p1." + rotated.primary_key_id()));
  EXPECT_NE(rotated.primary_key_id(), TokenCipher(kKeyA).primary_key_id());
}

TEST(TokenCipher, KeysMustBe32BytesOfBase64) {
  EXPECT_EQ(error_of([] { TokenCipher("c2hvcnQ="); }),
            "the token encryption key must be base64 of exactly 32 bytes (got 5 bytes); make one with: openssl rand -base64 32");
  EXPECT_EQ(error_of([] { TokenCipher("not base64!"); }),
            "the token encryption key is not valid base64; make one with: openssl rand -base64 32");
  EXPECT_EQ(error_of([] { TokenCipher(kKeyA, {"AAAA"}); }),
            "retired token encryption key #1 must be base64 of exactly 32 bytes (got 3 bytes); make one with: openssl rand -base64 32");
}

TEST(Base64, RoundTripsEveryLength) {
  std::string data;
  for (int i = 0; i < 70; ++i) {
    EXPECT_EQ(p2p::crypto::base64_decode(p2p::crypto::base64_encode(data)), data) << i;
    data.push_back(static_cast<char>(i * 37));
  }
  EXPECT_EQ(p2p::crypto::base64_encode("any carnal pleas"), "YW55IGNhcm5hbCBwbGVhcw==");
}
