//! Alertmanager's time intervals (`time_intervals`, and the older `mute_time_intervals`
//! section): named sets of times of day, weekdays, days of the month, months and
//! years in a time zone. A route's `mute_time_intervals` silence its notifications
//! while one of them holds; its `active_time_intervals` let them out only then.

use chrono::{DateTime, Datelike, Timelike, Utc};
use chrono_tz::Tz;

/// One entry of a named interval: every field that is set must hold (an empty one
/// always does).
#[derive(Clone, Debug, PartialEq)]
pub struct TimeInterval {
    /// Minutes of the day, start included and end excluded (`17:00`–`24:00`).
    pub times: Vec<(u32, u32)>,
    /// Days of the week, 0 for Sunday, both ends included.
    pub weekdays: Vec<(u32, u32)>,
    /// Days of the month, negative ones counted from the month's end (`-1` the last).
    pub days_of_month: Vec<(i32, i32)>,
    /// Months 1 to 12.
    pub months: Vec<(u32, u32)>,
    pub years: Vec<(i32, i32)>,
    pub location: Location,
}

/// Where the interval's clock runs: a zone of the IANA database, or the server's own.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Location {
    Zone(Tz),
    Local,
}

/// A time's fields on a clock: minute of the day, weekday (0 Sunday), day, month, year.
fn fields<T: Datelike + Timelike>(t: T) -> (u32, u32, i32, u32, i32) {
    (t.hour() * 60 + t.minute(), t.weekday().num_days_from_sunday(), t.day() as i32, t.month(), t.year())
}

impl TimeInterval {
    /// Whether `t` (milliseconds since the epoch) falls in this interval.
    pub fn contains(&self, t: i64) -> bool {
        let Some(utc) = DateTime::<Utc>::from_timestamp_millis(t) else { return false };
        let (minute, weekday, day, month, year) = match self.location {
            Location::Zone(tz) => fields(utc.with_timezone(&tz)),
            Location::Local => fields(utc.with_timezone(&chrono::Local)),
        };
        let days_in_month = days_in_month(year, month);
        let within =
            |ranges: &[(u32, u32)], v: u32| ranges.is_empty() || ranges.iter().any(|(a, b)| (*a..=*b).contains(&v));
        (self.times.is_empty() || self.times.iter().any(|(a, b)| (*a..*b).contains(&minute)))
            && within(&self.weekdays, weekday)
            && within(&self.months, month)
            && (self.years.is_empty() || self.years.iter().any(|(a, b)| (*a..=*b).contains(&year)))
            && (self.days_of_month.is_empty()
                || self.days_of_month.iter().any(|(a, b)| {
                    let resolve = |d: i32| if d < 0 { days_in_month + 1 + d } else { d };
                    (resolve(*a)..=resolve(*b)).contains(&day)
                }))
    }
}

fn days_in_month(year: i32, month: u32) -> i32 {
    let (next_year, next_month) = if month == 12 { (year + 1, 1) } else { (year, month + 1) };
    chrono::NaiveDate::from_ymd_opt(next_year, next_month, 1).and_then(|d| d.pred_opt()).map_or(31, |d| d.day() as i32)
}

const WEEKDAYS: [&str; 7] = ["sunday", "monday", "tuesday", "wednesday", "thursday", "friday", "saturday"];
const MONTHS: [&str; 12] = [
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
];

/// `HH:MM`, `24:00` allowed as an end.
pub(crate) fn parse_clock(text: &str) -> Result<u32, String> {
    let bad = || format!("`{text}` is not a time of day such as 09:00 or 24:00");
    let (h, m) = text.split_once(':').ok_or_else(bad)?;
    let (h, m): (u32, u32) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
    if m >= 60 || h > 24 || (h == 24 && m != 0) || h.to_string().len() > 2 || m.to_string().len() > 2 {
        return Err(bad());
    }
    Ok(h * 60 + m)
}

/// A `start:end` range (or one value) whose ends `value` reads.
fn range<T: PartialOrd + Copy>(text: &str, value: impl Fn(&str) -> Option<T>, what: &str) -> Result<(T, T), String> {
    let bad = || format!("`{text}` is not {what}");
    // A negative day (`-3:-1`) has its own minus signs: split on the colon only.
    let (a, b) = match text.split_once(':') {
        Some((a, b)) => (value(a.trim()).ok_or_else(bad)?, value(b.trim()).ok_or_else(bad)?),
        None => {
            let v = value(text.trim()).ok_or_else(bad)?;
            (v, v)
        }
    };
    Ok((a, b))
}

/// A range whose start must not come after its end.
fn ordered<T: PartialOrd + Copy>(text: &str, r: (T, T)) -> Result<(T, T), String> {
    if r.0 > r.1 {
        return Err(format!("`{text}`: the range ends before it starts"));
    }
    Ok(r)
}

fn named(list: &[&str], text: &str) -> Option<u32> {
    list.iter().position(|n| n.eq_ignore_ascii_case(text)).map(|i| i as u32)
}

pub(crate) fn parse_weekdays(text: &str) -> Result<(u32, u32), String> {
    ordered(text, range(text, |s| named(&WEEKDAYS, s), "a weekday or a range such as monday:friday")?)
}

pub(crate) fn parse_days_of_month(text: &str) -> Result<(i32, i32), String> {
    let day = |s: &str| s.parse::<i32>().ok().filter(|d| (1..=31).contains(&d.abs()));
    let (a, b) = range(text, day, "a day of the month (1 to 31, or -1 to -31 from the end) or a range of them")?;
    // Days counted from different ends (`1:-1`) are ordered only within a month.
    if a.signum() == b.signum() {
        ordered(text, (a, b))
    } else {
        Ok((a, b))
    }
}

pub(crate) fn parse_months(text: &str) -> Result<(u32, u32), String> {
    let month = |s: &str| named(&MONTHS, s).map(|m| m + 1).or_else(|| s.parse().ok().filter(|m| (1..=12).contains(m)));
    ordered(text, range(text, month, "a month (a name or 1 to 12) or a range of them")?)
}

pub(crate) fn parse_years(text: &str) -> Result<(i32, i32), String> {
    ordered(text, range(text, |s| s.parse().ok(), "a year or a range of years")?)
}

pub(crate) fn parse_location(text: &str) -> Result<Location, String> {
    match text {
        "Local" => Ok(Location::Local),
        _ => text
            .parse::<Tz>()
            .map(Location::Zone)
            .map_err(|_| format!("`{text}` is not a time zone of the IANA database")),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn at(text: &str) -> i64 {
        DateTime::parse_from_rfc3339(text).unwrap().timestamp_millis()
    }

    #[test]
    fn intervals_hold_in_their_time_zone_and_days_count_from_the_month_end() {
        let office = TimeInterval {
            times: vec![(parse_clock("09:00").unwrap(), parse_clock("17:00").unwrap())],
            weekdays: vec![parse_weekdays("monday:friday").unwrap()],
            days_of_month: Vec::new(),
            months: Vec::new(),
            years: Vec::new(),
            location: parse_location("Europe/Berlin").unwrap(),
        };
        // Friday 4 Dec 2026: 08:30 UTC is 09:30 in Berlin; 16:30 UTC is 17:30 there.
        assert!(office.contains(at("2026-12-04T08:30:00Z")));
        assert!(!office.contains(at("2026-12-04T16:30:00Z")));
        assert!(!office.contains(at("2026-12-05T10:00:00Z")), "Saturday");
        let last_days = TimeInterval {
            times: Vec::new(),
            weekdays: Vec::new(),
            days_of_month: vec![parse_days_of_month("-2:-1").unwrap()],
            months: vec![parse_months("february").unwrap()],
            years: vec![parse_years("2028").unwrap()],
            location: Location::Zone(Tz::UTC),
        };
        assert!(last_days.contains(at("2028-02-28T12:00:00Z")), "2028 is a leap year: the 28th is the second last");
        assert!(!last_days.contains(at("2028-02-27T12:00:00Z")));
        assert!(!last_days.contains(at("2029-02-28T12:00:00Z")), "another year");
        assert_eq!(parse_clock("24:00"), Ok(1440));
        assert!(parse_clock("24:30").is_err() && parse_clock("9").is_err());
        assert!(parse_weekdays("friday:monday").is_err());
        assert!(parse_days_of_month("0").is_err() && parse_days_of_month("5:3").is_err());
        assert_eq!(parse_days_of_month("1:-1"), Ok((1, -1)));
        assert!(parse_location("Mars/Olympus").is_err());
    }
}
