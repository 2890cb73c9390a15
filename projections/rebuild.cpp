#include "projections/rebuild.h"

#include <rocksdb/write_batch.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <map>
#include <memory>
#include <unordered_map>

#include "eventstore/keys.h"
#include "eventstore/log_reader.h"
#include "projections/status_projection.h"

namespace jobstate {

namespace {
using Entries = std::vector<std::pair<std::string, std::string>>;

// First difference between the sorted expected entries and a column family.
Status compare_family(const Database& db, rocksdb::ColumnFamilyHandle* cf, const Entries& want,
                      const std::string& name) {
  if (!cf) return make_error(ErrorCode::kCorruption, "projection '" + name + "' is missing");
  std::unique_ptr<rocksdb::Iterator> it(db.db()->NewIterator(rocksdb::ReadOptions(), cf));
  it->SeekToFirst();
  auto describe = [&](std::string_view key) {
    std::string d = name + " key ";
    if (name.rfind("jobs.", 0) == 0) {
      if (auto id = JobId::from_bytes(key)) return d + "of job " + id->to_string();
    }
    static constexpr char kHex[] = "0123456789abcdef";
    for (unsigned char c : key) {
      d.push_back(kHex[c >> 4]);
      d.push_back(kHex[c & 0xF]);
    }
    return d;
  };
  for (auto& [k, v] : want) {
    if (!it->Valid() || it->key().ToStringView() > std::string_view(k))
      return make_error(ErrorCode::kCorruption, describe(k) + " is missing from the stored projection");
    if (it->key().ToStringView() < std::string_view(k))
      return make_error(ErrorCode::kCorruption,
                        describe(it->key().ToStringView()) + " is in the stored projection but not in a replay");
    if (it->value().ToStringView() != std::string_view(v))
      return make_error(ErrorCode::kCorruption, describe(k) + " differs from a replay of the log");
    it->Next();
  }
  if (it->Valid())
    return make_error(ErrorCode::kCorruption,
                      describe(it->key().ToStringView()) + " is in the stored projection but not in a replay");
  if (!it->status().ok()) return rocksdb_error(it->status(), "reading " + name);
  return ok_status();
}
}  // namespace

Result<RebuildStats> rebuild_projections(Database& db, const RebuildOptions& options) {
  const auto t0 = std::chrono::steady_clock::now();
  RebuildStats stats;
  std::unordered_map<JobId, JobState> jobs;
  std::optional<Error> failure;
  LogReader log(db);
  Status scanned = log.scan(0, UINT64_MAX, [&](const StoredEventView& v) {
    if (v.seq != stats.events + 1) {
      failure = make_error(ErrorCode::kCorruption, "seq " + std::to_string(stats.events + 1) +
                                                       " is missing (next is " +
                                                       std::to_string(v.seq) + ")");
      return false;
    }
    auto e = v.to_event();
    if (!e) {
      failure = e.error();
      return false;
    }
    auto it = jobs.find(e->job_id);
    auto next = apply(it == jobs.end() ? nullptr : &it->second, *e);
    if (!next) {
      failure = next.error();
      return false;
    }
    if (it == jobs.end())
      jobs.emplace(e->job_id, std::move(*next));
    else
      it->second = std::move(*next);
    ++stats.events;
    if (options.on_progress && stats.events % 100'000 == 0) options.on_progress(stats.events);
    return true;
  });
  if (!scanned) return scanned.error();
  if (failure) return *failure;
  stats.jobs = jobs.size();

  Entries families[3];
  for (auto& [id, s] : jobs)
    for (auto& e : projection_entries(s))
      families[e.family].emplace_back(std::move(e.key), std::move(e.value));
  for (auto& f : families) std::sort(f.begin(), f.end());

  auto gen = read_projection_generation(db);
  if (!gen) return gen.error();
  auto names = [](uint64_t g) {
    return std::array<std::string, 3>{StatusProjection::jobs_cf_name(g),
                                      StatusProjection::list_cf_name(g),
                                      StatusProjection::deadlines_cf_name(g)};
  };

  if (options.check_only) {
    auto current = names(*gen);
    for (int f = 0; f < 3; ++f) {
      auto s = compare_family(db, db.cf(current[f]), families[f], current[f]);
      if (!s) return s.error();
    }
    stats.generation = *gen;
  } else {
    if (db.mode() != OpenMode::kReadWrite)
      return make_error(ErrorCode::kInvalidRequest, "rebuild needs the store opened read-write");
    const uint64_t next_gen = *gen + 1;
    auto fresh = names(next_gen);
    std::array<rocksdb::ColumnFamilyHandle*, 3> handles{};
    for (int f = 0; f < 3; ++f) {
      // Leftovers of an interrupted rebuild are dropped, never reused.
      if (auto s = db.drop_column_family(fresh[f]); !s) return s.error();
      auto h = db.create_column_family(fresh[f]);
      if (!h) return h.error();
      handles[f] = *h;
    }
    rocksdb::WriteOptions unsynced;  // the final synced write makes all of these durable
    for (int f = 0; f < 3; ++f) {
      rocksdb::WriteBatch wb;
      for (auto& [k, v] : families[f]) {
        wb.Put(handles[f], k, v);
        if (wb.Count() >= 10'000) {
          if (auto s = db.db()->Write(unsynced, &wb); !s.ok())
            return rocksdb_error(s, "writing the rebuilt projection");
          wb.Clear();
        }
      }
      if (auto s = db.db()->Write(unsynced, &wb); !s.ok())
        return rocksdb_error(s, "writing the rebuilt projection");
    }
    rocksdb::WriteOptions synced;
    synced.sync = true;
    if (auto s = db.db()->Put(synced, db.cf(kMetaCf), kMetaProjectionGeneration, u64_be(next_gen));
        !s.ok())
      return rocksdb_error(s, "switching to the rebuilt projection");
    for (auto& old : names(*gen))
      if (auto s = db.drop_column_family(old); !s) return s.error();
    stats.generation = next_gen;
  }
  stats.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return stats;
}

}  // namespace jobstate
