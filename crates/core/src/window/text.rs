//! Window text: `Mon-Fri 19:00-07:00, Sat-Sun all-day`.
//!
//! Terms are separated by `,` or `;`. Each term is one of:
//! - `DAYS HH:MM-HH:MM`: that time of day on each of the days. A range whose end comes before
//!   its start covers both ends of each day (`Mon-Fri 19:00-07:00` is 00:00-07:00 and
//!   19:00-24:00 on Monday to Friday), so consecutive days join across midnight and, with the
//!   weekend asleep too, Friday evening runs into Monday morning: the cron pair people write
//!   (`0 19 * * 1-5` to stop, `0 7 * * 1-5` to start).
//! - `DAYS all-day`: the whole of each day.
//! - `DAY HH:MM-DAY HH:MM`: one span from a day and time to a later one, across midnight or the
//!   week's end (`Sun 22:00-Mon 06:00`).
//!
//! DAYS is a day (`Mon`, `Monday`), a range (`Mon-Fri`; `Fri-Mon` wraps over the weekend), or
//! `daily`, `weekdays`, `weekends`. `24:00` may end a range. Terms must not overlap.

use super::{Week, WindowError, DAY, DAYS, WEEK};

fn err(text: &str, reason: impl Into<String>) -> WindowError {
    WindowError::Text {
        text: text.to_string(),
        reason: reason.into(),
    }
}

/// A day name (three letters or in full, any case) as 0 = Monday.
fn day(name: &str) -> Option<usize> {
    const FULL: [&str; 7] = [
        "monday",
        "tuesday",
        "wednesday",
        "thursday",
        "friday",
        "saturday",
        "sunday",
    ];
    let name = name.trim().to_ascii_lowercase();
    FULL.iter()
        .position(|full| *full == name || (name.len() == 3 && full.starts_with(&name)))
}

/// `Mon`, `Mon-Fri`, `Fri-Mon` (wrapping), `daily`, `weekdays`, `weekends`.
fn days(spec: &str) -> Result<Vec<usize>, String> {
    match spec.to_ascii_lowercase().as_str() {
        "daily" | "everyday" => return Ok((0..7).collect()),
        "weekdays" => return Ok((0..5).collect()),
        "weekends" => return Ok(vec![5, 6]),
        _ => {}
    }
    let unknown =
        |d: &str| format!("unknown day {d:?} (use Mon..Sun, Mon-Fri, daily, weekdays or weekends)");
    match spec.split_once('-') {
        None => Ok(vec![day(spec).ok_or_else(|| unknown(spec))?]),
        Some((a, b)) => {
            let first = day(a).ok_or_else(|| unknown(a))?;
            let last = day(b).ok_or_else(|| unknown(b))?;
            let count = (last + 7 - first) % 7 + 1;
            Ok((0..count).map(|i| (first + i) % 7).collect())
        }
    }
}

/// `HH:MM` as minutes of the day; `24:00` only where `end_of_day` allows it.
fn time(s: &str, end_of_day: bool) -> Result<usize, String> {
    let bad = || format!("invalid time {s:?}: expected HH:MM such as 07:00 or 19:30");
    let (h, m) = s.trim().split_once(':').ok_or_else(bad)?;
    if h.is_empty() || h.len() > 2 || m.len() != 2 {
        return Err(bad());
    }
    let h: usize = h.parse().map_err(|_| bad())?;
    let m: usize = m.parse().map_err(|_| bad())?;
    match (h, m) {
        (24, 0) if end_of_day => Ok(DAY),
        (0..=23, 0..=59) => Ok(h * 60 + m),
        _ => Err(bad()),
    }
}

/// The minutes of the week (start, length) one term covers.
fn spans(term: &str) -> Result<Vec<(usize, usize)>, String> {
    let (days_spec, times) = term
        .split_once(char::is_whitespace)
        .ok_or_else(|| format!("{term:?} needs days and times, such as Mon-Fri 19:00-07:00"))?;
    let times = times.trim();
    let day_list = days(days_spec)?;
    if ["all-day", "all day", "allday"].contains(&times.to_ascii_lowercase().as_str()) {
        return Ok(day_list.iter().map(|d| (d * DAY, DAY)).collect());
    }
    let (from, to) = times
        .split_once('-')
        .ok_or_else(|| format!("{times:?} is not a range such as 19:00-07:00 or all-day"))?;
    let from = time(from, false)?;
    let to = to.trim();
    if let Some((to_day, to_time)) = to.split_once(char::is_whitespace) {
        // One span across days: `Fri 19:00-Mon 07:00`.
        let [start_day] = day_list[..] else {
            return Err(format!(
                "{term:?}: a span across days starts on one day, such as Fri 19:00-Mon 07:00"
            ));
        };
        let end_day = days(to_day.trim())
            .ok()
            .and_then(|d| (d.len() == 1).then(|| d[0]))
            .ok_or_else(|| format!("{term:?}: unknown day {to_day:?} after '-'"))?;
        let start = start_day * DAY + from;
        let end = end_day * DAY + time(to_time, true)?;
        let length = (end + WEEK - start) % WEEK;
        if length == 0 {
            return Err(format!(
                "{term:?} ends where it starts (for all week, use daily all-day)"
            ));
        }
        return Ok(vec![(start, length)]);
    }
    let to = time(to, true)?;
    if from == to || (from == 0 && to == DAY) {
        return Err(format!(
            "{times:?} is empty or the whole day (write all-day for that)"
        ));
    }
    Ok(day_list
        .iter()
        .flat_map(|d| {
            let day_start = d * DAY;
            if from < to {
                vec![(day_start + from, to - from)]
            } else {
                // The range wraps: the evening and the early morning of the same day.
                let mut parts = vec![(day_start + from, DAY - from)];
                if to > 0 {
                    parts.push((day_start, to));
                }
                parts
            }
        })
        .collect())
}

/// `Mon 19:00` for a minute of the week.
pub(super) fn at(minute: usize) -> String {
    let m = minute % WEEK;
    format!("{} {}", DAYS[m / DAY], hhmm(m % DAY))
}

fn hhmm(minute_of_day: usize) -> String {
    format!("{:02}:{:02}", minute_of_day / 60, minute_of_day % 60)
}

impl Week {
    /// Parses window text (module docs). Overlapping terms are refused, naming both and the
    /// first minute they share.
    pub fn parse(text: &str) -> Result<Week, WindowError> {
        let terms: Vec<&str> = text.split([',', ';']).map(str::trim).collect();
        if terms.iter().all(|t| t.is_empty()) {
            return Err(err(text, "it names no asleep time"));
        }
        let mut owner: Vec<Option<usize>> = vec![None; WEEK];
        for (i, term) in terms.iter().enumerate() {
            if term.is_empty() {
                return Err(err(text, format!("term {} is empty", i + 1)));
            }
            for (start, length) in spans(term).map_err(|reason| err(text, reason))? {
                for m in (start..start + length).map(|m| m % WEEK) {
                    if let Some(other) = owner[m] {
                        return Err(err(
                            text,
                            format!("{:?} and {:?} overlap at {}", terms[other], term, at(m)),
                        ));
                    }
                    owner[m] = Some(i);
                }
            }
        }
        Week::from_minutes(owner.iter().map(Option::is_some).collect())
    }

    /// The week as window text that [`Week::parse`] reads back to the same week: days with the
    /// same asleep times grouped into ranges, a day asleep at both ends written as one wrapping
    /// range (`19:00-07:00`).
    pub fn to_text(&self) -> String {
        let day_ranges: Vec<Vec<String>> = (0..7).map(|d| self.day_ranges(d)).collect();
        let mut terms = Vec::new();
        let mut d = 0;
        while d < 7 {
            let mut last = d;
            while last + 1 < 7 && day_ranges[last + 1] == day_ranges[d] {
                last += 1;
            }
            let days = if last == d {
                DAYS[d].to_string()
            } else {
                format!("{}-{}", DAYS[d], DAYS[last])
            };
            terms.extend(day_ranges[d].iter().map(|r| format!("{days} {r}")));
            d = last + 1;
        }
        terms.join(", ")
    }

    /// One day's asleep times as range texts.
    fn day_ranges(&self, day: usize) -> Vec<String> {
        let minutes = &self.asleep[day * DAY..(day + 1) * DAY];
        let mut ranges = Vec::new();
        let mut m = 0;
        while m < DAY {
            if !minutes[m] {
                m += 1;
                continue;
            }
            let start = m;
            while m < DAY && minutes[m] {
                m += 1;
            }
            ranges.push((start, m));
        }
        match ranges[..] {
            [(0, DAY)] => vec!["all-day".to_string()],
            [(0, morning), (evening, DAY)] => vec![format!("{}-{}", hhmm(evening), hhmm(morning))],
            _ => ranges
                .iter()
                .map(|(a, b)| format!("{}-{}", hhmm(*a), hhmm(*b)))
                .collect(),
        }
    }
}
