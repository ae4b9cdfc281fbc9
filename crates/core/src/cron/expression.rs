//! From a user's cron expression to a croner pattern with Vixie/cronie meaning.
//!
//! croner accepts more than it should for user input and reads a few things differently from
//! cronie, so the expression is checked and rewritten field by field before croner sees it:
//!
//! - croner replaces month and weekday names anywhere in the pattern (`0 0 1 MON *` would mean
//!   January); names are only accepted in their own field and translated here.
//! - croner treats a day field as unrestricted only when it is exactly `*`; cronie when it
//!   *starts* with `*` (so `*/2` plus a weekday means both must match, not either).
//! - croner maps weekday 7 to Sunday except with `L` (`7L` never matches); 7 becomes 0 there.
//! - croner searches until year 5000 for a pattern with no real date (`0 0 30 2 *`), which takes
//!   tens of milliseconds per call; such patterns are rejected once, here.

use chrono::{DateTime, Utc};
use croner::errors::CronError as CronerError;
use croner::parser::{CronParser, Seconds};
use croner::Cron;

/// A croner pattern plus what croner cannot tell us about it.
pub(super) struct Parsed {
    pub(super) pattern: Cron,
    pub(super) fixed_time: bool,
}

const FIELD_LIST: &str = "minute hour day-of-month month day-of-week";

const MONTHS: [&str; 12] = [
    "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
];
const WEEKDAYS: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

#[derive(Clone, Copy)]
enum Field {
    Minute,
    Hour,
    DayOfMonth,
    Month,
    DayOfWeek,
}

const FIELDS: [Field; 5] = [
    Field::Minute,
    Field::Hour,
    Field::DayOfMonth,
    Field::Month,
    Field::DayOfWeek,
];

impl Field {
    fn name(self) -> &'static str {
        match self {
            Field::Minute => "minute",
            Field::Hour => "hour",
            Field::DayOfMonth => "day-of-month",
            Field::Month => "month",
            Field::DayOfWeek => "day-of-week",
        }
    }

    fn expects(self) -> &'static str {
        match self {
            Field::Minute => "0-59",
            Field::Hour => "0-23",
            Field::DayOfMonth => "1-31, L or nW",
            Field::Month => "1-12 or JAN-DEC",
            Field::DayOfWeek => "0-7 or SUN-SAT (0 and 7 are Sunday), n#k or nL",
        }
    }

    /// Upper-cases the field, turns names into numbers and rejects letters that do not belong.
    fn normalize(self, raw: &str) -> Result<String, String> {
        let upper = raw.to_ascii_uppercase();
        let upper = match self {
            Field::DayOfMonth | Field::DayOfWeek => upper.replace('?', "*"),
            _ => upper,
        };
        let mut out = String::with_capacity(upper.len());
        let mut rest = upper.as_str();
        while let Some(start) = rest.find(|c: char| c.is_ascii_alphabetic()) {
            let (before, from_word) = rest.split_at(start);
            let end = from_word
                .find(|c: char| !c.is_ascii_alphabetic())
                .unwrap_or(from_word.len());
            let (word, after) = from_word.split_at(end);
            out.push_str(before);
            if matches!(self, Field::DayOfWeek)
                && word == "L"
                && !out.ends_with(|c: char| c.is_ascii_digit() || c == '#')
            {
                return Err(format!(
                    "day-of-week field {raw:?}: L needs a weekday before it (5L is the last Friday of the month); for the last day of the month put L in the day-of-month field"
                ));
            }
            let ends_a_range = out.ends_with('-');
            out.push_str(&self.translate(word, ends_a_range).ok_or_else(|| {
                format!(
                    "{} field {raw:?}: {word:?} is not allowed here; expected {}",
                    self.name(),
                    self.expects()
                )
            })?);
            rest = after;
        }
        out.push_str(rest);
        Ok(match self {
            Field::DayOfWeek => sunday_as_zero_with_last(&out),
            _ => out,
        })
    }

    fn translate(self, word: &str, ends_a_range: bool) -> Option<String> {
        let position = |names: &[&str]| names.iter().position(|name| *name == word);
        match self {
            Field::Minute | Field::Hour => None,
            Field::DayOfMonth => matches!(word, "L" | "W").then(|| word.to_string()),
            Field::Month => position(&MONTHS).map(|i| (i + 1).to_string()),
            Field::DayOfWeek if word == "L" => Some(word.to_string()),
            // `FRI-SUN` must stay an ascending range, so a range ending on Sunday ends on 7.
            Field::DayOfWeek => position(&WEEKDAYS)
                .map(|i| if i == 0 && ends_a_range { 7 } else { i })
                .map(|i| i.to_string()),
        }
    }
}

/// croner converts weekday 7 to 0 for plain and `#k` bits but not for `L`, so `7L` and `5-7#L`
/// would never match on Sunday.
fn sunday_as_zero_with_last(field: &str) -> String {
    field
        .split(',')
        .map(|part| {
            let Some(cut) = part.find(['#', 'L']) else {
                return part.to_string();
            };
            let (days, suffix) = part.split_at(cut);
            if days.contains('/') {
                return part.to_string();
            }
            match days.split_once('-') {
                None if days == "7" => format!("0{suffix}"),
                Some(("7", "7")) => format!("0{suffix}"),
                Some((first, "7")) => format!("{first}-6{suffix},0{suffix}"),
                _ => part.to_string(),
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

fn expand_alias(alias: &str) -> Result<&'static str, String> {
    match alias.to_ascii_lowercase().as_str() {
        "@yearly" | "@annually" => Ok("0 0 1 1 *"),
        "@monthly" => Ok("0 0 1 * *"),
        "@weekly" => Ok("0 0 * * 0"),
        "@daily" | "@midnight" => Ok("0 0 * * *"),
        "@hourly" => Ok("0 * * * *"),
        _ => Err(format!(
            "unknown alias {alias:?}; expected @yearly, @annually, @monthly, @weekly, @daily, \
             @midnight or @hourly"
        )),
    }
}

fn parser() -> CronParser {
    CronParser::builder().seconds(Seconds::Disallowed).build()
}

/// Checks `expression` and turns it into a croner pattern; the error is a reason for the user.
pub(super) fn parse(expression: &str) -> Result<Parsed, String> {
    let trimmed = expression.trim();
    if trimmed.is_empty() {
        return Err(format!(
            "the expression is empty; expected 5 fields ({FIELD_LIST})"
        ));
    }
    let expanded = if trimmed.starts_with('@') {
        expand_alias(trimmed)?
    } else {
        trimmed
    };
    let raw: Vec<&str> = expanded.split_whitespace().collect();
    if raw.len() != FIELDS.len() {
        let seconds = if raw.len() > FIELDS.len() {
            "; a seconds field is not supported"
        } else {
            ""
        };
        return Err(format!(
            "expected 5 fields ({FIELD_LIST}) but found {}{seconds}",
            raw.len()
        ));
    }
    let mut fields = FIELDS
        .iter()
        .zip(&raw)
        .map(|(field, raw)| field.normalize(raw))
        .collect::<Result<Vec<_>, _>>()?;

    // Vixie/cronie: if either day field starts with `*`, a day must match both; otherwise
    // either. croner only knows the exact `*`, so ask for AND (`+`) in the remaining case.
    let (day_of_month, day_of_week) = (&fields[2], &fields[4]);
    if (day_of_month.starts_with('*') || day_of_week.starts_with('*'))
        && day_of_month != "*"
        && day_of_week != "*"
        && !day_of_week.starts_with('+')
    {
        fields[4].insert(0, '+');
    }

    let pattern = parser()
        .parse(&fields.join(" "))
        .map_err(|err| locate(&raw, &fields, &err))?;
    // Without a year field a pattern repeats every 400 years, so no match after 1970 means
    // none ever.
    if pattern
        .find_next_occurrence(&DateTime::<Utc>::UNIX_EPOCH, true)
        .is_err()
    {
        return Err(
            "the expression never matches a real date (for example 30 February)".to_string(),
        );
    }
    Ok(Parsed {
        pattern,
        fixed_time: !fields[0].contains('*') && !fields[1].contains('*'),
    })
}

/// Names the field croner rejected by parsing each field alone.
fn locate(raw: &[&str], fields: &[String], err: &CronerError) -> String {
    let detail = describe(err);
    FIELDS
        .iter()
        .enumerate()
        .find(|&(i, _)| {
            let mut alone = vec!["*"; FIELDS.len()];
            alone[i] = &fields[i];
            parser().parse(&alone.join(" ")).is_err()
        })
        .map(|(i, field)| {
            format!(
                "{} field {:?}: {detail}; expected {}",
                field.name(),
                raw[i],
                field.expects()
            )
        })
        .unwrap_or(detail)
}

fn describe(err: &CronerError) -> String {
    let text = match err {
        CronerError::ComponentError(msg) | CronerError::InvalidPattern(msg) => msg.clone(),
        CronerError::IllegalCharacters(msg) => {
            msg.trim_start_matches("CronPattern contains ").to_string()
        }
        other => other.to_string(),
    };
    let text = text.trim_end_matches('.');
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => "not understood".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_become_numbers_only_in_their_own_field() {
        let parsed = Field::Month.normalize("jan-Mar").unwrap();
        assert_eq!(parsed, "1-3");
        assert_eq!(Field::DayOfWeek.normalize("fri-sun").unwrap(), "5-7");
        assert_eq!(Field::DayOfWeek.normalize("SUN-TUE").unwrap(), "0-2");
        assert!(Field::Month.normalize("MON").is_err());
        assert!(Field::DayOfMonth.normalize("MON").is_err());
    }

    #[test]
    fn a_bare_l_in_the_weekday_field_says_where_l_belongs() {
        let e = Field::DayOfWeek.normalize("L").unwrap_err();
        assert!(e.contains("5L is the last Friday"), "{e}");
        assert!(e.contains("day-of-month"), "{e}");
        assert_eq!(Field::DayOfWeek.normalize("5L").unwrap(), "5L");
        assert_eq!(Field::DayOfWeek.normalize("fri#L").unwrap(), "5#L");
    }

    #[test]
    fn sunday_written_as_seven_keeps_its_last_marker() {
        assert_eq!(sunday_as_zero_with_last("7L"), "0L");
        assert_eq!(sunday_as_zero_with_last("7#L"), "0#L");
        assert_eq!(sunday_as_zero_with_last("5-7#L"), "5-6#L,0#L");
        assert_eq!(sunday_as_zero_with_last("1-7,7#2"), "1-7,0#2");
    }

    #[test]
    fn a_stepped_day_field_makes_both_day_fields_required() {
        let parsed = parse("0 0 */2 * MON").unwrap();
        assert!(parsed.pattern.as_str().ends_with("+1"));
        let parsed = parse("0 0 1 * MON").unwrap();
        assert!(parsed.pattern.as_str().ends_with(" 1"));
    }
}
