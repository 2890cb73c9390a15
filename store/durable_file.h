// Small files replaced as a whole, durably: the webhook cursors, the tokens
// file. A reader sees the old text or the new, never a mix, even after a
// crash or a power loss.
#pragma once

#include <sys/types.h>

#include <string>
#include <string_view>

#include "domain/result.h"

namespace jobstate {

// Writes `text` to `path` + ".tmp" with `mode`, fsyncs it, renames it over
// `path` and fsyncs the directory. kUnavailable naming the step and the
// system's reason on failure.
Status write_file_durably(const std::string& path, std::string_view text, mode_t mode);

// The whole file; kUnavailable naming the file and the reason when it
// cannot be read (errno stays set, e.g. ENOENT).
Result<std::string> read_whole_file(const std::string& path);

}  // namespace jobstate
