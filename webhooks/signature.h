// Standard Webhooks signatures (https://www.standardwebhooks.com/): what a
// receiver recomputes to trust a delivery. The signed content is
// "<webhook-id>.<webhook-timestamp>.<body>"; the signature is HMAC-SHA256 of
// it keyed by the secret's bytes, sent as "v1,<base64>". Secrets are written
// "whsec_<base64 of the key bytes>".
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "domain/result.h"

namespace jobstate::webhooks {

// The webhook-signature header's value: "v1," + base64(HMAC-SHA256(key,
// id + "." + timestamp_s + "." + body)).
std::string webhook_signature(std::string_view key, std::string_view id, int64_t timestamp_s,
                              std::string_view body);

// The key bytes of a "whsec_<base64>" secret. kInvalidRequest (naming no part
// of the secret) when the prefix is missing, the rest is not base64, or the
// key is not 24 to 64 bytes long (the range the scheme recommends).
Result<std::string> decode_webhook_secret(std::string_view secret);

// Standard base64 (RFC 4648 §4) with padding.
std::string base64_encode(std::string_view bytes);
// Standard base64; padding optional. nullopt-like failure as kInvalidRequest.
Result<std::string> base64_decode(std::string_view text);

}  // namespace jobstate::webhooks
