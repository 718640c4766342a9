//! Sizes, durations and timestamps written the way the docker CLI writes them.
//!
//! Times are `i64` nanoseconds since the Unix epoch (UTC), which covers
//! 1677-09-21 to 2262-04-11. Nothing here reads the clock: callers pass `now`,
//! so every function is deterministic.

use std::fmt;

pub const NANOS_PER_SECOND: i64 = 1_000_000_000;
const NANOS_PER_MINUTE: i64 = 60 * NANOS_PER_SECOND;
const NANOS_PER_HOUR: i64 = 60 * NANOS_PER_MINUTE;
const SECONDS_PER_DAY: i64 = 86_400;

/// 2000-01-01T00:00:00Z in Unix seconds. docker/cli shows `N/A` instead of an
/// age for history entries created at or before it (reproducible builds stamp
/// layers with the epoch).
pub const HUMAN_EPOCH_SECONDS: i64 = 946_684_800;

/// Decimal units, as go-units' `decimapAbbrs`.
const DECIMAL_UNITS: [&str; 9] = ["B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB"];

/// A size as `docker history`, `docker images` and `docker ps -s` print it:
/// go-units' `HumanSizeWithPrecision(size, 3)`, e.g. `0B`, `33B`, `8.46MB`,
/// `69.2MB`, `126MB`, and (faithfully) `1e+03kB` for 999 999 bytes.
pub fn human_size(bytes: u64) -> String {
    human_size_with_precision(bytes as f64, 3)
}

/// go-units' `HumanSizeWithPrecision`: divide by 1000 while the value is at
/// least 1000, then format with Go's `%.*g`.
pub fn human_size_with_precision(size: f64, precision: usize) -> String {
    let mut size = size;
    let mut unit = 0;
    while size >= 1000.0 && unit < DECIMAL_UNITS.len() - 1 {
        size /= 1000.0;
        unit += 1;
    }
    format!("{}{}", go_format_g(size, precision), DECIMAL_UNITS[unit])
}

/// A time as docker's `--since`, `--until` and `until=` filters take it:
/// an RFC 3339 time (or a date), Unix seconds with an optional fraction,
/// or a Go duration back from `now`; in ns since the Unix epoch.
pub fn time_bound(value: &str, now: i64) -> anyhow::Result<i64> {
    if let Some(back) = parse_go_duration(value) {
        return Ok(now - back);
    }
    let (secs, fraction) = value.split_once('.').unwrap_or((value, ""));
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if !secs.is_empty() && digits(secs) && digits(fraction) {
        let secs: i64 = secs
            .parse()
            .map_err(|_| anyhow::anyhow!("seconds out of range: {value}"))?;
        // Nanoseconds: the fraction's first nine digits.
        let nanos: i64 = format!("{fraction:0<9}")[..9].parse().unwrap_or(0);
        return Ok(secs.saturating_mul(1_000_000_000).saturating_add(nanos));
    }
    let whole = if value.len() == 10 {
        format!("{value}T00:00:00Z")
    } else {
        value.to_string()
    };
    parse_rfc3339(&whole).map_err(|_| {
        anyhow::anyhow!(
            "invalid time {value:?}: give an RFC 3339 time, Unix seconds or a duration like 42m"
        )
    })
}

/// Go's `time.Duration.String()`: `30s`, `1.5s`, `500ms`, `1m30s`,
/// `2h0m0s`.
pub fn format_go_duration(d: std::time::Duration) -> String {
    let ns = d.as_nanos();
    let decimal = |value: u128, scale: u128| {
        let text = format!(
            "{}.{:0width$}",
            value / scale,
            value % scale,
            width = scale.ilog10() as usize
        );
        text.trim_end_matches('0').trim_end_matches('.').to_string()
    };
    match ns {
        0 => "0s".to_string(),
        1..=999 => format!("{ns}ns"),
        1_000..=999_999 => format!("{}µs", decimal(ns, 1_000)),
        1_000_000..=999_999_999 => format!("{}ms", decimal(ns, 1_000_000)),
        _ => {
            let (hours, rest) = (ns / 3_600_000_000_000, ns % 3_600_000_000_000);
            let (minutes, rest) = (rest / 60_000_000_000, rest % 60_000_000_000);
            let seconds = format!("{}s", decimal(rest, 1_000_000_000));
            match (hours, minutes) {
                (0, 0) => seconds,
                (0, m) => format!("{m}m{seconds}"),
                (h, m) => format!("{h}h{m}m{seconds}"),
            }
        }
    }
}

/// go-units' `BytesSize`, as `docker stats` shows memory: binary units,
/// four significant digits (`2.168MiB`, `23.44GiB`, `0B`).
pub fn bytes_size(bytes: u64) -> String {
    const BINARY_UNITS: [&str; 9] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB", "ZiB", "YiB"];
    let mut size = bytes as f64;
    let mut unit = 0;
    while size >= 1024.0 && unit < BINARY_UNITS.len() - 1 {
        size /= 1024.0;
        unit += 1;
    }
    format!("{}{}", go_format_g(size, 4), BINARY_UNITS[unit])
}

/// Go's `fmt.Sprintf("%.*g", precision, value)` for finite values.
///
/// Go rounds to `precision` significant digits, drops trailing zeros, and
/// switches to exponent form when the decimal exponent is below -4 or at least
/// the precision (after the trailing zeros are dropped, see strconv's `%g`).
fn go_format_g(value: f64, precision: usize) -> String {
    let precision = precision.max(1);
    if value == 0.0 {
        return if value.is_sign_negative() { "-0" } else { "0" }.to_string();
    }
    // Rust's `{:.*e}` is correctly rounded, like Go's ryu fixed-precision path.
    let scientific = format!("{:.*e}", precision - 1, value);
    let (mantissa, exponent) = scientific
        .split_once('e')
        .expect("`{:e}` output always has an exponent");
    let exponent: i32 = exponent.parse().expect("`{:e}` exponent is an integer");
    let negative = mantissa.starts_with('-');
    let mut digits: Vec<u8> = mantissa.bytes().filter(u8::is_ascii_digit).collect();
    while digits.len() > 1 && digits.last() == Some(&b'0') {
        digits.pop();
    }
    let digit_count = digits.len() as i32;
    // Position of the decimal point relative to the digits (strconv's `dp`).
    let point = exponent + 1;

    let mut exponent_precision = precision as i32;
    if exponent_precision > digit_count && digit_count >= point {
        exponent_precision = digit_count;
    }
    let mut out = String::new();
    if negative {
        out.push('-');
    }
    if exponent < -4 || exponent >= exponent_precision {
        out.push(char::from(digits[0]));
        if digits.len() > 1 {
            out.push('.');
            out.extend(digits[1..].iter().map(|&d| char::from(d)));
        }
        out.push('e');
        out.push(if exponent < 0 { '-' } else { '+' });
        out.push_str(&format!("{:02}", exponent.abs()));
        return out;
    }
    // Fixed notation: as many decimals as there are digits after the point.
    if point <= 0 {
        out.push('0');
    } else {
        for i in 0..point {
            out.push(digits.get(i as usize).map_or('0', |&d| char::from(d)));
        }
    }
    let decimals = (digit_count - point).max(0);
    if decimals > 0 {
        out.push('.');
        for i in point..point + decimals {
            out.push(if i < 0 {
                '0'
            } else {
                char::from(digits[i as usize])
            });
        }
    }
    out
}

/// Go's `time.Duration.Seconds()` (and friends) truncated by `int(...)`:
/// float division, so large values round exactly as Go's do.
fn go_whole_units(duration: i64, unit: i64) -> i64 {
    let whole = duration / unit;
    let rest = duration % unit;
    (whole as f64 + rest as f64 / unit as f64) as i64
}

/// Go's `time.Duration.Round(time.Hour)`, for non-negative durations.
fn round_to_hour(duration: i64) -> i64 {
    let rest = duration % NANOS_PER_HOUR;
    if (rest as u64) + (rest as u64) < NANOS_PER_HOUR as u64 {
        duration - rest
    } else {
        duration
            .checked_add(NANOS_PER_HOUR - rest)
            .unwrap_or(i64::MAX)
    }
}

/// go-units' `HumanDuration`: `Less than a second`, `1 second`, `N seconds`,
/// `About a minute`, `N minutes`, `About an hour`, `N hours` (under 48),
/// `N days` (under two weeks), `N weeks` (under 60 days), `N months` (under
/// two years of 365 days), `N years`. Negative durations read as `Less than a
/// second`.
pub fn human_duration(nanos: i64) -> String {
    let seconds = go_whole_units(nanos, NANOS_PER_SECOND);
    if seconds < 1 {
        return "Less than a second".to_string();
    }
    if seconds == 1 {
        return "1 second".to_string();
    }
    if seconds < 60 {
        return format!("{seconds} seconds");
    }
    let minutes = go_whole_units(nanos, NANOS_PER_MINUTE);
    if minutes == 1 {
        return "About a minute".to_string();
    }
    if minutes < 60 {
        return format!("{minutes} minutes");
    }
    let hours = round_to_hour(nanos) / NANOS_PER_HOUR;
    if hours == 1 {
        return "About an hour".to_string();
    }
    if hours < 48 {
        return format!("{hours} hours");
    }
    if hours < 24 * 7 * 2 {
        return format!("{} days", hours / 24);
    }
    if hours < 24 * 30 * 2 {
        return format!("{} weeks", hours / 24 / 7);
    }
    if hours < 24 * 365 * 2 {
        return format!("{} months", hours / 24 / 30);
    }
    format!("{} years", go_whole_units(nanos, NANOS_PER_HOUR) / 24 / 365)
}

/// `<duration> ago` between `then` and `now` (Go's `Sub` saturates, so does
/// this).
pub fn time_ago(then: i64, now: i64) -> String {
    format!("{} ago", human_duration(now.saturating_sub(then)))
}

/// Floor to whole seconds, as Go's `Time.Unix()` does (the docker API carries
/// creation times as Unix seconds, so the CLI measures ages from them).
pub fn unix_seconds(nanos: i64) -> i64 {
    nanos.div_euclid(NANOS_PER_SECOND)
}

/// The CREATED column of `docker history`: `N/A` when the time is unknown or
/// at/before 2000-01-01, else the age, measured from the whole second.
pub fn history_created_since(created: Option<i64>, now: i64) -> String {
    match created {
        Some(created) if unix_seconds(created) > HUMAN_EPOCH_SECONDS => {
            time_ago(unix_seconds(created) * NANOS_PER_SECOND, now)
        }
        _ => "N/A".to_string(),
    }
}

/// The CREATED column of `docker images` and `docker ps`: the age measured
/// from the whole second; `N/A` only when the time is unknown.
pub fn created_since(created: Option<i64>, now: i64) -> String {
    match created {
        Some(created) => time_ago(unix_seconds(created) * NANOS_PER_SECOND, now),
        None => "N/A".to_string(),
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
/// `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let shifted_month = (month + 9) % 12;
    let day_of_year = (153 * shifted_month + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The inverse of [`days_from_civil`]: (year, month, day).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let days = days + 719_468;
    let era = days.div_euclid(146_097);
    let day_of_era = days - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * shifted_month + 2) / 5 + 1;
    let month = if shifted_month < 10 {
        shifted_month + 3
    } else {
        shifted_month - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

fn is_leap_year(year: i64) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if is_leap_year(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

fn format_utc(nanos: i64, with_fraction: bool) -> String {
    let seconds = nanos.div_euclid(NANOS_PER_SECOND);
    let fraction = nanos.rem_euclid(NANOS_PER_SECOND);
    let (year, month, day) = civil_from_days(seconds.div_euclid(SECONDS_PER_DAY));
    let second_of_day = seconds.rem_euclid(SECONDS_PER_DAY);
    let mut out = format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}",
        second_of_day / 3600,
        second_of_day / 60 % 60,
        second_of_day % 60
    );
    if with_fraction && fraction != 0 {
        let digits = format!("{fraction:09}");
        out.push('.');
        out.push_str(digits.trim_end_matches('0'));
    }
    out.push('Z');
    out
}

/// Go's `time.RFC3339Nano` in UTC: `2024-05-01T12:00:00.5Z`, trailing zeros of
/// the fraction dropped and no fraction at all for whole seconds. This is the
/// form OCI image configs carry in `created`.
pub fn format_rfc3339_nano(nanos: i64) -> String {
    format_utc(nanos, true)
}

/// Go's `time.RFC3339` in UTC (whole seconds): `docker history -H=false`'s
/// CREATED AT, which the API rounds down to the second.
pub fn format_rfc3339(nanos: i64) -> String {
    format_utc(unix_seconds(nanos) * NANOS_PER_SECOND, false)
}

/// Go's `RFC3339NanoFixed` in UTC, nine digits of fraction always:
/// `docker logs -t`'s timestamps, which line up.
pub fn format_rfc3339_nano_fixed(nanos: i64) -> String {
    let whole = format_rfc3339(nanos);
    let fraction = nanos.rem_euclid(NANOS_PER_SECOND);
    format!("{}.{fraction:09}Z", whole.trim_end_matches('Z'))
}

/// Go's `time.ParseDuration`, in nanoseconds.
pub fn parse_go_duration(text: &str) -> Option<i64> {
    let (negative, mut rest) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    if rest == "0" {
        return Some(0);
    }
    if rest.is_empty() {
        return None;
    }
    let mut total: f64 = 0.0;
    while !rest.is_empty() {
        let number_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let number = &rest[..number_end];
        if number.is_empty() || number == "." {
            return None;
        }
        let value: f64 = number.parse().ok()?;
        rest = &rest[number_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_end] {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return None,
        };
        rest = &rest[unit_end..];
        total += value * scale;
    }
    if total > i64::MAX as f64 {
        return None;
    }
    let nanos = total.round() as i64;
    Some(if negative { -nanos } else { nanos })
}

/// Why an RFC 3339 timestamp was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TimeParseError {
    pub input: String,
    pub reason: &'static str,
}

impl fmt::Display for TimeParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "cannot parse {:?} as an RFC 3339 time: {}",
            self.input, self.reason
        )
    }
}

impl std::error::Error for TimeParseError {}

/// Parses what Go's `time.Parse(time.RFC3339Nano, s)` accepts:
/// `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)`; fractions beyond nanoseconds
/// are truncated, offsets are folded into UTC. Times outside the `i64`
/// nanosecond range (before 1677 or after 2262, e.g. Go's zero time
/// `0001-01-01T00:00:00Z`) are refused.
pub fn parse_rfc3339(input: &str) -> Result<i64, TimeParseError> {
    let fail = |reason| TimeParseError {
        input: input.to_string(),
        reason,
    };
    let bytes = input.as_bytes();
    let number = |from: usize, len: usize| -> Result<i64, TimeParseError> {
        let field = bytes
            .get(from..from + len)
            .ok_or_else(|| fail("too short"))?;
        if !field.iter().all(u8::is_ascii_digit) {
            return Err(fail("expected digits"));
        }
        Ok(field
            .iter()
            .fold(0, |acc, &d| acc * 10 + i64::from(d - b'0')))
    };
    let expect = |at: usize, what: u8| -> Result<(), TimeParseError> {
        if bytes.get(at) == Some(&what) {
            Ok(())
        } else {
            Err(fail("malformed date or time"))
        }
    };
    let year = number(0, 4)?;
    expect(4, b'-')?;
    let month = number(5, 2)?;
    expect(7, b'-')?;
    let day = number(8, 2)?;
    expect(10, b'T')?;
    let hour = number(11, 2)?;
    expect(13, b':')?;
    let minute = number(14, 2)?;
    expect(16, b':')?;
    let second = number(17, 2)?;
    if !(1..=12).contains(&month) {
        return Err(fail("month out of range"));
    }
    if day < 1 || day > days_in_month(year, month) {
        return Err(fail("day out of range"));
    }
    if hour > 23 || minute > 59 || second > 59 {
        return Err(fail("time of day out of range"));
    }

    let mut at = 19;
    let mut fraction = 0i64;
    if matches!(bytes.get(at), Some(b'.') | Some(b',')) {
        at += 1;
        let start = at;
        while bytes.get(at).is_some_and(u8::is_ascii_digit) {
            at += 1;
        }
        if at == start {
            return Err(fail("empty fraction of a second"));
        }
        let digits = &bytes[start..at.min(start + 9)];
        fraction = digits
            .iter()
            .fold(0, |acc, &d| acc * 10 + i64::from(d - b'0'));
        fraction *= 10i64.pow(9 - digits.len() as u32);
    }

    let offset_seconds = match bytes.get(at) {
        Some(b'Z') if at + 1 == bytes.len() => 0,
        Some(&sign @ (b'+' | b'-')) if at + 6 == bytes.len() => {
            let offset_hour = number(at + 1, 2)?;
            expect(at + 3, b':')?;
            let offset_minute = number(at + 4, 2)?;
            if offset_hour > 23 || offset_minute > 59 {
                return Err(fail("time zone offset out of range"));
            }
            let offset = offset_hour * 3600 + offset_minute * 60;
            if sign == b'-' {
                -offset
            } else {
                offset
            }
        }
        _ => return Err(fail("missing or malformed time zone")),
    };

    let seconds =
        days_from_civil(year, month, day) * SECONDS_PER_DAY + hour * 3600 + minute * 60 + second
            - offset_seconds;
    seconds
        .checked_mul(NANOS_PER_SECOND)
        .and_then(|n| n.checked_add(fraction))
        .ok_or_else(|| fail("outside the representable range (1677 to 2262)"))
}

/// docker's RAMInBytes, for the flag `flag`: a number (a fraction
/// allowed) and an optional unit b, k, m, g, t or p (any case, binary
/// multiples), optionally followed by `b`/`ib` as in `512mb` or `1GiB`.
pub fn parse_size(value: &str, flag: &str) -> anyhow::Result<i64> {
    let bad = || {
        anyhow::anyhow!("invalid argument \"{value}\" for \"{flag}\" flag: invalid size: '{value}'")
    };
    let lower = value.trim().to_ascii_lowercase();
    let digits_end = lower
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(lower.len());
    let (number, unit) = lower.split_at(digits_end);
    let number: f64 = number.parse().map_err(|_| bad())?;
    let unit = unit.trim_start();
    let unit = unit
        .strip_suffix("ib")
        .or_else(|| unit.strip_suffix('b').filter(|u| !u.is_empty()))
        .unwrap_or(unit);
    let shift = match unit {
        "" | "b" => 0,
        "k" => 10,
        "m" => 20,
        "g" => 30,
        "t" => 40,
        "p" => 50,
        _ => return Err(bad()),
    };
    let bytes = number * (1u64 << shift) as f64;
    if !bytes.is_finite() || bytes >= i64::MAX as f64 {
        return Err(bad());
    }
    Ok(bytes as i64)
}

#[cfg(test)]
mod tests {

    #[test]
    fn durations_print_as_go_prints_them() {
        let d = std::time::Duration::from_millis;
        assert_eq!(format_go_duration(d(30_000)), "30s");
        assert_eq!(format_go_duration(d(1_500)), "1.5s");
        assert_eq!(format_go_duration(d(500)), "500ms");
        assert_eq!(format_go_duration(d(90_000)), "1m30s");
        assert_eq!(format_go_duration(d(7_200_000)), "2h0m0s");
        assert_eq!(format_go_duration(d(0)), "0s");
    }

    #[test]
    fn bytes_size_is_go_units_binary_form() {
        assert_eq!(bytes_size(0), "0B");
        assert_eq!(bytes_size(1023), "1023B");
        assert_eq!(bytes_size(2_273_280), "2.168MiB");
        assert_eq!(bytes_size(25_168_416_768), "23.44GiB");
    }
    use super::*;

    #[test]
    fn go_durations_parse_like_time_parse_duration() {
        assert_eq!(parse_go_duration("30s"), Some(30_000_000_000));
        assert_eq!(parse_go_duration("1h2m3.5s"), Some(3_723_500_000_000));
        assert_eq!(parse_go_duration("250ms"), Some(250_000_000));
        assert_eq!(parse_go_duration("0"), Some(0));
        assert_eq!(parse_go_duration("5"), None);
        assert_eq!(parse_go_duration("1d"), None);
        assert_eq!(parse_go_duration(""), None);
    }

    #[test]
    fn fixed_nanos_keep_nine_digits() {
        assert_eq!(
            format_rfc3339_nano_fixed(1_500_000_000),
            "1970-01-01T00:00:01.500000000Z"
        );
        assert_eq!(
            format_rfc3339_nano_fixed(0),
            "1970-01-01T00:00:00.000000000Z"
        );
    }

    const SECOND: i64 = NANOS_PER_SECOND;
    const MINUTE: i64 = NANOS_PER_MINUTE;
    const HOUR: i64 = NANOS_PER_HOUR;
    const DAY: i64 = 24 * HOUR;
    const WEEK: i64 = 7 * DAY;
    const MONTH: i64 = 30 * DAY;
    const YEAR: i64 = 365 * DAY;

    #[test]
    fn human_size_of_zero_is_0b() {
        assert_eq!(human_size(0), "0B");
    }

    #[test]
    fn human_size_keeps_small_byte_counts_whole() {
        assert_eq!(human_size(1), "1B");
        assert_eq!(human_size(33), "33B");
        assert_eq!(human_size(100), "100B");
        assert_eq!(human_size(999), "999B");
    }

    #[test]
    fn human_size_switches_to_kilobytes_at_1000() {
        assert_eq!(human_size(1000), "1kB");
        assert_eq!(human_size(1500), "1.5kB");
        assert_eq!(human_size(10_240), "10.2kB");
    }

    #[test]
    fn human_size_matches_the_walkthrough_values() {
        assert_eq!(human_size(8_460_000), "8.46MB");
        assert_eq!(human_size(69_200_000), "69.2MB");
        assert_eq!(human_size(126_000_000), "126MB");
        assert_eq!(human_size(69_214_422), "69.2MB");
        assert_eq!(human_size(125_987_654), "126MB");
    }

    #[test]
    fn human_size_rounds_to_three_significant_digits() {
        assert_eq!(human_size(8_456_789), "8.46MB");
        assert_eq!(human_size(1_500_000_000), "1.5GB");
        assert_eq!(human_size(2_000_000_000_000), "2TB");
    }

    #[test]
    fn human_size_reproduces_gos_exponent_form_when_rounding_reaches_1000() {
        // 999.999 kB rounds to 1000, which %.3g writes as 1e+03.
        assert_eq!(human_size(999_999), "1e+03kB");
        assert_eq!(human_size(999_600_000), "1e+03MB");
    }

    #[test]
    fn human_size_rounds_exact_halves_to_even_like_go() {
        assert_eq!(human_size(1_125_000), "1.12MB");
        assert_eq!(human_size(1_135_000), "1.14MB");
    }

    #[test]
    fn go_g_format_uses_exponent_for_tiny_values() {
        assert_eq!(go_format_g(0.0001, 3), "0.0001");
        assert_eq!(go_format_g(0.00001234, 3), "1.23e-05");
        assert_eq!(go_format_g(0.5, 3), "0.5");
    }

    #[test]
    fn human_duration_under_a_second_is_less_than_a_second() {
        assert_eq!(human_duration(0), "Less than a second");
        assert_eq!(human_duration(450_000_000), "Less than a second");
        assert_eq!(human_duration(SECOND - 1), "Less than a second");
    }

    #[test]
    fn human_duration_of_a_negative_span_is_less_than_a_second() {
        assert_eq!(human_duration(-5 * SECOND), "Less than a second");
    }

    #[test]
    fn human_duration_counts_seconds_below_a_minute() {
        assert_eq!(human_duration(SECOND), "1 second");
        assert_eq!(human_duration(2 * SECOND - 1), "1 second");
        assert_eq!(human_duration(2 * SECOND), "2 seconds");
        assert_eq!(human_duration(59 * SECOND + 999_999_999), "59 seconds");
    }

    #[test]
    fn human_duration_says_about_a_minute_for_the_whole_second_minute() {
        assert_eq!(human_duration(MINUTE), "About a minute");
        assert_eq!(human_duration(2 * MINUTE - 1), "About a minute");
    }

    #[test]
    fn human_duration_counts_minutes_below_an_hour() {
        assert_eq!(human_duration(2 * MINUTE), "2 minutes");
        assert_eq!(human_duration(35 * MINUTE + 40 * SECOND), "35 minutes");
        assert_eq!(human_duration(59 * MINUTE + 59 * SECOND), "59 minutes");
    }

    #[test]
    fn human_duration_rounds_hours_to_the_nearest() {
        assert_eq!(human_duration(HOUR), "About an hour");
        assert_eq!(human_duration(HOUR + 29 * MINUTE), "About an hour");
        assert_eq!(human_duration(HOUR + 30 * MINUTE - 1), "About an hour");
        assert_eq!(human_duration(HOUR + 30 * MINUTE), "2 hours");
        assert_eq!(human_duration(3 * HOUR + 31 * MINUTE), "4 hours");
        assert_eq!(human_duration(47 * HOUR + 29 * MINUTE), "47 hours");
    }

    #[test]
    fn human_duration_counts_days_from_48_hours() {
        assert_eq!(human_duration(47 * HOUR + 30 * MINUTE), "2 days");
        assert_eq!(human_duration(2 * DAY), "2 days");
        assert_eq!(human_duration(13 * DAY + 5 * HOUR), "13 days");
        assert_eq!(human_duration(14 * DAY - HOUR), "13 days");
    }

    #[test]
    fn human_duration_counts_weeks_from_two_weeks() {
        assert_eq!(human_duration(2 * WEEK), "2 weeks");
        assert_eq!(human_duration(2 * WEEK + 4 * DAY), "2 weeks");
        assert_eq!(human_duration(MONTH), "4 weeks");
        assert_eq!(human_duration(MONTH + 2 * WEEK), "6 weeks");
        assert_eq!(human_duration(2 * MONTH - HOUR), "8 weeks");
    }

    #[test]
    fn human_duration_counts_months_from_sixty_days() {
        assert_eq!(human_duration(2 * MONTH), "2 months");
        assert_eq!(human_duration(5 * MONTH + 2 * WEEK), "5 months");
        assert_eq!(human_duration(24 * MONTH), "24 months");
        assert_eq!(human_duration(2 * YEAR - HOUR), "24 months");
    }

    #[test]
    fn human_duration_counts_years_from_two_years() {
        assert_eq!(human_duration(2 * YEAR), "2 years");
        assert_eq!(human_duration(24 * MONTH + 2 * WEEK), "2 years");
        assert_eq!(human_duration(3 * YEAR + 2 * MONTH), "3 years");
    }

    #[test]
    fn time_ago_appends_ago() {
        assert_eq!(time_ago(0, 10 * SECOND), "10 seconds ago");
        assert_eq!(time_ago(i64::MIN, i64::MAX), "292 years ago");
    }

    #[test]
    fn history_created_since_is_na_at_or_before_2000() {
        let y2k = HUMAN_EPOCH_SECONDS * SECOND;
        let now = y2k + 10 * YEAR;
        assert_eq!(history_created_since(Some(y2k), now), "N/A");
        assert_eq!(history_created_since(Some(y2k + SECOND - 1), now), "N/A");
        assert_eq!(history_created_since(Some(0), now), "N/A");
        assert_eq!(history_created_since(None, now), "N/A");
        assert_eq!(
            history_created_since(Some(y2k + SECOND), now),
            "9 years ago"
        );
        assert_eq!(
            history_created_since(Some(y2k + SECOND), now + SECOND),
            "10 years ago"
        );
    }

    #[test]
    fn created_since_measures_from_the_whole_second() {
        let now = 1_700_000_010 * SECOND;
        // Created 9.5 s before now: the API floors to 10 s.
        assert_eq!(
            created_since(Some(now - 9 * SECOND - SECOND / 2), now),
            "10 seconds ago"
        );
        assert_eq!(created_since(Some(0), now), "53 years ago");
        assert_eq!(created_since(None, now), "N/A");
    }

    #[test]
    fn rfc3339_nano_drops_trailing_fraction_zeros() {
        assert_eq!(format_rfc3339_nano(0), "1970-01-01T00:00:00Z");
        assert_eq!(
            format_rfc3339_nano(1_714_564_800 * SECOND + 500_000_000),
            "2024-05-01T12:00:00.5Z"
        );
        assert_eq!(
            format_rfc3339_nano(1_714_564_800 * SECOND + 123_456_789),
            "2024-05-01T12:00:00.123456789Z"
        );
    }

    #[test]
    fn rfc3339_is_whole_seconds_rounded_down() {
        assert_eq!(
            format_rfc3339(1_714_564_800 * SECOND + 999_999_999),
            "2024-05-01T12:00:00Z"
        );
        assert_eq!(format_rfc3339(-1), "1969-12-31T23:59:59Z");
    }

    #[test]
    fn rfc3339_round_trips_through_parse() {
        for nanos in [
            0,
            1,
            -1,
            951_782_400 * SECOND + 7, // 2000-02-29
            1_714_564_800 * SECOND + 123_456_789,
            4_102_444_799 * SECOND + 999_999_999, // 2099-12-31T23:59:59.999999999
            -2_208_988_800 * SECOND,              // 1900-01-01
        ] {
            let text = format_rfc3339_nano(nanos);
            assert_eq!(parse_rfc3339(&text), Ok(nanos), "{text}");
        }
    }

    #[test]
    fn parse_rfc3339_reads_docker_hub_style_timestamps() {
        assert_eq!(
            parse_rfc3339("2024-04-23T08:50:58.123456789Z"),
            Ok(1_713_862_258 * SECOND + 123_456_789)
        );
        assert_eq!(
            parse_rfc3339("2000-01-01T00:00:00Z"),
            Ok(HUMAN_EPOCH_SECONDS * SECOND)
        );
    }

    #[test]
    fn parse_rfc3339_folds_offsets_into_utc() {
        assert_eq!(
            parse_rfc3339("2024-05-01T14:00:00+02:00"),
            parse_rfc3339("2024-05-01T12:00:00Z")
        );
        assert_eq!(
            parse_rfc3339("2024-05-01T07:30:00-04:30"),
            parse_rfc3339("2024-05-01T12:00:00Z")
        );
    }

    #[test]
    fn parse_rfc3339_truncates_fractions_beyond_nanoseconds() {
        assert_eq!(
            parse_rfc3339("1970-01-01T00:00:00.1234567899Z"),
            Ok(123_456_789)
        );
    }

    #[test]
    fn parse_rfc3339_refuses_malformed_input() {
        for bad in [
            "",
            "2024-05-01",
            "2024-05-01 12:00:00Z",
            "2024-13-01T00:00:00Z",
            "2023-02-29T00:00:00Z",
            "2024-05-01T24:00:00Z",
            "2024-05-01T12:00:60Z",
            "2024-05-01T12:00:00",
            "2024-05-01T12:00:00.Z",
            "2024-05-01T12:00:00Zjunk",
            "2024-05-01T12:00:00+0200",
        ] {
            assert!(parse_rfc3339(bad).is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn parse_rfc3339_refuses_gos_zero_time_as_out_of_range() {
        let err = parse_rfc3339("0001-01-01T00:00:00Z").unwrap_err();
        assert!(err.to_string().contains("representable range"), "{err}");
    }
}
