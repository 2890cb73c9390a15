#include "store/lease.h"

#include <openssl/rand.h>
#include <openssl/sha.h>

#include <stdexcept>

#include "store/hash_chain.h"

namespace jobstate {

std::string new_lease() {
  unsigned char raw[16];
  if (RAND_bytes(raw, sizeof raw) != 1) throw std::runtime_error("RAND_bytes failed");
  return raw_to_hex(std::string_view(reinterpret_cast<const char*>(raw), sizeof raw));
}

std::string lease_hash(std::string_view lease) {
  unsigned char md[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(lease.data()), lease.size(), md);
  return raw_to_hex(std::string_view(reinterpret_cast<const char*>(md), sizeof md));
}

}  // namespace jobstate
