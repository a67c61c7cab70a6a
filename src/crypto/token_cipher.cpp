#include "p2p/crypto/token_cipher.hpp"

#include <memory>

#include <openssl/evp.h>
#include <openssl/rand.h>

#include "p2p/util/crypto.hpp"

namespace p2p::crypto {
namespace {

constexpr std::string_view kPrefix = "p2p1.";
constexpr std::size_t kKeyBytes = 32;
constexpr std::size_t kNonceBytes = 12;
constexpr std::size_t kTagBytes = 16;

using ContextPtr = std::unique_ptr<EVP_CIPHER_CTX, decltype(&EVP_CIPHER_CTX_free)>;

const unsigned char* bytes_of(std::string_view text) { return reinterpret_cast<const unsigned char*>(text.data()); }
unsigned char* bytes_of(std::string& text) { return reinterpret_cast<unsigned char*>(text.data()); }

std::string key_id(std::string_view key) {
  const auto digest = util::sha256(key);
  static constexpr char kHex[] = "0123456789abcdef";
  std::string id;
  for (int i = 0; i < 4; ++i) {
    id.push_back(kHex[digest[static_cast<std::size_t>(i)] >> 4]);
    id.push_back(kHex[digest[static_cast<std::size_t>(i)] & 0xF]);
  }
  return id;
}

std::string decode_key(std::string_view base64, const std::string& which) {
  std::string key;
  try {
    key = base64_decode(base64);
  } catch (const CipherError&) {
    throw CipherError(which + " is not valid base64; make one with: openssl rand -base64 32");
  }
  if (key.size() != kKeyBytes) {
    throw CipherError(which + " must be base64 of exactly 32 bytes (got " + std::to_string(key.size()) +
                      " bytes); make one with: openssl rand -base64 32");
  }
  return key;
}

}  // namespace

std::string base64_encode(std::string_view bytes) {
  std::string out(4 * ((bytes.size() + 2) / 3), '\0');
  const int written = EVP_EncodeBlock(bytes_of(out), bytes_of(bytes), static_cast<int>(bytes.size()));
  out.resize(static_cast<std::size_t>(written));
  return out;
}

std::string base64_decode(std::string_view text) {
  while (!text.empty() && (text.back() == '\n' || text.back() == '\r' || text.back() == ' ')) text.remove_suffix(1);
  if (text.size() % 4 != 0) throw CipherError("invalid base64 length");
  std::string out(3 * (text.size() / 4), '\0');
  const int written = EVP_DecodeBlock(bytes_of(out), bytes_of(text), static_cast<int>(text.size()));
  if (written < 0) throw CipherError("invalid base64");
  std::size_t size = static_cast<std::size_t>(written);
  // EVP_DecodeBlock counts padding as zero bytes.
  if (!text.empty() && text.back() == '=') --size;
  if (text.size() >= 2 && text[text.size() - 2] == '=') --size;
  out.resize(size);
  return out;
}

TokenCipher::TokenCipher(std::string_view primary_key_base64, const std::vector<std::string>& retired_keys_base64) {
  const auto primary = decode_key(primary_key_base64, "the token encryption key");
  keys_.push_back({key_id(primary), primary});
  for (std::size_t i = 0; i < retired_keys_base64.size(); ++i) {
    const auto key = decode_key(retired_keys_base64[i], "retired token encryption key #" + std::to_string(i + 1));
    keys_.push_back({key_id(key), key});
  }
}

std::string TokenCipher::seal(std::string_view plaintext, std::string_view associated_data) const {
  const Key& key = keys_.front();
  std::string blob(kNonceBytes + plaintext.size() + kTagBytes, '\0');
  auto* nonce = bytes_of(blob);
  if (RAND_bytes(nonce, static_cast<int>(kNonceBytes)) != 1) throw CipherError("OpenSSL could not make a nonce");
  ContextPtr context(EVP_CIPHER_CTX_new(), EVP_CIPHER_CTX_free);
  int length = 0;
  if (!context || EVP_EncryptInit_ex(context.get(), EVP_aes_256_gcm(), nullptr, bytes_of(key.bytes), nonce) != 1 ||
      EVP_EncryptUpdate(context.get(), nullptr, &length, bytes_of(associated_data),
                        static_cast<int>(associated_data.size())) != 1 ||
      EVP_EncryptUpdate(context.get(), nonce + kNonceBytes, &length, bytes_of(plaintext),
                        static_cast<int>(plaintext.size())) != 1 ||
      EVP_EncryptFinal_ex(context.get(), nonce + kNonceBytes + length, &length) != 1 ||
      EVP_CIPHER_CTX_ctrl(context.get(), EVP_CTRL_GCM_GET_TAG, static_cast<int>(kTagBytes),
                          nonce + kNonceBytes + plaintext.size()) != 1) {
    throw CipherError("AES-256-GCM encryption failed");
  }
  return std::string(kPrefix) + key.id + "." + base64_encode(blob);
}

std::string TokenCipher::open(std::string_view sealed, std::string_view associated_data) const {
  if (!sealed.starts_with(kPrefix)) throw CipherError("not a sealed value (unknown format)");
  sealed.remove_prefix(kPrefix.size());
  const auto dot = sealed.find('.');
  if (dot == std::string_view::npos) throw CipherError("not a sealed value (no key id)");
  const auto id = sealed.substr(0, dot);
  const Key* key = nullptr;
  for (const auto& candidate : keys_) {
    if (candidate.id == id) key = &candidate;
  }
  if (key == nullptr) {
    throw CipherError("sealed with key " + std::string(id) + ", which is neither the current nor a retired key");
  }
  const std::string blob = base64_decode(sealed.substr(dot + 1));
  if (blob.size() < kNonceBytes + kTagBytes) throw CipherError("sealed value too short");
  const std::size_t text_size = blob.size() - kNonceBytes - kTagBytes;
  std::string plaintext(text_size, '\0');
  std::string tag = blob.substr(kNonceBytes + text_size);
  ContextPtr context(EVP_CIPHER_CTX_new(), EVP_CIPHER_CTX_free);
  int length = 0;
  if (!context ||
      EVP_DecryptInit_ex(context.get(), EVP_aes_256_gcm(), nullptr, bytes_of(key->bytes), bytes_of(blob)) != 1 ||
      EVP_DecryptUpdate(context.get(), nullptr, &length, bytes_of(associated_data),
                        static_cast<int>(associated_data.size())) != 1 ||
      EVP_DecryptUpdate(context.get(), bytes_of(plaintext), &length, bytes_of(blob) + kNonceBytes,
                        static_cast<int>(text_size)) != 1 ||
      EVP_CIPHER_CTX_ctrl(context.get(), EVP_CTRL_GCM_SET_TAG, static_cast<int>(kTagBytes), bytes_of(tag)) != 1 ||
      EVP_DecryptFinal_ex(context.get(), bytes_of(plaintext) + length, &length) != 1) {
    throw CipherError("the sealed value does not authenticate (tampered, or bound to another owner)");
  }
  return plaintext;
}

}  // namespace p2p::crypto
