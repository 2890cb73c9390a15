// Reading canonical JSON text without parsing it: find a member's value
// text, or check that a text is exactly {"key":<value>}. Used where a stored
// canonical text is copied into another document as is (the status row takes
// a job's params and labels from its created event, or from the previous
// row). Only for text known to be valid, compact JSON; anything unexpected,
// including whitespace, makes these give up so the caller parses instead.
#pragma once

#include <optional>
#include <string_view>

namespace jobstate {

// The text of member `key` of the JSON object `t`; nullopt when absent (or
// when `t` is not compact).
std::optional<std::string_view> member_text(std::string_view t, std::string_view key);

// The value text of `t` when it is exactly {"<key>":<value>}, e.g. a
// heartbeat's {"progress":{...}} or a success's {"result":...}.
std::optional<std::string_view> only_member_text(std::string_view t, std::string_view key);

}  // namespace jobstate
