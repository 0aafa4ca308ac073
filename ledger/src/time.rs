//! Calendar arithmetic on block time (milliseconds since the Unix epoch), with no clock.
//!
//! Chaincode needs "the calendar year in China Standard Time" of a block; people need
//! RFC 3339 text. Both are pure functions of the number, so they are deterministic.

/// Calendar date and time of day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DateTime {
    pub year: i64,
    pub month: u32,
    pub day: u32,
    pub hour: u32,
    pub minute: u32,
    pub second: u32,
    pub millisecond: u32,
}

const MS_PER_DAY: i64 = 86_400_000;

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
pub fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date of a day number since 1970-01-01.
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Days in `month` of `year`.
pub fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        _ => 0,
    }
}

/// The wall-clock date and time at `offset_minutes` east of UTC.
pub fn date_time(unix_ms: i64, offset_minutes: i32) -> DateTime {
    let local = unix_ms + i64::from(offset_minutes) * 60_000;
    let days = local.div_euclid(MS_PER_DAY);
    let in_day = local.rem_euclid(MS_PER_DAY);
    let (year, month, day) = civil_from_days(days);
    DateTime {
        year,
        month,
        day,
        hour: (in_day / 3_600_000) as u32,
        minute: (in_day / 60_000 % 60) as u32,
        second: (in_day / 1000 % 60) as u32,
        millisecond: (in_day % 1000) as u32,
    }
}

/// `2026-11-26T19:35:44.120Z`; milliseconds shown only when not zero.
pub fn format_rfc3339(unix_ms: i64) -> String {
    let t = date_time(unix_ms, 0);
    let mut s = format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
        t.year, t.month, t.day, t.hour, t.minute, t.second
    );
    if t.millisecond != 0 {
        s.push_str(&format!(".{:03}", t.millisecond));
    }
    s.push('Z');
    s
}

/// Why a timestamp could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("`{text}` is not an RFC 3339 time like 2026-11-26T08:00:00Z: {problem}")]
pub struct TimeError {
    pub text: String,
    pub problem: &'static str,
}

/// Reads `YYYY-MM-DDTHH:MM:SS[.fff]` followed by `Z` or `±HH:MM`, into Unix milliseconds.
pub fn parse_rfc3339(text: &str) -> Result<i64, TimeError> {
    let fail = |problem| TimeError {
        text: text.to_string(),
        problem,
    };
    let b = text.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't') {
        return Err(fail("expected YYYY-MM-DDTHH:MM:SS"));
    }
    if b[13] != b':' || b[16] != b':' {
        return Err(fail("expected HH:MM:SS"));
    }
    let num = |range: std::ops::Range<usize>| -> Result<u32, TimeError> {
        let part = &text[range];
        if !part.bytes().all(|c| c.is_ascii_digit()) {
            return Err(fail("non-digit in a number field"));
        }
        part.parse().map_err(|_| fail("bad number"))
    };
    let year = i64::from(num(0..4)?);
    let (month, day) = (num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
        return Err(fail("no such date"));
    }
    if hour > 23 || minute > 59 || second > 59 {
        return Err(fail("no such time of day"));
    }
    let mut rest = &text[19..];
    let mut millis = 0i64;
    if let Some(frac) = rest.strip_prefix('.') {
        let digits = frac.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 || digits > 9 {
            return Err(fail("bad fraction of a second"));
        }
        let padded = format!("{:0<3}", &frac[..digits.min(3)]);
        millis = padded
            .parse()
            .map_err(|_| fail("bad fraction of a second"))?;
        rest = &frac[digits..];
    }
    let offset_minutes: i64 = match rest {
        "Z" | "z" => 0,
        _ if rest.len() == 6
            && matches!(rest.as_bytes()[0], b'+' | b'-')
            && rest.as_bytes()[3] == b':' =>
        {
            let sign = if rest.starts_with('-') { -1 } else { 1 };
            let oh = i64::from(num(text.len() - 5..text.len() - 3)?);
            let om = i64::from(num(text.len() - 2..text.len())?);
            if oh > 23 || om > 59 {
                return Err(fail("bad offset"));
            }
            sign * (oh * 60 + om)
        }
        _ => return Err(fail("expected Z or an offset like +08:00")),
    };
    let days = days_from_civil(year, month, day);
    let seconds = days * 86_400 + i64::from(hour * 3600 + minute * 60 + second);
    Ok(seconds * 1000 + millis - offset_minutes * 60_000)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn known_instants() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Ok(0));
        assert_eq!(parse_rfc3339("2026-11-26T19:35:44Z"), Ok(1_795_721_744_000));
        assert_eq!(format_rfc3339(1_795_721_744_000), "2026-11-26T19:35:44Z");
        assert_eq!(
            parse_rfc3339("2027-01-01T07:59:59.5+08:00"),
            Ok(1_798_761_599_500)
        );
    }

    #[test]
    fn china_standard_time_moves_the_year_boundary() {
        // 2026-12-31T16:00:00Z is already 2027 in UTC+8.
        let ms = parse_rfc3339("2026-12-31T16:00:00Z").expect("valid");
        assert_eq!(date_time(ms, 0).year, 2026);
        assert_eq!(date_time(ms, 8 * 60).year, 2027);
        assert_eq!(date_time(ms - 1, 8 * 60).year, 2026);
    }

    #[test]
    fn malformed_times_are_refused() {
        for bad in [
            "",
            "2026-11-26",
            "2026-13-01T00:00:00Z",
            "2026-02-29T00:00:00Z",
            "2026-11-26T24:00:00Z",
            "2026-11-26T10:00:00",
            "2026-11-26T10:00:00+8",
            "2026-1a-26T10:00:00Z",
            "2026-11-26T10:00:00.Z",
        ] {
            assert!(parse_rfc3339(bad).is_err(), "{bad} accepted");
        }
        assert_eq!(parse_rfc3339("2024-02-29T00:00:00Z").map(|_| ()), Ok(()));
    }

    proptest! {
        #[test]
        fn format_then_parse_round_trips(ms in 0i64..253_402_300_799_999) {
            prop_assert_eq!(parse_rfc3339(&format_rfc3339(ms)), Ok(ms));
        }

        #[test]
        fn days_round_trip(days in -1_000_000i64..1_000_000) {
            let (y, m, d) = civil_from_days(days);
            prop_assert_eq!(days_from_civil(y, m, d), days);
        }
    }
}
