// The domain's value types: job ids, RFC 3339 timestamps, event type names,
// and the canonical event JSON the hash chain covers (API.md: Python's
// json.dumps(e, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
// must give the same bytes, so anyone can verify the chain).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <limits>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "domain/clock.h"
#include "domain/event.h"
#include "domain/job_id.h"
#include "store/hash_chain.h"
#include "test_util.h"

namespace jobstate {
namespace {

using nlohmann::json;

constexpr const char* kCanonicalId = "3f0c8a2e-5b1d-4c7e-9a6f-0123456789ab";

TEST(DomainJobId, ParsesTheCanonicalFormAndPrintsItBack) {
  auto id = JobId::parse(kCanonicalId);
  ASSERT_TRUE(id);
  EXPECT_EQ(id->to_string(), kCanonicalId);
  EXPECT_FALSE(id->is_nil());
  ASSERT_EQ(id->bytes().size(), 16u);
  EXPECT_EQ(static_cast<uint8_t>(id->bytes()[0]), 0x3f);
  EXPECT_EQ(static_cast<uint8_t>(id->bytes()[15]), 0xab);
  auto again = JobId::from_bytes(id->bytes());
  ASSERT_TRUE(again);
  EXPECT_EQ(*again, *id);
  // Every allowed variant nibble.
  for (char variant : {'8', '9', 'a', 'b'}) {
    std::string text = kCanonicalId;
    text[19] = variant;
    EXPECT_TRUE(JobId::parse(text)) << text;
  }
}

TEST(DomainJobId, RejectsEverythingButLowercaseCanonicalV4) {
  const std::string ok = kCanonicalId;
  auto with = [&](size_t pos, char c) {
    std::string s = ok;
    s[pos] = c;
    return s;
  };
  const std::vector<std::string> bad = {
      "3F0C8A2E-5B1D-4C7E-9A6F-0123456789AB",  // uppercase
      with(0, 'F'),                            // one uppercase digit
      with(35, 'B'),
      with(14, '1'),  // version 1
      with(14, '5'),  // version 5
      with(14, '0'),
      with(19, '7'),  // NCS variant
      with(19, 'c'),  // Microsoft variant
      with(19, 'f'),
      with(19, '0'),
      "{" + ok + "}",                          // braces
      "urn:uuid:" + ok,                        // URN
      ok.substr(0, 35),                        // too short
      ok + "0",                                // too long
      " " + ok.substr(1),                      // whitespace
      "3f0c8a2e5b1d4c7e9a6f0123456789ab",      // no dashes
      "3f0c8a2e5-b1d-4c7e-9a6f-0123456789ab",  // dash moved
      with(8, '_'),
      with(3, 'g'),  // not hex
      with(20, '-'),
      std::string("3f0c8a2e-5b1d-4c7e-9a6f-0123456789a\0", 36),  // NUL
      "00000000-0000-0000-0000-000000000000",                    // nil
      "",
  };
  for (const auto& text : bad) EXPECT_FALSE(JobId::parse(text)) << "accepted '" << text << "'";
}

TEST(DomainJobId, FromBytesNeedsSixteen) {
  EXPECT_FALSE(JobId::from_bytes(std::string(15, 'x')));
  EXPECT_FALSE(JobId::from_bytes(std::string(17, 'x')));
  EXPECT_FALSE(JobId::from_bytes(""));
}

TEST(DomainJobId, GeneratedIdsAreV4AndUnique) {
  std::set<std::string> seen;
  for (int i = 0; i < 2000; ++i) {
    JobId id = JobId::generate();
    const std::string text = id.to_string();
    auto parsed = JobId::parse(text);
    ASSERT_TRUE(parsed) << text;
    EXPECT_EQ(*parsed, id);
    EXPECT_EQ(text[14], '4');
    EXPECT_TRUE(seen.insert(text).second) << "duplicate " << text;
  }
}

// Expected values computed with Python's datetime (UTC).
TEST(DomainRfc3339, FormatsAndParsesKnownInstants) {
  const std::vector<std::pair<TimeMs, std::string>> cases = {
      {0, "1970-01-01T00:00:00.000Z"},
      {1'795'802'400'123, "2026-11-27T18:00:00.123Z"},
      {-1, "1969-12-31T23:59:59.999Z"},
      {-58'017'600'000, "1968-02-29T12:00:00.000Z"},  // leap day before 1970
      {951'782'400'001, "2000-02-29T00:00:00.001Z"},  // divisible by 400: leap
      {1'709'251'199'999, "2024-02-29T23:59:59.999Z"},
      {-2'203'891'200'000, "1900-03-01T00:00:00.000Z"},  // 1900 is not leap
      {-11'670'976'371'991, "1600-02-29T06:07:08.009Z"},
      {4'107'542'400'000, "2100-03-01T00:00:00.000Z"},
      {-62'135'596'800'000, "0001-01-01T00:00:00.000Z"},
      {-62'167'219'200'000, "0000-01-01T00:00:00.000Z"},
      {253'402'300'799'999, "9999-12-31T23:59:59.999Z"},
  };
  for (const auto& [ms, text] : cases) {
    EXPECT_EQ(format_rfc3339_ms(ms), text) << ms;
    EXPECT_EQ(parse_rfc3339_ms(text), std::optional<TimeMs>(ms)) << text;
  }
}

TEST(DomainRfc3339, RoundTripsAcrossCenturies) {
  // A stride that is not a multiple of a day, second or millisecond boundary.
  const TimeMs from = -62'167'219'200'000, to = 253'402'300'799'999;
  const TimeMs stride = 3'215'031'751'337;
  int n = 0;
  for (TimeMs t = from; t <= to && n < 10'000; t += stride / 97, ++n) {
    auto back = parse_rfc3339_ms(format_rfc3339_ms(t));
    ASSERT_TRUE(back) << format_rfc3339_ms(t);
    ASSERT_EQ(*back, t) << format_rfc3339_ms(t);
  }
  EXPECT_GT(n, 1000);
  // Every millisecond around the epoch and around a leap day.
  for (TimeMs base : {TimeMs{0}, TimeMs{951'782'400'000}, TimeMs{-58'017'600'000}})
    for (TimeMs t = base - 1500; t <= base + 1500; ++t)
      ASSERT_EQ(parse_rfc3339_ms(format_rfc3339_ms(t)), t);
}

TEST(DomainRfc3339, FormatsEveryInt64WithoutOverflow) {
  // A corrupt stored row can carry any time; formatting it must not be
  // undefined behaviour (the fuzzer found days * 86'400'000 overflowing).
  const TimeMs lo = std::numeric_limits<TimeMs>::min(), hi = std::numeric_limits<TimeMs>::max();
  for (TimeMs t : {lo, lo + 1, lo + 86'399'999, hi, hi - 1}) {
    const std::string text = format_rfc3339_ms(t);
    EXPECT_EQ(text.back(), 'Z') << t;
    EXPECT_EQ(parse_rfc3339_ms(text), std::nullopt) << text;  // outside 0000..9999
  }
  const std::string low = format_rfc3339_ms(lo), high = format_rfc3339_ms(hi);
  EXPECT_EQ(low.substr(low.size() - 14), "T16:47:04.192Z") << low;
  EXPECT_EQ(high.substr(high.size() - 14), "T07:12:55.807Z") << high;
}

TEST(DomainRfc3339, RejectsOtherSpellingsAndImpossibleDates) {
  for (const char* bad : {
           "2023-02-29T00:00:00.000Z",  // not a leap year
           "1900-02-29T00:00:00.000Z",  // not a leap year (century)
           "2100-02-29T00:00:00.000Z",      "2024-02-30T00:00:00.000Z",
           "2024-04-31T00:00:00.000Z",      "2024-06-31T00:00:00.000Z",
           "2024-13-01T00:00:00.000Z",      "2024-00-10T00:00:00.000Z",
           "2024-01-00T00:00:00.000Z",      "2024-01-32T00:00:00.000Z",
           "2024-01-01T24:00:00.000Z",      "2024-01-01T23:60:00.000Z",
           "2024-01-01T23:59:60.000Z",
           "2024-01-01T00:00:00Z",       // no milliseconds
           "2024-01-01T00:00:00.0000Z",  // too many digits
           "2024-01-01T00:00:00.000",    // no zone
           "2024-01-01T00:00:00.000+00:00", "2024-01-01t00:00:00.000Z",
           "2024-01-01T00:00:00.000z",      "2024-01-01 00:00:00.000Z",
           "2024-1-01T00:00:00.000Z",       "+2024-01-01T00:00:00.000Z",
           "2024-01-01T00:00:00.-00Z",      "",
       }) {
    EXPECT_FALSE(parse_rfc3339_ms(bad)) << "accepted " << bad;
  }
}

TEST(DomainEventType, NamesAndBytes) {
  const std::vector<std::pair<EventType, std::string>> all = {
      {EventType::kCreated, "created"},     {EventType::kStarted, "started"},
      {EventType::kHeartbeat, "heartbeat"}, {EventType::kSucceeded, "succeeded"},
      {EventType::kFailed, "failed"},       {EventType::kCancelRequested, "cancel_requested"},
      {EventType::kCancelled, "cancelled"},  {EventType::kRetryScheduled, "retry_scheduled"}};
  for (const auto& [type, name] : all) {
    EXPECT_EQ(event_type_name(type), name);
    EXPECT_EQ(parse_event_type(name), type);
    EXPECT_EQ(event_type_from_byte(static_cast<uint8_t>(type)), type);
  }
  // The stored byte values are part of the on-disk format.
  EXPECT_EQ(static_cast<int>(EventType::kCreated), 1);
  EXPECT_EQ(static_cast<int>(EventType::kCancelled), 7);
  EXPECT_EQ(static_cast<int>(EventType::kRetryScheduled), 8);
  for (int b : {0, 9, 99, 255}) EXPECT_FALSE(event_type_from_byte(static_cast<uint8_t>(b))) << b;
  EXPECT_FALSE(parse_event_type("Created"));
  EXPECT_FALSE(parse_event_type(""));
}

// A fixed history whose canonical JSON and chain hashes were computed with
// Python 3: json.dumps(e, sort_keys=True, separators=(",", ":"),
// ensure_ascii=False) and hashlib.sha256((prev + canonical).encode()).
struct Fixture {
  uint64_t seq;
  EventType type;
  TimeMs at_ms;
  const char* data_json;  // the input, as a client would send it
  std::string canonical;  // what Python prints
  const char* hash;
};

std::vector<Fixture> python_fixtures() {
  return {
      {1, EventType::kCreated, 1'795'802'400'123,
       R"({"type":"thumbnail","params":{"path":"/tmp/ünï😀.png","quote":"say \"hi\" \\ done",)"
       R"("ctl":"\u0001\t\n\u001f\u007f\b\f\r","big":1e15,"bigger":1234567890123456.5,)"
       R"("neg_big":-2.5e15,"f":0.42,"neg":-7,"huge":18446744073709551615,)"
       R"("list":[true,null,1.5,1e16,1e-5,0.0001],"sep":"\u2028/"},"heartbeat_timeout_s":120,)"
       R"("labels":{"team":"media","Zeta":"z","é":"e","a":"€"}})",
       std::string(R"({"at":"2026-11-27T18:00:00.123Z","data":{"heartbeat_timeout_s":120,)"
                   R"("labels":{"Zeta":"z","a":"€","team":"media","é":"e"},)"
                   R"("params":{"big":1000000000000000.0,"bigger":1234567890123456.5,)"
                   R"("ctl":"\u0001\t\n\u001f)") +
           "\x7f" +  // DEL is not escaped by json.dumps with ensure_ascii=False
           R"(\b\f\r","f":0.42,"huge":18446744073709551615,)"
           R"("list":[true,null,1.5,1e+16,1e-05,0.0001],"neg":-7,"neg_big":-2500000000000000.0,)"
           R"("path":"/tmp/ünï😀.png","quote":"say \"hi\" \\ done","sep":")" +
           "\u2028" +  // nor is LINE SEPARATOR
           R"(/"},"type":"thumbnail"},"job_id":"3f0c8a2e-5b1d-4c7e-9a6f-0123456789ab",)"
           R"("seq":1,"type":"created","version":1})",
       "19c3716be05eeedd0e4c358834f43b47c07f022986081d145a62012fe819d29c"},
      {2, EventType::kStarted, 1'795'802'400'200, R"({"worker":"host-1/4242"})",
       R"({"at":"2026-11-27T18:00:00.200Z","data":{"worker":"host-1/4242"},)"
       R"("job_id":"3f0c8a2e-5b1d-4c7e-9a6f-0123456789ab","seq":2,"type":"started","version":2})",
       "e3e56c8a1fb0bd5941ca6d273579485aa2aca2af882520f9d9165c7536c23d7d"},
      {3, EventType::kHeartbeat, 1'795'802'401'000,
       R"({"progress":{"details":{"pages":[1,2]},"fraction":0.5,"message":"页 42/100"}})",
       R"({"at":"2026-11-27T18:00:01.000Z","data":{"progress":{"details":{"pages":[1,2]},)"
       R"("fraction":0.5,"message":"页 42/100"}},"job_id":"3f0c8a2e-5b1d-4c7e-9a6f-0123456789ab",)"
       R"("seq":3,"type":"heartbeat","version":3})",
       "0918be0a748b7803e4fb32e4e2e4704d560fcce336d9f8a3b89440d9d8437de7"},
      {4, EventType::kFailed, 1'795'802'521'000,
       R"({"error":{"code":"heartbeat_timeout","details":null,"message":"no heartbeat within 120 s"}})",
       R"({"at":"2026-11-27T18:02:01.000Z","data":{"error":{"code":"heartbeat_timeout",)"
       R"("details":null,"message":"no heartbeat within 120 s"}},)"
       R"("job_id":"3f0c8a2e-5b1d-4c7e-9a6f-0123456789ab","seq":4,"type":"failed","version":4})",
       "d6347fe9c211537e1f324ba732f658ae57accb01f8332af1a164903731a5bb55"},
  };
}

Event fixture_event(const Fixture& f) {
  Event e;
  e.seq = f.seq;
  e.job_id = *JobId::parse(kCanonicalId);
  e.version = f.seq;
  e.type = f.type;
  e.at_ms = f.at_ms;
  e.data = json::parse(f.data_json);
  return e;
}

TEST(DomainCanonicalJson, MatchesPythonJsonDumpsByteForByte) {
  for (const auto& f : python_fixtures()) {
    SCOPED_TRACE(f.seq);
    Event e = fixture_event(f);
    EXPECT_EQ(canonical_event_json(e), f.canonical);
    EXPECT_EQ(
        canonical_event_json(e.seq, e.job_id, e.version, e.type, e.at_ms, canonical_dump(e.data)),
        f.canonical);
  }
}

TEST(DomainCanonicalJson, ChainHashesMatchPython) {
  std::string previous(kGenesisHash);
  for (const auto& f : python_fixtures()) {
    SCOPED_TRACE(f.seq);
    const std::string h = chain_hash(previous, canonical_event_json(fixture_event(f)));
    EXPECT_EQ(h, f.hash);
    previous = f.hash;  // keep later rows independent of an earlier failure
  }
}

TEST(DomainCanonicalJson, ApiEventJsonInsertsHashInKeyOrder) {
  const Fixture f = python_fixtures()[1];
  Event e = fixture_event(f);
  e.hash = f.hash;
  EXPECT_EQ(event_json_text(e),
            std::string(R"({"at":"2026-11-27T18:00:00.200Z","data":{"worker":"host-1/4242"},)") +
                R"("hash":")" + f.hash +
                R"(","job_id":"3f0c8a2e-5b1d-4c7e-9a6f-0123456789ab","seq":2,"type":"started",)"
                R"("version":2})");
  // And it parses back to the same members.
  json j = json::parse(event_json_text(e));
  EXPECT_EQ(j.at("hash"), f.hash);
  EXPECT_EQ(j.at("seq"), 2);
}

// Numbers: json.dumps prints float repr(); these strings come from Python.
TEST(DomainCanonicalJson, FloatsAsPythonPrintsThem) {
  const std::vector<std::pair<double, std::string>> cases = {
      {0.1, "0.1"},
      {0.2485859740334425, "0.2485859740334425"},  // nlohmann alone: 0.24858597403344251
      {1.0, "1.0"},
      {100.0, "100.0"},
      {-0.0, "-0.0"},
      {0.42, "0.42"},
      {0.0001, "0.0001"},
      {1e-5, "1e-05"},
      {2.5e-7, "2.5e-07"},
      {3.14159, "3.14159"},
      {999999999999999.9, "999999999999999.9"},
      {1e15, "1000000000000000.0"},
      {-1e15, "-1000000000000000.0"},
      {1.5e15, "1500000000000000.0"},
      {1234567890123456.0, "1234567890123456.0"},
      {1000000000000000.5, "1000000000000000.5"},
      {4503599627370497.0, "4503599627370497.0"},
      {9999999999999998.0, "9999999999999998.0"},
      {1e16, "1e+16"},
      {1e17, "1e+17"},
      {123456789012345680.0, "1.2345678901234568e+17"},
      {1e21, "1e+21"},
      {1e100, "1e+100"},
      {1.7976931348623157e308, "1.7976931348623157e+308"},
      {5e-324, "5e-324"},
  };
  for (const auto& [d, text] : cases) {
    EXPECT_EQ(canonical_dump(json(d)), text) << text;
    EXPECT_EQ(canonical_dump(json{{"v", {d}}}), R"({"v":[)" + text + "]}") << text;
  }
  EXPECT_EQ(canonical_dump(json(-7)), "-7");
  EXPECT_EQ(canonical_dump(json(18446744073709551615ULL)), "18446744073709551615");
  EXPECT_EQ(canonical_dump(json(-9223372036854775807LL - 1)), "-9223372036854775808");
}

// Python's own rendering of every double in `values`, one per entry: the
// test writes their bits to a file and python3 prints json.dumps of each.
std::vector<std::string> python_json_dumps(const std::vector<double>& values) {
  testing::TempDir dir;
  {
    std::ofstream in(dir.sub("bits"));
    for (double d : values) {
      uint64_t bits;
      std::memcpy(&bits, &d, sizeof bits);
      char hex[17];
      std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(bits));
      in << hex << '\n';
    }
  }
  const std::string cmd =
      "python3 -c 'import json,struct,sys\n"
      "out=sys.stdout\n"
      "for line in open(sys.argv[1]):\n"
      "    out.write(json.dumps(struct.unpack(\">d\", bytes.fromhex(line.strip()))[0])+\"\\n\")' " +
      dir.sub("bits") + " > " + dir.sub("python");
  EXPECT_EQ(std::system(cmd.c_str()), 0) << cmd;
  return testing::lines_of(testing::read_file(dir.sub("python")));
}

// Every double the sample holds prints byte for byte as Python prints it:
// the issue-12 case (nlohmann printed 0.24858597403344251), random fractions
// like heartbeats send, random bit patterns over the whole range, random
// decimals, and the edges of Python's fixed/exponent switch.
TEST(DomainCanonicalJson, EveryDoubleAsPythonPrintsIt) {
  std::vector<double> values = {0.2485859740334425, 0.0,    -0.0,   1e-07,  1e+16, 1e15,
                                1e-4,               1e-5,   1e16,   -1e16,  1e308, 5e-324,
                                2.2250738585072014e-308,    1.7976931348623157e308,
                                9007199254740993.0, 0.1 + 0.2, 1.0 / 3, 2.0 / 3, 100.0};
  for (int e = -325; e <= 308; ++e) {  // every power of ten and its neighbours
    const double p = std::strtod(("1e" + std::to_string(e)).c_str(), nullptr);
    for (double d : {p, std::nextafter(p, 0.0), std::nextafter(p, INFINITY), -p}) values.push_back(d);
  }
  std::mt19937_64 rng(20261206);
  std::uniform_real_distribution<double> fraction(0.0, 1.0);
  for (int i = 0; i < 100'000; ++i) values.push_back(fraction(rng));
  for (int i = 0; i < 100'000; ++i) {
    uint64_t bits = rng();
    double d;
    std::memcpy(&d, &bits, sizeof d);
    if (std::isfinite(d)) values.push_back(d);
  }
  std::uniform_int_distribution<int> exponent(-30, 30), digits(1, 17);
  for (int i = 0; i < 50'000; ++i) {
    std::string text = "0.";
    for (int k = digits(rng); k > 0; --k) text.push_back(static_cast<char>('0' + rng() % 10));
    values.push_back(std::strtod((text + "e" + std::to_string(exponent(rng))).c_str(), nullptr));
  }

  const std::vector<std::string> python = python_json_dumps(values);
  ASSERT_EQ(python.size(), values.size());
  size_t differing = 0;
  for (size_t i = 0; i < values.size(); ++i) {
    const std::string mine = canonical_dump(json(values[i]));
    if (mine != python[i] && ++differing <= 10)
      ADD_FAILURE() << "python prints " << python[i] << ", canonical_dump " << mine;
    // Inside a document too, where most numbers are.
    if (i % 97 == 0) {
      EXPECT_EQ(canonical_dump(json{{"progress", {{"fraction", values[i]}, {"n", 3}}}}),
                R"({"progress":{"fraction":)" + python[i] + R"(,"n":3}})");
    }
  }
  EXPECT_EQ(differing, 0u) << "of " << values.size();
}

TEST(DomainCanonicalJson, KeysSortedByCodePointAtEveryLevel) {
  json j = json::parse(
      R"({"b":{"z":1,"a":{"y":2,"x":[{"d":1,"c":2}]}},"a":0,"é":1,"z":2,"Z":3,"😀":4,"€":5})");
  // U+00E9 < U+20AC < U+1F600; uppercase before lowercase.
  EXPECT_EQ(canonical_dump(j),
            R"({"Z":3,"a":0,"b":{"a":{"x":[{"c":2,"d":1}],"y":2},"z":1},"z":2,"é":1,"€":5,"😀":4})");
}

TEST(DomainCanonicalJson, InvalidUtf8Throws) {
  json j = {{"s", std::string("\xff\xfe")}};
  EXPECT_THROW(canonical_dump(j), json::type_error);
}


TEST(DomainClock, ParsesTheRfc3339FormsClientsSend) {
  const TimeMs t = *parse_rfc3339_ms("2026-12-06T18:00:00.000Z");
  EXPECT_EQ(parse_rfc3339("2026-12-06T18:00:00Z"), t);
  EXPECT_EQ(parse_rfc3339("2026-12-06t18:00:00z"), t);
  EXPECT_EQ(parse_rfc3339("2026-12-06T18:00:00.000Z"), t);
  EXPECT_EQ(parse_rfc3339("2026-12-06T18:00:00.5Z"), t + 500);
  EXPECT_EQ(parse_rfc3339("2026-12-06T18:00:00.123456789Z"), t + 123);
  EXPECT_EQ(parse_rfc3339("2026-12-06T19:30:00+01:30"), t);
  EXPECT_EQ(parse_rfc3339("2026-12-06T16:00:00-02:00"), t);
  for (const char* bad : {"2026-12-06", "2026-12-06T18:00:00", "2026-12-06T18:00:00.Z",
                          "2026-12-06T18:00:00+0100", "2026-02-30T18:00:00Z", "2026-12-06T24:00:00Z",
                          "2026-12-06T18:00:00Zjunk", "tomorrow"})
    EXPECT_FALSE(parse_rfc3339(bad)) << bad;
}
}  // namespace
}  // namespace jobstate
