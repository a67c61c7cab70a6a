#include "p2p/util/crypto.hpp"

#include <stdexcept>
#include <vector>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

namespace p2p::util {

namespace {

// OpenSSL 3's one-shot SHA256() looks the algorithm up (under a lock) and allocates a context on every
// call; the transform hashes once per resource (target ids), so the algorithm is fetched once and each
// thread keeps its context.
struct Sha256Context {
  Sha256Context() : md(EVP_MD_fetch(nullptr, "SHA256", nullptr)), ctx(EVP_MD_CTX_new()) {
    if (md == nullptr || ctx == nullptr) throw std::runtime_error("OpenSSL has no SHA-256");
  }
  ~Sha256Context() {
    EVP_MD_CTX_free(ctx);
    EVP_MD_free(md);
  }
  Sha256Context(const Sha256Context&) = delete;
  Sha256Context& operator=(const Sha256Context&) = delete;
  EVP_MD* md;
  EVP_MD_CTX* ctx;
};

}  // namespace

Sha256Digest sha256(std::string_view data) {
  thread_local Sha256Context context;
  Sha256Digest digest{};
  unsigned int size = 0;
  if (EVP_DigestInit_ex2(context.ctx, context.md, nullptr) != 1 ||
      EVP_DigestUpdate(context.ctx, data.data(), data.size()) != 1 ||
      EVP_DigestFinal_ex(context.ctx, digest.data(), &size) != 1 || size != digest.size()) {
    throw std::runtime_error("OpenSSL SHA-256 failed");
  }
  return digest;
}

std::string to_hex(const std::uint8_t* bytes, std::size_t size) {
  std::string text;
  text.reserve(size * 2);
  append_hex(text, bytes, size);
  return text;
}

void append_hex(std::string& out, const std::uint8_t* bytes, std::size_t size) {
  static constexpr char kHex[] = "0123456789abcdef";
  for (std::size_t i = 0; i < size; ++i) {
    out.push_back(kHex[bytes[i] >> 4]);
    out.push_back(kHex[bytes[i] & 0xF]);
  }
}

std::string sha256_hex(std::string_view data) {
  const auto digest = sha256(data);
  return to_hex(digest.data(), digest.size());
}

bool constant_time_equal(const Sha256Digest& a, const Sha256Digest& b) {
  return CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

std::string random_hex(std::size_t bytes) {
  std::vector<unsigned char> buffer(bytes);
  if (RAND_bytes(buffer.data(), static_cast<int>(buffer.size())) != 1) {
    throw std::runtime_error("OpenSSL RAND_bytes failed");
  }
  return to_hex(buffer.data(), buffer.size());
}

}  // namespace p2p::util
