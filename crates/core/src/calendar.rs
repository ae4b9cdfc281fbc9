//! Holiday calendars: named sets of local dates that schedules skip (`--skip-calendar`) or stay
//! awake on (`--awake-on-calendar`). A date is a date in each schedule's own zone: 2027-12-24
//! is Christmas Eve in Berlin for a Berlin schedule and in New York for a New York one.

use std::collections::{BTreeMap, BTreeSet};

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use crate::schedule::validate_name;

/// Why a calendar was refused, naming the field.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CalendarError {
    /// The name is not usable.
    #[error("invalid name {0:?}: use 1-64 letters, digits, '-' or '_'")]
    Name(String),
    /// A date that does not parse, or has no year.
    #[error("invalid date {0:?}: expected YYYY-MM-DD with its year (a calendar holds dates, not yearly rules)")]
    Date(String),
    /// No dates at all.
    #[error("a calendar needs at least one date")]
    Empty,
}

impl CalendarError {
    /// The input field at fault, as operators type it.
    pub fn field(&self) -> &'static str {
        match self {
            CalendarError::Name(_) => "name",
            CalendarError::Date(_) | CalendarError::Empty => "dates",
        }
    }
}

/// Parses one `YYYY-MM-DD` date, strictly: four-digit year, two-digit month and day.
pub fn parse_date(input: &str) -> Result<NaiveDate, CalendarError> {
    let s = input.trim();
    let shaped = s.len() == 10
        && s.bytes().enumerate().all(|(i, b)| {
            if i == 4 || i == 7 {
                b == b'-'
            } else {
                b.is_ascii_digit()
            }
        });
    shaped
        .then(|| NaiveDate::parse_from_str(s, "%Y-%m-%d").ok())
        .flatten()
        .ok_or_else(|| CalendarError::Date(s.to_string()))
}

/// A named set of dates.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "CalendarRecord", into = "CalendarRecord")]
pub struct Calendar {
    /// Unique name.
    pub name: String,
    /// The dates, in order.
    pub dates: BTreeSet<NaiveDate>,
}

/// A calendar as stored and exchanged: plain fields. [`Calendar::try_from`] validates it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CalendarRecord {
    /// Unique name.
    pub name: String,
    /// `YYYY-MM-DD` dates.
    pub dates: Vec<String>,
}

impl TryFrom<CalendarRecord> for Calendar {
    type Error = CalendarError;

    fn try_from(r: CalendarRecord) -> Result<Self, Self::Error> {
        validate_name(&r.name).map_err(|_| CalendarError::Name(r.name.clone()))?;
        let dates = r
            .dates
            .iter()
            .map(|d| parse_date(d))
            .collect::<Result<BTreeSet<_>, _>>()?;
        if dates.is_empty() {
            return Err(CalendarError::Empty);
        }
        Ok(Calendar {
            name: r.name,
            dates,
        })
    }
}

impl From<Calendar> for CalendarRecord {
    fn from(c: Calendar) -> Self {
        CalendarRecord {
            name: c.name,
            dates: c.dates.iter().map(|d| d.to_string()).collect(),
        }
    }
}

impl Calendar {
    /// Builds a calendar from a name and date texts, validating both.
    pub fn new<S: AsRef<str>>(name: &str, dates: &[S]) -> Result<Calendar, CalendarError> {
        Calendar::try_from(CalendarRecord {
            name: name.to_string(),
            dates: dates.iter().map(|d| d.as_ref().to_string()).collect(),
        })
    }
}

/// The calendars schedules refer to, by name: what the poller and `curfew next` read once and
/// hand to [`crate::schedule::Schedule::occurrences_after`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Calendars {
    by_name: BTreeMap<String, Calendar>,
}

impl Calendars {
    /// No calendars: a schedule's calendar references skip nothing.
    pub fn none() -> Calendars {
        Calendars::default()
    }

    /// Adds a calendar (replacing one of the same name).
    pub fn insert(&mut self, calendar: Calendar) {
        self.by_name.insert(calendar.name.clone(), calendar);
    }

    /// True when the calendar named `name` is known and holds `date`.
    pub fn holds(&self, name: &str, date: NaiveDate) -> bool {
        self.by_name
            .get(name)
            .is_some_and(|c| c.dates.contains(&date))
    }

    /// True when a calendar named `name` is known.
    pub fn contains(&self, name: &str) -> bool {
        self.by_name.contains_key(name)
    }
}

impl FromIterator<Calendar> for Calendars {
    fn from_iter<I: IntoIterator<Item = Calendar>>(iter: I) -> Self {
        let mut all = Calendars::none();
        for c in iter {
            all.insert(c);
        }
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_date_without_its_year_is_refused() {
        assert_eq!(
            parse_date("12-24"),
            Err(CalendarError::Date("12-24".into()))
        );
        assert!(parse_date("2027-2-30").is_err());
        assert!(parse_date("2027-02-30").is_err());
        assert!(parse_date("24.12.2027").is_err());
        assert_eq!(
            parse_date(" 2027-12-24 ").unwrap(),
            NaiveDate::from_ymd_opt(2027, 12, 24).unwrap()
        );
    }

    #[test]
    fn a_calendar_keeps_its_dates_once_and_in_order() {
        let c = Calendar::new("de-holidays", &["2027-12-26", "2027-12-25", "2027-12-25"]).unwrap();
        let dates: Vec<String> = CalendarRecord::from(c).dates;
        assert_eq!(dates, ["2027-12-25", "2027-12-26"]);
    }

    #[test]
    fn each_bad_field_is_named() {
        assert_eq!(
            Calendar::new("bad name", &["2027-12-25"])
                .unwrap_err()
                .field(),
            "name"
        );
        assert_eq!(
            Calendar::new::<&str>("x", &[]).unwrap_err().field(),
            "dates"
        );
        assert_eq!(
            Calendar::new("x", &["2027-13-01"]).unwrap_err().field(),
            "dates"
        );
    }
}
