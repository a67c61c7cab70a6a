#pragma once
// Encryption at rest of members' OAuth tokens: AES-256-GCM (OpenSSL), a fresh 96-bit nonce per value,
// and associated data that binds a ciphertext to its owner (e.g. "batch_job:42"), so a value copied
// to another row does not decrypt. Sealed values name the key they were made with, so the key can be
// rotated: new values use the primary key, old ones still open with a retired key.
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace p2p::crypto {

class CipherError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class TokenCipher {
 public:
  // Keys are base64 of exactly 32 random bytes (e.g. `openssl rand -base64 32`). Throws CipherError
  // saying what is wrong with a key (never echoing it).
  explicit TokenCipher(std::string_view primary_key_base64, const std::vector<std::string>& retired_keys_base64 = {});

  // "p2p1.<key id>.<base64(nonce | ciphertext | tag)>"
  std::string seal(std::string_view plaintext, std::string_view associated_data) const;
  // Throws CipherError when the value was tampered with, bound to other associated data, or made
  // with a key this cipher does not hold.
  std::string open(std::string_view sealed, std::string_view associated_data) const;

  // A short, non-secret identifier of the primary key (first 8 hex digits of its SHA-256).
  const std::string& primary_key_id() const { return keys_.front().id; }

 private:
  struct Key {
    std::string id;
    std::string bytes;
  };
  std::vector<Key> keys_;
};

std::string base64_encode(std::string_view bytes);
// Throws CipherError on invalid base64.
std::string base64_decode(std::string_view text);

}  // namespace p2p::crypto
