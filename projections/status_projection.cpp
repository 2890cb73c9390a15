#include "projections/status_projection.h"

#include <algorithm>
#include <memory>

#include "store/byte_order.h"
#include "eventstore/log_reader.h"

namespace jobstate {

namespace {

std::string newest_first(uint64_t created_seq) {
  return u64_be(UINT64_MAX - created_seq);
}

// The list-index prefix a filter scans.
std::string list_prefix(const ListFilter& f) {
  std::string p;
  if (f.status && f.type) {
    p = "x";
    p.push_back(static_cast<char>(*f.status));
    p += *f.type;
    p.push_back('\0');
  } else if (f.status) {
    p = "s";
    p.push_back(static_cast<char>(*f.status));
  } else if (f.type) {
    p = "t" + *f.type;
    p.push_back('\0');
  } else {
    p = "a";
  }
  return p;
}

std::string deadline_key(TimeMs due_ms, const JobId& id) {
  std::string k = u64_be(static_cast<uint64_t>(due_ms));
  k += id.bytes();
  return k;
}

// The job's key in the deadline index: jobs the watchdog must look at
// (next_deadline_ms) only.
std::optional<std::string> deadline_entry(const JobState& s, DeadlineRule rule) {
  const TimeMs deadline = next_deadline_ms(s);
  if (deadline == 0) return std::nullopt;
  return deadline_key(deadline_due_ms(deadline, s.heartbeat_timeout_s, rule), s.id);
}

}  // namespace

TimeMs deadline_due_ms(TimeMs deadline_ms, int64_t heartbeat_timeout_s, DeadlineRule rule) {
  if (rule == DeadlineRule::kExact) return deadline_ms;
  // A heartbeat every few seconds against a timeout of minutes moved the key
  // on every heartbeat: two of a heartbeat's five writes, and the costliest
  // memtable inserts (a new millisecond each time).
  return quarter_timeout_due_ms(deadline_ms, heartbeat_timeout_s);
}

Result<DeadlineRule> read_deadline_rule(const Database& db) {
  std::string v;
  auto s = db.db()->Get(rocksdb::ReadOptions(), db.cf(kMetaCf), kMetaDeadlineRule, &v);
  if (s.IsNotFound()) return DeadlineRule::kExact;
  if (!s.ok()) return rocksdb_error(s, "reading the deadline index rule");
  if (v.size() != 1 || (v[0] != static_cast<char>(DeadlineRule::kExact) &&
                        v[0] != static_cast<char>(DeadlineRule::kQuarterTimeout)))
    return make_error(ErrorCode::kCorruption, "meta: unknown deadline index rule");
  return static_cast<DeadlineRule>(v[0]);
}

void put_deadline_rule(rocksdb::WriteBatch& batch, const Database& db, DeadlineRule rule) {
  batch.Put(db.cf(kMetaCf), kMetaDeadlineRule, std::string(1, static_cast<char>(rule)));
}

std::vector<ProjectionEntry> projection_entries(const JobState& s, bool with_row,
                                                DeadlineRule rule) {
  std::vector<ProjectionEntry> out;
  out.reserve(6);
  const std::string id(s.id.bytes());
  const std::string order = newest_first(s.created_seq);
  out.push_back({ProjectionEntry::kJobs, id, with_row ? encode_status_row(s) : std::string()});
  ListFilter all, by_status{s.status, {}}, by_type{{}, s.type}, by_both{s.status, s.type};
  for (auto* f : {&all, &by_status, &by_type, &by_both})
    out.push_back({ProjectionEntry::kList, list_prefix(*f) + order, id});
  if (auto key = deadline_entry(s, rule))
    out.push_back({ProjectionEntry::kDeadlines, std::move(*key), ""});
  return out;
}

std::string StatusProjection::jobs_cf_name(uint64_t g) {
  return "jobs.g" + std::to_string(g);
}
std::string StatusProjection::list_cf_name(uint64_t g) {
  return "job_list.g" + std::to_string(g);
}
std::string StatusProjection::deadlines_cf_name(uint64_t g) {
  return "deadlines.g" + std::to_string(g);
}

Result<uint64_t> read_projection_generation(const Database& db) {
  std::string v;
  auto s = db.db()->Get(rocksdb::ReadOptions(), db.cf(kMetaCf), kMetaProjectionGeneration, &v);
  if (s.IsNotFound()) return uint64_t{1};
  if (!s.ok()) return rocksdb_error(s, "reading the projection generation");
  if (v.size() != 8) return make_error(ErrorCode::kCorruption, "meta: bad projection generation");
  return get_u64_be(v);
}

Result<std::unique_ptr<StatusProjection>> StatusProjection::open(Database& db) {
  auto gen = read_projection_generation(db);
  if (!gen) return gen.error();
  std::unique_ptr<StatusProjection> p(new StatusProjection(db, *gen));
  auto head = LogReader(db).head();
  if (!head) return head.error();
  rocksdb::ColumnFamilyHandle** slots[] = {&p->jobs_, &p->list_, &p->deadlines_};
  const std::string names[] = {jobs_cf_name(*gen), list_cf_name(*gen), deadlines_cf_name(*gen)};
  for (int i = 0; i < 3; ++i) {
    *slots[i] = db.cf(names[i]);
    if (*slots[i]) continue;
    // Only an empty log may start with an empty projection; otherwise serving
    // it would show jobs as missing.
    if (db.mode() != OpenMode::kReadWrite || head->seq != 0)
      return make_error(ErrorCode::kInvalidRequest,
                        "the store has no projection '" + names[i] + "' (run jobstate rebuild)");
    auto created = db.create_column_family(names[i]);
    if (!created) return created.error();
    *slots[i] = *created;
  }
  auto rule = read_deadline_rule(db);
  if (!rule) return rule.error();
  p->rule_ = *rule;
  if (p->rule_ != DeadlineRule::kQuarterTimeout && db.mode() == OpenMode::kReadWrite)
    if (auto s = p->convert_deadline_index(); !s) return s.error();
  if (db.mode() == OpenMode::kReadWrite)
    if (auto s = p->seed_counts(); !s) return s.error();
  return p;
}

// One pass over the rows: status from the header, type from the JSON.
static Result<std::map<std::pair<JobStatus, std::string>, uint64_t>> count_rows(
    const Database& db, rocksdb::ColumnFamilyHandle* jobs) {
  std::map<std::pair<JobStatus, std::string>, uint64_t> counts;
  rocksdb::ReadOptions ro;
  ro.fill_cache = false;
  std::unique_ptr<rocksdb::Iterator> it(db.db()->NewIterator(ro, jobs));
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    auto row = decode_status_row(std::string_view(it->value().data(), it->value().size()));
    if (!row) return row.error();
    ++counts[{row->status, row->type()}];
  }
  if (!it->status().ok()) return rocksdb_error(it->status(), "counting the status rows");
  return counts;
}

Status StatusProjection::seed_counts() {
  auto counts = count_rows(db_, jobs_);
  if (!counts) return counts.error();
  std::lock_guard lock(staged_mu_);
  counts_ = std::move(*counts);
  seeded_ = true;
  return ok_status();
}

Result<std::vector<JobCount>> StatusProjection::count_jobs() const {
  std::map<std::pair<JobStatus, std::string>, uint64_t> counts;
  bool seeded;
  {
    std::lock_guard lock(staged_mu_);
    seeded = seeded_;
    if (seeded) counts = counts_;
  }
  if (!seeded) {  // a read-only open: nothing moves the counts, so count now
    auto scanned = count_rows(db_, jobs_);
    if (!scanned) return scanned.error();
    counts = std::move(*scanned);
  }
  std::vector<JobCount> out;
  for (auto& [key, n] : counts)
    if (n) out.push_back(JobCount{key.first, key.second, n});
  return out;
}

Status StatusProjection::convert_deadline_index() {
  // One key per running job, in one synced batch with the rule: a crash
  // leaves either the old index and no rule, or the new index and the rule.
  rocksdb::WriteBatch batch;
  std::unique_ptr<rocksdb::Iterator> it(db_.db()->NewIterator(rocksdb::ReadOptions(), deadlines_));
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    const auto k = it->key().ToStringView();
    if (k.size() != 24) return make_error(ErrorCode::kCorruption, "deadlines: malformed key");
    batch.Delete(deadlines_, it->key());
    const JobId id = *JobId::from_bytes(k.substr(8));
    auto r = row(id);
    if (!r) return r.error();
    if (!*r || (*r)->deadline_ms == 0) continue;
    const TimeMs due = deadline_due_ms((*r)->deadline_ms, (*r)->heartbeat_timeout_s,
                                       DeadlineRule::kQuarterTimeout);
    batch.Put(deadlines_, deadline_key(due, id), "");
  }
  if (!it->status().ok()) return rocksdb_error(it->status(), "reading deadlines");
  put_deadline_rule(batch, db_, DeadlineRule::kQuarterTimeout);
  rocksdb::WriteOptions synced;
  synced.sync = true;
  if (auto s = db_.db()->Write(synced, &batch); !s.ok())
    return rocksdb_error(s, "converting the deadline index");
  rule_ = DeadlineRule::kQuarterTimeout;
  return ok_status();
}

rocksdb::ColumnFamilyHandle* StatusProjection::family(ProjectionEntry::Family f) const {
  switch (f) {
    case ProjectionEntry::kJobs:
      return jobs_;
    case ProjectionEntry::kList:
      return list_;
    case ProjectionEntry::kDeadlines:
      return deadlines_;
  }
  return nullptr;
}

Result<std::optional<StatusRow>> StatusProjection::row(const JobId& id) const {
  auto r = shared_row(id);
  if (!r) return r.error();
  if (!*r) return std::optional<StatusRow>();
  return std::optional<StatusRow>(**r);
}

std::shared_ptr<const StatusRow> StatusProjection::recent_row(const JobId& id) const {
  std::lock_guard lock(recent_mu_);
  auto it = recent_.find(id);
  return it == recent_.end() ? nullptr : it->second;
}

Result<std::shared_ptr<const StatusRow>> StatusProjection::shared_row(const JobId& id) const {
  if (auto row = recent_row(id)) return row;
  rocksdb::PinnableSlice v;
  auto s = db_.db()->Get(rocksdb::ReadOptions(), jobs_, id.bytes(), &v);
  if (s.IsNotFound()) return std::shared_ptr<const StatusRow>();
  if (!s.ok()) return rocksdb_error(s, "reading a job");
  auto r = decode_status_row(v.ToStringView());
  if (!r) return r.error();
  return std::shared_ptr<const StatusRow>(std::make_shared<StatusRow>(std::move(*r)));
}

Status StatusProjection::for_each_queued(const std::function<void(const JobState&)>& fn) {
  std::optional<uint64_t> before;
  for (;;) {
    auto page = list(ListFilter{JobStatus::kQueued, std::nullopt}, before, 1000);
    if (!page) return page.error();
    for (const StatusRow& row : page->jobs) {
      auto st = row.to_state();
      if (!st) return st.error();
      fn(*st);
    }
    if (!page->next_before_seq) return ok_status();
    before = page->next_before_seq;
  }
}

Result<std::optional<JobState>> StatusProjection::load(const JobId& id) {
  auto r = row(id);
  if (!r) return r.error();
  if (!*r) return std::optional<JobState>();
  auto s = (*r)->to_state();
  if (!s) return s.error();
  return std::optional<JobState>(std::move(*s));
}

void StatusProjection::project(rocksdb::WriteBatch& batch, uint64_t batch_no,
                               const JobState* before, const JobState& after,
                               std::string_view progress_text) {
  if (before && before->status == after.status && before->type == after.type &&
      before->created_seq == after.created_seq) {
    // The common case (a heartbeat): the list keys stay, only the deadline
    // can move.
    auto old_key = deadline_entry(*before, rule_), new_key = deadline_entry(after, rule_);
    if (old_key != new_key) {
      if (old_key) batch.Delete(deadlines_, *old_key);
      if (new_key) batch.Put(deadlines_, *new_key, "");
    }
  } else {
    auto new_entries = projection_entries(after, /*with_row=*/false, rule_);
    std::vector<ProjectionEntry> old_entries;
    if (before) old_entries = projection_entries(*before, /*with_row=*/false, rule_);
    auto has = [](const std::vector<ProjectionEntry>& v, const ProjectionEntry& e) {
      for (auto& x : v)
        if (x.family == e.family && x.key == e.key) return true;
      return false;
    };
    // Keys the old state had and the new one does not: old status list keys, the old deadline.
    for (auto& old : old_entries)
      if (!has(new_entries, old)) batch.Delete(family(old.family), old.key);
    // Index keys only when they are new (their value is the id).
    for (auto& e : new_entries)
      if (e.family != ProjectionEntry::kJobs && !has(old_entries, e))
        batch.Put(family(e.family), e.key, e.value);
  }

  auto row = std::make_shared<StatusRow>();
  row->version = after.version;
  row->status = after.status;
  row->created_seq = after.created_seq;
  row->deadline_ms = next_deadline_ms(after);
  row->heartbeat_timeout_s = after.heartbeat_timeout_s;
  RowTexts texts;
  texts.progress = progress_text;
  const std::string value = encode_status_row(after, texts);
  row->json_text.assign(value, kStatusRowHeaderBytes);

  // The row always changes.
  batch.Put(jobs_, after.id.bytes(), value);
  StagedRow staged;
  staged.batch_no = batch_no;
  staged.id = after.id;
  staged.row = std::move(row);
  if (!before || before->status != after.status || before->type != after.type) {
    staged.moves_count = true;
    if (before) {
      staged.left_status = before->status;
      staged.left_type = before->type;
    }
    staged.joined_type = after.type;
  }
  std::lock_guard lock(staged_mu_);
  staged_.push_back(std::move(staged));
}

void StatusProjection::batch_finished(uint64_t batch_no, bool durable, uint64_t head_seq) {
  std::lock_guard lock(staged_mu_);
  auto end = staged_.begin();
  while (end != staged_.end() && end->batch_no <= batch_no) ++end;
  if (durable) {
    std::lock_guard recent_lock(recent_mu_);
    if (recent_.size() + static_cast<size_t>(end - staged_.begin()) > kRecentRows) recent_.clear();
    for (auto it = staged_.begin(); it != end; ++it) {
      if (it->batch_no != batch_no) continue;
      if (it->moves_count && seeded_) {
        if (it->left_status) {
          auto left = counts_.find({*it->left_status, it->left_type});
          if (left != counts_.end() && left->second > 0) --left->second;
        }
        ++counts_[{it->row->status, it->joined_type}];
      }
      recent_[it->id] = std::move(it->row);
    }
    if (head_seq) as_of_seq_.store(head_seq, std::memory_order_release);
  }
  staged_.erase(staged_.begin(), end);
}

Result<ListPage> StatusProjection::list(const ListFilter& filter,
                                        std::optional<uint64_t> before_seq, size_t limit) const {
  const std::string prefix = list_prefix(filter);
  std::string upper = prefix;
  upper.back() = static_cast<char>(upper.back() + 1);  // prefixes end in a byte < 0xFF
  rocksdb::ReadOptions ro;
  rocksdb::Slice upper_slice(upper);
  ro.iterate_upper_bound = &upper_slice;
  std::unique_ptr<rocksdb::Iterator> it(db_.db()->NewIterator(ro, list_));
  it->Seek(before_seq ? prefix + newest_first(*before_seq - 1) : prefix);
  std::vector<std::string> ids;
  for (; it->Valid() && ids.size() <= limit; it->Next()) ids.push_back(it->value().ToString());
  if (!it->status().ok()) return rocksdb_error(it->status(), "listing jobs");
  ListPage page;
  const bool more = ids.size() > limit;
  if (more) ids.pop_back();
  if (ids.empty()) return page;
  std::vector<rocksdb::Slice> keys(ids.begin(), ids.end());
  std::vector<rocksdb::PinnableSlice> values(keys.size());
  std::vector<rocksdb::Status> statuses(keys.size());
  db_.db()->MultiGet(rocksdb::ReadOptions(), jobs_, keys.size(), keys.data(), values.data(),
                     statuses.data());
  for (size_t i = 0; i < keys.size(); ++i) {
    if (!statuses[i].ok()) return rocksdb_error(statuses[i], "reading a listed job");
    auto r = decode_status_row(values[i].ToStringView());
    if (!r) return r.error();
    page.jobs.push_back(std::move(*r));
  }
  if (more) page.next_before_seq = page.jobs.back().created_seq;
  return page;
}

Result<std::vector<ExpiredDeadline>> StatusProjection::expired(TimeMs now_ms, size_t limit,
                                                               const ExpiredDeadline* after) const {
  const std::string upper = u64_be(static_cast<uint64_t>(now_ms) + 1);
  rocksdb::ReadOptions ro;
  rocksdb::Slice upper_slice(upper);
  ro.iterate_upper_bound = &upper_slice;
  std::unique_ptr<rocksdb::Iterator> it(db_.db()->NewIterator(ro, deadlines_));
  std::vector<ExpiredDeadline> out;
  if (after) {
    const std::string from = deadline_key(after->due_ms, after->job_id);
    it->Seek(from);
    if (it->Valid() && it->key().ToStringView() == from) it->Next();
  } else {
    it->SeekToFirst();
  }
  for (; it->Valid() && out.size() < limit; it->Next()) {
    auto k = it->key().ToStringView();
    if (k.size() != 24) return make_error(ErrorCode::kCorruption, "deadlines: malformed key");
    out.push_back({static_cast<TimeMs>(get_u64_be(k)), *JobId::from_bytes(k.substr(8))});
  }
  if (!it->status().ok()) return rocksdb_error(it->status(), "reading deadlines");
  return out;
}

}  // namespace jobstate
