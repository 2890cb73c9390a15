#include "store/lease.h"

#include <openssl/rand.h>

#include <stdexcept>

#include "store/hash_chain.h"

namespace jobstate {

std::string new_lease() {
  unsigned char raw[16];
  if (RAND_bytes(raw, sizeof raw) != 1) throw std::runtime_error("RAND_bytes failed");
  return raw_to_hex(std::string_view(reinterpret_cast<const char*>(raw), sizeof raw));
}

std::string lease_hash(std::string_view lease) { return sha256_hex(lease); }

}  // namespace jobstate
