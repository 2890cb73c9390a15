#include "domain/clock.h"

#include <chrono>
#include <cstdio>

namespace jobstate {

namespace {
// Howard Hinnant's days_from_civil / civil_from_days (public domain algorithms).
int64_t days_from_civil(int64_t y, unsigned m, unsigned d) {
  y -= m <= 2;
  const int64_t era = (y >= 0 ? y : y - 399) / 400;
  const unsigned yoe = static_cast<unsigned>(y - era * 400);
  const unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + static_cast<int64_t>(doe) - 719468;
}

void civil_from_days(int64_t z, int64_t& y, unsigned& m, unsigned& d) {
  z += 719468;
  const int64_t era = (z >= 0 ? z : z - 146096) / 146097;
  const unsigned doe = static_cast<unsigned>(z - era * 146097);
  const unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  y = static_cast<int64_t>(yoe) + era * 400;
  const unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  const unsigned mp = (5 * doy + 2) / 153;
  d = doy - (153 * mp + 2) / 5 + 1;
  m = mp < 10 ? mp + 3 : mp - 9;
  y += m <= 2;
}

int64_t floor_div(int64_t a, int64_t b) {
  return a / b - ((a % b != 0) && ((a < 0) != (b < 0)));
}

unsigned days_in_month(unsigned y, unsigned m) {
  static constexpr unsigned kDays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  const bool leap = y % 4 == 0 && (y % 100 != 0 || y % 400 == 0);
  return m == 2 && leap ? 29 : kDays[m - 1];
}

bool digits(std::string_view s, size_t pos, size_t n, unsigned& out) {
  out = 0;
  for (size_t i = 0; i < n; ++i) {
    char c = s[pos + i];
    if (c < '0' || c > '9') return false;
    out = out * 10 + static_cast<unsigned>(c - '0');
  }
  return true;
}
}  // namespace

TimeMs SystemClock::now_ms() const {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

void append_rfc3339_ms(std::string& out, TimeMs t) {
  const int64_t days = floor_div(t, 86'400'000);
  // Not t - days * 86'400'000: near INT64_MIN that product overflows.
  int64_t ms_of_day = t % 86'400'000;
  if (ms_of_day < 0) ms_of_day += 86'400'000;
  int64_t y;
  unsigned m, d;
  civil_from_days(days, y, m, d);
  char buf[64];
  if (y < 0 || y > 9999) {
    const int n = std::snprintf(
        buf, sizeof buf, "%04lld-%02u-%02uT%02lld:%02lld:%02lld.%03lldZ", static_cast<long long>(y),
        m, d, static_cast<long long>(ms_of_day / 3'600'000),
        static_cast<long long>(ms_of_day / 60'000 % 60),
        static_cast<long long>(ms_of_day / 1000 % 60), static_cast<long long>(ms_of_day % 1000));
    out.append(buf, static_cast<size_t>(n));
    return;
  }
  // The common case without snprintf: every event's hashed JSON and every
  // status row has some.
  auto put = [](char* at, int64_t v, int width) {
    for (int i = width - 1; i >= 0; --i, v /= 10) at[i] = static_cast<char>('0' + v % 10);
  };
  put(buf, y, 4);
  buf[4] = '-';
  put(buf + 5, m, 2);
  buf[7] = '-';
  put(buf + 8, d, 2);
  buf[10] = 'T';
  put(buf + 11, ms_of_day / 3'600'000, 2);
  buf[13] = ':';
  put(buf + 14, ms_of_day / 60'000 % 60, 2);
  buf[16] = ':';
  put(buf + 17, ms_of_day / 1000 % 60, 2);
  buf[19] = '.';
  put(buf + 20, ms_of_day % 1000, 3);
  buf[23] = 'Z';
  out.append(buf, 24);
}

std::string format_rfc3339_ms(TimeMs t) {
  std::string out;
  append_rfc3339_ms(out, t);
  return out;
}

std::optional<TimeMs> parse_rfc3339_ms(std::string_view s) {
  if (s.size() != 24 || s[4] != '-' || s[7] != '-' || s[10] != 'T' || s[13] != ':' ||
      s[16] != ':' || s[19] != '.' || s[23] != 'Z')
    return std::nullopt;
  unsigned y, mo, d, h, mi, sec, ms;
  if (!digits(s, 0, 4, y) || !digits(s, 5, 2, mo) || !digits(s, 8, 2, d) || !digits(s, 11, 2, h) ||
      !digits(s, 14, 2, mi) || !digits(s, 17, 2, sec) || !digits(s, 20, 3, ms))
    return std::nullopt;
  if (mo < 1 || mo > 12 || d < 1 || d > days_in_month(y, mo) || h > 23 || mi > 59 || sec > 59)
    return std::nullopt;  // "2023-02-29" would otherwise silently become March 1st
  int64_t days = days_from_civil(y, mo, d);
  return days * 86'400'000 + h * 3'600'000LL + mi * 60'000LL + sec * 1000LL + ms;
}

std::optional<TimeMs> parse_rfc3339(std::string_view s) {
  if (s.size() < 20 || s[4] != '-' || s[7] != '-' || (s[10] != 'T' && s[10] != 't') ||
      s[13] != ':' || s[16] != ':')
    return std::nullopt;
  unsigned y, mo, d, h, mi, sec;
  if (!digits(s, 0, 4, y) || !digits(s, 5, 2, mo) || !digits(s, 8, 2, d) || !digits(s, 11, 2, h) ||
      !digits(s, 14, 2, mi) || !digits(s, 17, 2, sec))
    return std::nullopt;
  if (mo < 1 || mo > 12 || d < 1 || d > days_in_month(y, mo) || h > 23 || mi > 59 || sec > 59)
    return std::nullopt;
  size_t i = 19;
  int64_t ms = 0;
  if (s[i] == '.') {
    size_t n = 0;
    for (++i; i < s.size() && s[i] >= '0' && s[i] <= '9'; ++i, ++n)
      if (n < 3) ms = ms * 10 + (s[i] - '0');
    if (n == 0) return std::nullopt;
    for (; n < 3; ++n) ms *= 10;
  }
  int64_t offset_min = 0;
  const std::string_view zone = s.substr(i);
  if (zone == "Z" || zone == "z") {
  } else if (zone.size() == 6 && (zone[0] == '+' || zone[0] == '-') && zone[3] == ':') {
    unsigned oh, om;
    if (!digits(zone, 1, 2, oh) || !digits(zone, 4, 2, om) || oh > 23 || om > 59)
      return std::nullopt;
    offset_min = (zone[0] == '+' ? 1 : -1) * static_cast<int64_t>(oh * 60 + om);
  } else {
    return std::nullopt;
  }
  const int64_t days = days_from_civil(y, mo, d);
  return days * 86'400'000 + h * 3'600'000LL + mi * 60'000LL + sec * 1000LL + ms -
         offset_min * 60'000;
}

}  // namespace jobstate
