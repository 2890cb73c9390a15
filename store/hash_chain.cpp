#include "store/hash_chain.h"

#include <openssl/evp.h>

#include <memory>
#include <stdexcept>

namespace jobstate {

namespace {
std::string digest_hex(std::initializer_list<std::string_view> parts) {
  // EVP contexts are cheap to reuse; one per thread avoids an allocation per event.
  thread_local std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(),
                                                                         &EVP_MD_CTX_free);
  // OpenSSL 3 looks the algorithm up on every init unless it is fetched once.
  static EVP_MD* const fetched = EVP_MD_fetch(nullptr, "SHA256", nullptr);
  const EVP_MD* sha256 = fetched ? fetched : EVP_sha256();
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (!ctx || EVP_DigestInit_ex(ctx.get(), sha256, nullptr) != 1)
    throw std::runtime_error("EVP_DigestInit_ex failed");
  for (auto p : parts) EVP_DigestUpdate(ctx.get(), p.data(), p.size());
  EVP_DigestFinal_ex(ctx.get(), md, &len);
  return raw_to_hex(std::string_view(reinterpret_cast<const char*>(md), len));
}
}  // namespace

std::string sha256_hex(std::string_view data) { return digest_hex({data}); }

std::string chain_hash(std::string_view previous_hash, std::string_view canonical) {
  return digest_hex({previous_hash, canonical});
}

std::string raw_to_hex(std::string_view raw) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out(raw.size() * 2, '0');
  for (size_t i = 0; i < raw.size(); ++i) {
    auto b = static_cast<uint8_t>(raw[i]);
    out[2 * i] = kHex[b >> 4];
    out[2 * i + 1] = kHex[b & 0xF];
  }
  return out;
}

std::string hex_to_raw(std::string_view hex) {
  auto val = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
  };
  if (hex.size() % 2) return {};
  std::string out(hex.size() / 2, '\0');
  for (size_t i = 0; i < out.size(); ++i) {
    int hi = val(hex[2 * i]), lo = val(hex[2 * i + 1]);
    if (hi < 0 || lo < 0) return {};
    out[i] = static_cast<char>(hi << 4 | lo);
  }
  return out;
}

}  // namespace jobstate
