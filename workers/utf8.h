// UTF-8 text safe for a JSON string: what a worker does to bytes a child
// process wrote before they go into a job's progress, error or result.
//
// Pure functions, safe from any thread.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace jobstate::workers {

// `text` with every invalid UTF-8 sequence (a stray byte, an overlong form, a
// surrogate, a value beyond U+10FFFF, a truncated sequence) replaced by
// U+FFFD, one per offending byte.
std::string sanitize_utf8(std::string_view text);

// The longest prefix of `text` of at most `max_bytes` bytes that does not end
// inside a UTF-8 sequence.
std::string_view cut_utf8(std::string_view text, size_t max_bytes);

// `text` without the continuation bytes (at most 3) at its start: the rest of
// a character whose first byte was cut away by keeping only a tail.
std::string_view skip_partial_utf8_start(std::string_view text);

}  // namespace jobstate::workers
