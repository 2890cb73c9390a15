// Leases: the proof that a report comes from the attempt that holds the job.
// Every start (an HTTP start or claim, an executor, the embedded runner)
// draws a fresh lease; the started event keeps only its hash, and every later
// worker report on that attempt must present the same hash
// (CommandRequest::lease_hash), or the decider refuses it with
// kLeaseMismatch. A worker that was presumed dead and comes back after its
// job was retried therefore cannot finish the new attempt.
#pragma once

#include <string>
#include <string_view>

namespace jobstate {

// A new lease (the Job-Lease header's value): 128 random bits as 32
// lowercase hex characters, from OpenSSL's generator. Throws
// std::runtime_error when the generator fails.
std::string new_lease();

// What the log keeps of a lease: its SHA-256 as 64 lowercase hex characters.
std::string lease_hash(std::string_view lease);

// The hash of a fresh lease, for an attempt started in-process: its reports
// go through the writer, never over HTTP, so only the hash is ever needed.
inline std::string new_lease_hash() { return lease_hash(new_lease()); }

}  // namespace jobstate
