//! Schedules: when (a cron expression and an action, or a sleep window that both stops and
//! starts) in a time zone, and to what (a selector), with the dates it skips or stays awake on.

use chrono::{DateTime, Duration, NaiveDate, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use crate::calendar::Calendars;
use crate::cron::{CronError, CronSpec, FireTime};
use crate::decision::Action;
use crate::hold::{HoldError, HoldModes, Source};
use crate::ports::{ErrorKind, PortError};
use crate::selector::{Selector, SelectorError};
use crate::target::Sizes;
use crate::window::{Week, Window, WindowError};

/// A schedule field that failed validation.
#[derive(Debug, PartialEq, thiserror::Error)]
pub enum ScheduleError {
    /// The name is not usable.
    #[error("invalid name {0:?}: use 1-64 letters, digits, '-' or '_'")]
    Name(String),
    /// Bad cron expression or zone.
    #[error(transparent)]
    Cron(#[from] CronError),
    /// Bad selector.
    #[error(transparent)]
    Selector(#[from] SelectorError),
    /// Bad action.
    #[error("invalid action {0:?}: expected stop or start")]
    Action(String),
    /// Bad prewarm duration.
    #[error("invalid prewarm {0:?}: expected a duration such as 15m or 1h, at most 24h")]
    Prewarm(String),
    /// Bad skip date.
    #[error("invalid skip date {0:?}: expected YYYY-MM-DD")]
    SkipDate(String),
    /// Default start sizes that are not min <= desired <= max.
    #[error("invalid default start sizes {0}: need 0 <= min <= desired <= max")]
    DefaultStart(Sizes),
    /// Hold modes that do not parse.
    #[error(transparent)]
    Hold(#[from] HoldError),
    /// A sleep window that does not parse.
    #[error(transparent)]
    Window(#[from] WindowError),
    /// Fields that do not go together (a window with an action, `--enforce` on a cron
    /// schedule), or a calendar name that is not a name.
    #[error("{reason}")]
    Conflict {
        /// The flag at fault, as operators type it.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
}

impl ScheduleError {
    /// The name of the bad field, as operators type it.
    pub fn field(&self) -> &'static str {
        match self {
            ScheduleError::Name(_) => "name",
            ScheduleError::Cron(e) => e.field(),
            ScheduleError::Selector(_) => "select",
            ScheduleError::Action(_) => "action",
            ScheduleError::Prewarm(_) => "prewarm",
            ScheduleError::SkipDate(_) => "skip-dates",
            ScheduleError::DefaultStart(_) => "default-start",
            ScheduleError::Hold(_) => "hold",
            ScheduleError::Window(WindowError::Grid(_)) => "grid",
            ScheduleError::Window(_) => "asleep",
            ScheduleError::Conflict { field, .. } => field,
        }
    }
}

/// A schedule as stored and exchanged: plain fields. [`Schedule::try_from`] validates it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ScheduleRecord {
    /// Unique name.
    pub name: String,
    /// 5-field cron expression (a cron schedule).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cron: Option<String>,
    /// IANA time zone.
    pub tz: String,
    /// `stop` or `start` (a cron schedule).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    /// The asleep part of the week as window text (a window schedule, which stops and starts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub asleep: Option<String>,
    /// Selector.
    pub selector: String,
    /// Disabled schedules never fire.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Plan only: tasks record what would change and change nothing.
    #[serde(default)]
    pub dry_run: bool,
    /// Fire this many minutes before the cron time (warm up before people arrive).
    #[serde(default)]
    pub prewarm_minutes: i64,
    /// Local dates on which the schedule does not fire.
    #[serde(default)]
    pub skip_dates: Vec<String>,
    /// Calendars whose dates it does not fire on.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skip_calendars: Vec<String>,
    /// Calendars whose dates it keeps its targets awake on.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub awake_calendars: Vec<String>,
    /// A window schedule that puts back to sleep what it finds awake in its asleep time.
    #[serde(default)]
    pub enforce: bool,
    /// Sizes a start uses for targets with no baseline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_start: Option<Sizes>,
    /// Hold modes for the node groups it acts on (`ca-tags,karpenter`), winning over their
    /// clusters' `curfew/hold` tags.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hold: Option<String>,
    /// The next instant this schedule fires (UTC), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_fire: Option<DateTime<Utc>>,
}

fn yes() -> bool {
    true
}

/// A validated schedule.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "ScheduleRecord", into = "ScheduleRecord")]
pub struct Schedule {
    /// Unique name.
    pub name: String,
    /// When, in which zone, doing what.
    pub when: When,
    /// To what.
    pub selector: Selector,
    /// Disabled schedules never fire.
    pub enabled: bool,
    /// Plan only.
    pub dry_run: bool,
    /// Fire this long before the cron time.
    pub prewarm: Duration,
    /// Local dates on which it does not fire.
    pub skip_dates: Vec<NaiveDate>,
    /// Calendars whose dates it does not fire on.
    pub skip_calendars: Vec<String>,
    /// Calendars whose dates it keeps its targets awake on.
    pub awake_calendars: Vec<String>,
    /// Puts back to sleep what it finds awake in its asleep time (window schedules only).
    pub enforce: bool,
    /// Sizes a start uses for targets with no baseline.
    pub default_start: Option<Sizes>,
    /// Hold modes for its node groups, winning over their clusters' tags.
    pub hold: Option<HoldModes>,
    /// The next instant it fires.
    pub next_fire: Option<DateTime<Utc>>,
}

/// When a schedule fires and what each fire does.
#[derive(Clone, Debug, PartialEq)]
pub enum When {
    /// A cron expression; every fire does the one action.
    Cron {
        /// The expression in its zone (boxed: a parsed expression is several times the size of
        /// a window's handles on its heap data).
        cron: Box<CronSpec>,
        /// What each fire does.
        action: Action,
    },
    /// A sleep window: a stop where sleep begins, a start where it ends.
    Window(Window),
}

/// Why a fire does not happen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Skip {
    /// Its local date is one of the schedule's skip dates.
    Date,
    /// Its local date is in a calendar the schedule skips.
    Calendar(String),
    /// A stop on a date in a calendar the schedule stays awake on.
    AwakeOn(String),
}

impl std::fmt::Display for Skip {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Skip::Date => f.write_str("skip date"),
            Skip::Calendar(name) => write!(f, "calendar {name}"),
            Skip::AwakeOn(name) => write!(f, "awake on calendar {name}"),
        }
    }
}

impl Serialize for Skip {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// One occurrence of a schedule: when, doing what, and whether it is skipped (and why).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fire {
    /// The instant.
    pub time: FireTime,
    /// What it does.
    pub action: Action,
    /// Why it does not happen, if it does not.
    pub skipped: Option<Skip>,
}

/// A stored schedule that no longer reads as a valid one: a field became invalid (a cron
/// expression or zone a newer version refuses, a hand edit) or is missing. It never fires; the
/// poller reports it every tick until someone deletes it (and adds it again, fixed).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokenSchedule {
    /// The name in the schedule's key.
    pub name: String,
    /// What is wrong with it, naming the field.
    pub problem: String,
}

impl std::fmt::Display for BrokenSchedule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "schedule {:?} is broken: {}", self.name, self.problem)
    }
}

impl From<BrokenSchedule> for PortError {
    /// Reading a broken schedule as a schedule is refused, naming it and its problem.
    fn from(broken: BrokenSchedule) -> Self {
        PortError::new(ErrorKind::Invalid, broken.to_string())
    }
}

/// Schedules read from the store: the valid ones, and apart from them the broken ones, so one
/// bad item never hides the others.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ScheduleList {
    /// Schedules that read as valid.
    pub schedules: Vec<Schedule>,
    /// Schedules that do not.
    pub broken: Vec<BrokenSchedule>,
}

/// Parses `90s`, `15m`, `2h`, `1h30m`, `7d` or a bare number of minutes. `None` for anything
/// else, including amounts too large to represent (they would overflow every date they touch).
pub fn parse_duration(input: &str) -> Option<Duration> {
    let s = input.trim();
    if s.is_empty() {
        return None;
    }
    if let Ok(minutes) = s.parse::<i64>() {
        return (minutes >= 0)
            .then(|| Duration::try_minutes(minutes))
            .flatten();
    }
    let mut total = Duration::zero();
    let mut digits = String::new();
    for c in s.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let n: i64 = digits.parse().ok()?;
        digits.clear();
        let part = match c {
            's' => Duration::try_seconds(n),
            'm' => Duration::try_minutes(n),
            'h' => Duration::try_hours(n),
            'd' => Duration::try_days(n),
            _ => return None,
        }?;
        total = total.checked_add(&part)?;
    }
    digits.is_empty().then_some(total)
}

/// Checks a schedule name.
pub fn validate_name(name: &str) -> Result<(), ScheduleError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(ScheduleError::Name(name.to_string()))
    }
}

fn conflict(field: &'static str, reason: impl Into<String>) -> ScheduleError {
    ScheduleError::Conflict {
        field,
        reason: reason.into(),
    }
}

/// Reads the record's when: a cron expression with an action, or a window, never both.
fn when(r: &ScheduleRecord) -> Result<When, ScheduleError> {
    match (&r.cron, &r.asleep) {
        (Some(_), Some(_)) => Err(conflict(
            "asleep",
            "--asleep (or --grid) and --cron are two kinds of schedule: give one",
        )),
        (None, None) => Err(conflict(
            "cron",
            "a schedule needs --cron with --action, or a sleep window (--asleep or --grid)",
        )),
        (Some(expression), None) => {
            let cron = CronSpec::parse(expression, &r.tz)?;
            let action = r.action.as_deref().unwrap_or_default();
            let action =
                Action::parse(action).ok_or_else(|| ScheduleError::Action(action.to_string()))?;
            Ok(When::Cron {
                cron: Box::new(cron),
                action,
            })
        }
        (None, Some(text)) => {
            if r.action.is_some() {
                return Err(conflict(
                    "action",
                    "a window schedule both stops and starts: drop --action",
                ));
            }
            if r.prewarm_minutes != 0 {
                return Err(conflict(
                    "prewarm",
                    "a window schedule takes no --prewarm: end the window earlier instead",
                ));
            }
            let week = Week::parse(text)?;
            Ok(When::Window(Window::new(week, &r.tz)?))
        }
    }
}

/// Checks calendar references: names, none twice, none both skipped and awake on.
fn calendars(r: &ScheduleRecord) -> Result<(), ScheduleError> {
    for (field, names) in [
        ("skip-calendar", &r.skip_calendars),
        ("awake-on-calendar", &r.awake_calendars),
    ] {
        for (i, name) in names.iter().enumerate() {
            validate_name(name)
                .map_err(|_| conflict(field, format!("invalid calendar name {name:?}")))?;
            if names[..i].contains(name) {
                return Err(conflict(field, format!("calendar {name:?} is named twice")));
            }
        }
    }
    if let Some(both) = r
        .awake_calendars
        .iter()
        .find(|n| r.skip_calendars.contains(n))
    {
        return Err(conflict(
            "awake-on-calendar",
            format!("calendar {both:?} cannot be both skipped and stayed awake on"),
        ));
    }
    Ok(())
}

impl TryFrom<ScheduleRecord> for Schedule {
    type Error = ScheduleError;

    fn try_from(r: ScheduleRecord) -> Result<Self, Self::Error> {
        validate_name(&r.name)?;
        let when = when(&r)?;
        let selector = Selector::parse(&r.selector)?;
        if !(0..=24 * 60).contains(&r.prewarm_minutes) {
            return Err(ScheduleError::Prewarm(format!("{}m", r.prewarm_minutes)));
        }
        let skip_dates = r
            .skip_dates
            .iter()
            .map(|d| crate::calendar::parse_date(d).map_err(|_| ScheduleError::SkipDate(d.clone())))
            .collect::<Result<Vec<_>, _>>()?;
        calendars(&r)?;
        if r.enforce && matches!(when, When::Cron { .. }) {
            return Err(conflict(
                "enforce",
                "--enforce needs a sleep window (--asleep or --grid): a cron schedule has no asleep time to enforce",
            ));
        }
        if let Some(sizes) = r.default_start {
            if !sizes.is_valid() {
                return Err(ScheduleError::DefaultStart(sizes));
            }
        }
        let hold = r
            .hold
            .as_deref()
            .map(|modes| HoldModes::parse(modes, Source::Flag))
            .transpose()?;
        Ok(Schedule {
            name: r.name,
            when,
            selector,
            enabled: r.enabled,
            dry_run: r.dry_run,
            prewarm: Duration::minutes(r.prewarm_minutes),
            skip_dates,
            skip_calendars: r.skip_calendars,
            awake_calendars: r.awake_calendars,
            enforce: r.enforce,
            default_start: r.default_start,
            hold,
            next_fire: r.next_fire,
        })
    }
}

impl From<Schedule> for ScheduleRecord {
    fn from(s: Schedule) -> Self {
        let (cron, action, asleep) = match &s.when {
            When::Cron { cron, action } => (
                Some(cron.expression().to_string()),
                Some(action.as_str().to_string()),
                None,
            ),
            When::Window(w) => (None, None, Some(w.week().to_text())),
        };
        let tz = s.zone().name().to_string();
        ScheduleRecord {
            name: s.name,
            tz,
            cron,
            action,
            asleep,
            selector: s.selector.as_str().to_string(),
            enabled: s.enabled,
            dry_run: s.dry_run,
            prewarm_minutes: s.prewarm.num_minutes(),
            skip_dates: s.skip_dates.iter().map(|d| d.to_string()).collect(),
            skip_calendars: s.skip_calendars,
            awake_calendars: s.awake_calendars,
            enforce: s.enforce,
            default_start: s.default_start,
            hold: s.hold.map(|m| m.to_string().replace('+', ",")),
            next_fire: s.next_fire,
        }
    }
}

/// Occurrences a walk looks through for the next one that is not skipped: a skip list and
/// calendars can only hide a bounded number of fires in a row; bound the walk anyway.
const WALK_LIMIT: usize = 10_000;

impl Schedule {
    /// The zone the schedule reads its times and dates in.
    pub fn zone(&self) -> Tz {
        match &self.when {
            When::Cron { cron, .. } => cron.zone(),
            When::Window(w) => w.zone(),
        }
    }

    /// Every calendar it names, skipped ones first.
    pub fn calendar_names(&self) -> impl Iterator<Item = &str> {
        self.skip_calendars
            .iter()
            .chain(&self.awake_calendars)
            .map(String::as_str)
    }

    /// Whether it names the calendar `name` (to skip or to stay awake on).
    pub fn names_calendar(&self, name: &str) -> bool {
        self.calendar_names().any(|c| c == name)
    }

    /// The next `count` fires strictly after `after` that happen, with the skipped ones among
    /// them (marked): what `curfew next` and `schedule show` list.
    pub fn upcoming(&self, after: DateTime<Utc>, count: usize, calendars: &Calendars) -> Vec<Fire> {
        let mut fires = Vec::new();
        let mut happening = 0;
        for fire in self.occurrences_after(after, calendars) {
            happening += usize::from(fire.skipped.is_none());
            fires.push(fire);
            if happening == count {
                break;
            }
        }
        fires
    }

    /// What its fires do, for people: `stop`, `start`, or `stop+start` for a window.
    pub fn action_label(&self) -> String {
        match &self.when {
            When::Cron { action, .. } => action.to_string(),
            When::Window(_) => "stop+start".to_string(),
        }
    }

    /// When it fires, for people: the cron expression, or `asleep <window text>`.
    pub fn when_label(&self) -> String {
        match &self.when {
            When::Cron { cron, .. } => cron.expression().to_string(),
            When::Window(w) => format!("asleep {}", w.week().to_text()),
        }
    }

    /// Whether its fires can do `action`: a cron schedule's one action, both for a window.
    pub fn does(&self, action: Action) -> bool {
        match &self.when {
            When::Cron { action: a, .. } => *a == action,
            When::Window(_) => true,
        }
    }

    /// The first fire strictly after `after` that happens and does `action`, within the next
    /// 64 fires.
    pub fn next_fire_doing(
        &self,
        after: DateTime<Utc>,
        action: Action,
        calendars: &Calendars,
    ) -> Option<DateTime<Utc>> {
        self.fires_after(after, calendars)
            .take(64)
            .find(|f| f.action == action)
            .map(|f| f.time.utc)
    }

    /// The window, for a window schedule.
    pub fn window(&self) -> Option<&Window> {
        match &self.when {
            When::Window(w) => Some(w),
            When::Cron { .. } => None,
        }
    }

    /// The first awake-on calendar holding `date`, if any.
    fn awake_on(&self, date: NaiveDate, calendars: &Calendars) -> Option<&str> {
        self.awake_calendars
            .iter()
            .find(|c| calendars.holds(c, date))
            .map(String::as_str)
    }

    /// Why a fire on local `date` doing `action` does not happen, if it does not.
    fn skip(&self, date: NaiveDate, action: Action, calendars: &Calendars) -> Option<Skip> {
        if self.skip_dates.contains(&date) {
            return Some(Skip::Date);
        }
        if let Some(c) = self
            .skip_calendars
            .iter()
            .find(|c| calendars.holds(c, date))
        {
            return Some(Skip::Calendar(c.clone()));
        }
        match (&self.when, action) {
            // A window stays awake on such a date by its effective week (`asleep_at`); a cron
            // stop schedule, which has no week, by not stopping.
            (When::Cron { .. }, Action::Stop) => self
                .awake_on(date, calendars)
                .map(|c| Skip::AwakeOn(c.to_string())),
            _ => None,
        }
    }

    /// Why local `date` is not an ordinary day of the schedule, if it is not: a skip date, a
    /// date of a calendar it skips (it does not act that day), or a date of an awake-on calendar
    /// (its targets stay awake). What the console marks on its week grid.
    pub fn day_skip(&self, date: NaiveDate, calendars: &Calendars) -> Option<Skip> {
        self.skip(date, Action::Start, calendars).or_else(|| {
            self.awake_on(date, calendars)
                .map(|c| Skip::AwakeOn(c.to_string()))
        })
    }

    /// Whether the local date at `at` is one the schedule skips (a skip date or a date in a
    /// calendar it skips): it does not act that day.
    pub fn skips_date(&self, at: DateTime<Utc>, calendars: &Calendars) -> bool {
        let date = at.with_timezone(&self.zone()).date_naive();
        self.skip_dates.contains(&date)
            || self.skip_calendars.iter().any(|c| calendars.holds(c, date))
    }

    /// For a window schedule, whether its targets should be asleep at `at`: the week read in
    /// its zone, awake all day on the dates of its awake-on calendars. `None` for a cron
    /// schedule, which has no asleep time.
    pub fn asleep_at(&self, at: DateTime<Utc>, calendars: &Calendars) -> Option<bool> {
        let window = self.window()?;
        let local = at.with_timezone(&window.zone()).date_naive();
        Some(window.asleep_at(at) && self.awake_on(local, calendars).is_none())
    }

    /// What running the schedule at `at` does: a cron schedule's action; for a window, stop
    /// when it is asleep then and start when it is awake.
    pub fn action_at(&self, at: DateTime<Utc>, calendars: &Calendars) -> Action {
        match &self.when {
            When::Cron { action, .. } => *action,
            When::Window(_) => match self.asleep_at(at, calendars) {
                Some(true) => Action::Stop,
                _ => Action::Start,
            },
        }
    }

    /// Every occurrence strictly after `after`, the skipped ones too, oldest first. Endless
    /// for most schedules: bound it.
    pub fn occurrences_after<'a>(
        &'a self,
        after: DateTime<Utc>,
        calendars: &'a Calendars,
    ) -> impl Iterator<Item = Fire> + 'a {
        let mut cursor = after;
        std::iter::from_fn(move || {
            for _ in 0..WALK_LIMIT {
                let (fire, next_cursor) = self.occurrence_after(cursor, calendars)?;
                cursor = next_cursor;
                if fire.is_some() {
                    return fire;
                }
            }
            None
        })
    }

    /// The next candidate instant after `cursor`: the occurrence there, if any (a window edge
    /// an awake-on date cancels out may be none), and where to look from next.
    fn occurrence_after(
        &self,
        cursor: DateTime<Utc>,
        calendars: &Calendars,
    ) -> Option<(Option<Fire>, DateTime<Utc>)> {
        match &self.when {
            When::Cron { cron, action } => {
                let fire = cron.next_after(cursor + self.prewarm)?;
                // The prewarmed instant's local time carries the offset in force then, which
                // differs from the cron fire's when a DST change falls in between.
                let utc = fire.utc - self.prewarm;
                let time = FireTime {
                    utc,
                    local: utc.with_timezone(&cron.zone()).fixed_offset(),
                };
                let skipped = self.skip(fire.local.date_naive(), *action, calendars);
                Some((
                    Some(Fire {
                        time,
                        action: *action,
                        skipped,
                    }),
                    utc,
                ))
            }
            When::Window(window) => self.window_occurrence(window, cursor, calendars),
        }
    }

    /// A window's next candidate: its next edge, or, with awake-on calendars, the next local
    /// midnight (where such a date begins or ends), whichever is first. It fires where the
    /// effective week (`asleep_at`) changes; an edge an awake-on date cancels is reported as
    /// skipped for that calendar.
    fn window_occurrence(
        &self,
        window: &Window,
        cursor: DateTime<Utc>,
        calendars: &Calendars,
    ) -> Option<(Option<Fire>, DateTime<Utc>)> {
        let edge = window.next_edge_after(cursor);
        let midnight = if self.awake_calendars.is_empty() {
            None
        } else {
            window.next_midnight_after(cursor)
        };
        let time = match (edge, midnight) {
            (Some((e, _)), Some(m)) => {
                if m.utc < e.utc {
                    m
                } else {
                    e
                }
            }
            (Some((e, _)), None) => e,
            (None, Some(m)) => m,
            (None, None) => return None,
        };
        let at_edge = edge.filter(|(e, _)| e.utc == time.utc).map(|(_, a)| a);
        let before = self.asleep_at(time.utc - Duration::minutes(1), calendars);
        let now = self.asleep_at(time.utc, calendars);
        let date = time.local.date_naive();
        let fire = if before != now {
            let action = if now == Some(true) {
                Action::Stop
            } else {
                Action::Start
            };
            Some(Fire {
                time,
                action,
                skipped: self.skip(date, action, calendars),
            })
        } else {
            // An edge whose change an awake-on date cancelled: shown as skipped for it.
            at_edge.and_then(|action| {
                let previous = (time.utc - Duration::minutes(1))
                    .with_timezone(&window.zone())
                    .date_naive();
                let calendar = self
                    .awake_on(date, calendars)
                    .or_else(|| self.awake_on(previous, calendars))?;
                Some(Fire {
                    time,
                    action,
                    skipped: Some(Skip::AwakeOn(calendar.to_string())),
                })
            })
        };
        Some((fire, time.utc))
    }

    /// The first fire strictly after `after` that is not skipped.
    pub fn next_fire_after(&self, after: DateTime<Utc>, calendars: &Calendars) -> Option<Fire> {
        self.occurrences_after(after, calendars)
            .take(WALK_LIMIT)
            .find(|f| f.skipped.is_none())
    }

    /// The last fire doing `action` at or before `at` within the week before it, if any.
    pub fn last_fire_before(
        &self,
        at: DateTime<Utc>,
        action: Action,
        calendars: &Calendars,
    ) -> Option<DateTime<Utc>> {
        self.fires_after(at - Duration::days(8), calendars)
            .take_while(|f| f.time.utc <= at)
            .filter(|f| f.action == action)
            .last()
            .map(|f| f.time.utc)
    }

    /// Every fire strictly after `after` that is not skipped, oldest first. Endless for most
    /// schedules: bound it (`take_while`, `take`).
    pub fn fires_after<'a>(
        &'a self,
        after: DateTime<Utc>,
        calendars: &'a Calendars,
    ) -> impl Iterator<Item = Fire> + 'a {
        let mut cursor = after;
        std::iter::from_fn(move || {
            let fire = self.next_fire_after(cursor, calendars)?;
            cursor = fire.time.utc;
            Some(fire)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn record() -> ScheduleRecord {
        ScheduleRecord {
            name: "dev-nights".into(),
            cron: Some("0 19 * * 1-5".into()),
            tz: "Europe/Berlin".into(),
            action: Some("stop".into()),
            asleep: None,
            selector: "tag:env=dev".into(),
            enabled: true,
            dry_run: false,
            prewarm_minutes: 0,
            skip_dates: vec![],
            skip_calendars: vec![],
            awake_calendars: vec![],
            enforce: false,
            default_start: None,
            next_fire: None,
            hold: None,
        }
    }

    #[test]
    fn each_bad_field_is_named() {
        type Mutation = fn(&mut ScheduleRecord);
        let cases: Vec<(Mutation, &str)> = vec![
            (|r| r.name = "bad name".into(), "name"),
            (|r| r.cron = Some("61 * * * *".into()), "cron"),
            (|r| r.tz = "Mars/Olympus".into(), "tz"),
            (|r| r.action = Some("pause".into()), "action"),
            (|r| r.selector = "env=dev".into(), "select"),
            (|r| r.skip_dates = vec!["24.12.2027".into()], "skip-dates"),
            (
                |r| r.default_start = Some(Sizes::new(2, 1, 1)),
                "default-start",
            ),
        ];
        for (mutate, field) in cases {
            let mut r = record();
            mutate(&mut r);
            assert_eq!(Schedule::try_from(r).unwrap_err().field(), field);
        }
    }

    #[test]
    fn a_prewarmed_fire_across_a_dst_change_shows_the_offset_in_force_then() {
        let mut r = record();
        r.cron = Some("30 3 28 3 *".into());
        r.tz = "Europe/Berlin".into();
        r.prewarm_minutes = 120;
        let s = Schedule::try_from(r).unwrap();
        let fire = s
            .next_fire_after(
                Utc.with_ymd_and_hms(2027, 3, 1, 0, 0, 0).unwrap(),
                &Calendars::none(),
            )
            .unwrap()
            .time;
        assert_eq!(fire.utc.to_rfc3339(), "2027-03-27T23:30:00+00:00");
        assert_eq!(fire.local.to_rfc3339(), "2027-03-28T00:30:00+01:00");
    }

    #[test]
    fn durations_too_large_to_represent_are_refused_not_panicked_on() {
        assert_eq!(parse_duration("99999999999999h"), None);
        assert_eq!(parse_duration("99999999999999999"), None);
        assert_eq!(parse_duration("9999999999999999s"), None);
        assert_eq!(parse_duration("106751991167d1d"), None);
    }

    #[test]
    fn skip_dates_and_prewarm_shift_the_next_fire() {
        let mut r = record();
        r.skip_dates = vec!["2027-01-04".into()];
        r.prewarm_minutes = 15;
        let s = Schedule::try_from(r).unwrap();
        let after = Utc.with_ymd_and_hms(2027, 1, 4, 0, 0, 0).unwrap();
        // Monday 4 January is skipped; Tuesday 19:00 CET = 18:00Z, minus 15 minutes.
        assert_eq!(
            s.next_fire_after(after, &Calendars::none())
                .unwrap()
                .time
                .utc,
            Utc.with_ymd_and_hms(2027, 1, 5, 17, 45, 0).unwrap()
        );
    }

    #[test]
    fn durations_parse_in_operator_units() {
        assert_eq!(parse_duration("15m"), Some(Duration::minutes(15)));
        assert_eq!(parse_duration("1h30m"), Some(Duration::minutes(90)));
        assert_eq!(parse_duration("45"), Some(Duration::minutes(45)));
        assert_eq!(parse_duration("2x"), None);
        assert_eq!(parse_duration("h"), None);
    }

    #[test]
    fn schedules_round_trip_through_their_record() {
        let s = Schedule::try_from(record()).unwrap();
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(json["tz"], "Europe/Berlin");
        assert_eq!(serde_json::from_value::<Schedule>(json).unwrap(), s);
    }

    fn window_record(asleep: &str) -> ScheduleRecord {
        ScheduleRecord {
            cron: None,
            action: None,
            asleep: Some(asleep.into()),
            ..record()
        }
    }

    fn listed(s: &Schedule, after: DateTime<Utc>, n: usize, cals: &Calendars) -> Vec<String> {
        s.occurrences_after(after, cals)
            .take(n)
            .map(|f| {
                let skip = f.skipped.map(|k| format!(" ({k})")).unwrap_or_default();
                format!("{} {}{skip}", f.time.local.format("%a %d %H:%M"), f.action)
            })
            .collect()
    }

    fn calendar(name: &str, dates: &[&str]) -> Calendars {
        std::iter::once(crate::calendar::Calendar::new(name, dates).unwrap()).collect()
    }

    /// Weeknights and weekends asleep, awake on the dates of calendar `release`: `date`.
    fn release_nights(date: &str) -> (Schedule, Calendars) {
        let mut r = window_record("Mon-Fri 19:00-07:00, Sat-Sun all-day");
        r.awake_calendars = vec!["release".into()];
        (Schedule::try_from(r).unwrap(), calendar("release", &[date]))
    }

    #[test]
    fn an_awake_on_date_wakes_a_window_at_its_first_minute_and_puts_it_back_after() {
        // Saturday 9 January 2027 is a release day.
        let (s, cals) = release_nights("2027-01-09");
        let friday_noon = Utc.with_ymd_and_hms(2027, 1, 8, 11, 0, 0).unwrap();
        assert_eq!(
            listed(&s, friday_noon, 4, &cals),
            [
                "Fri 08 19:00 stop",
                "Sat 09 00:00 start",
                "Sun 10 00:00 stop",
                "Mon 11 07:00 start"
            ]
        );
        assert_eq!(
            s.asleep_at(Utc.with_ymd_and_hms(2027, 1, 9, 11, 0, 0).unwrap(), &cals),
            Some(false)
        );
    }

    #[test]
    fn on_an_awake_on_weekday_the_windows_own_edges_show_as_skipped() {
        let (s, cals) = release_nights("2027-01-06");
        let tuesday_noon = Utc.with_ymd_and_hms(2027, 1, 5, 11, 0, 0).unwrap();
        assert_eq!(
            listed(&s, tuesday_noon, 6, &cals),
            [
                "Tue 05 19:00 stop",
                "Wed 06 00:00 start",
                "Wed 06 07:00 start (awake on calendar release)",
                "Wed 06 19:00 stop (awake on calendar release)",
                "Thu 07 00:00 stop",
                "Thu 07 07:00 start"
            ]
        );
        let next: Vec<Action> = s
            .fires_after(tuesday_noon, &cals)
            .take(3)
            .map(|f| f.action)
            .collect();
        assert_eq!(next, [Action::Stop, Action::Start, Action::Stop]);
    }

    #[test]
    fn a_cron_stop_schedule_skips_its_stops_on_awake_on_and_skip_calendar_dates() {
        let mut r = record();
        r.skip_calendars = vec!["holidays".into()];
        r.awake_calendars = vec!["release".into()];
        let s = Schedule::try_from(r).unwrap();
        let mut cals = calendar("holidays", &["2027-01-05"]);
        cals.insert(crate::calendar::Calendar::new("release", &["2027-01-06"]).unwrap());
        let monday = Utc.with_ymd_and_hms(2027, 1, 4, 11, 0, 0).unwrap();
        assert_eq!(
            listed(&s, monday, 4, &cals),
            [
                "Mon 04 19:00 stop",
                "Tue 05 19:00 stop (calendar holidays)",
                "Wed 06 19:00 stop (awake on calendar release)",
                "Thu 07 19:00 stop"
            ]
        );
        // A calendar the store no longer has skips nothing.
        assert_eq!(
            listed(&s, monday, 2, &Calendars::none()),
            ["Mon 04 19:00 stop", "Tue 05 19:00 stop"]
        );
    }

    #[test]
    fn window_skip_dates_suppress_both_fires_and_trigger_does_what_the_week_says() {
        let mut r = window_record("Mon-Fri 19:00-07:00, Sat-Sun all-day");
        r.skip_dates = vec!["2027-01-06".into()];
        let s = Schedule::try_from(r).unwrap();
        let none = Calendars::none();
        let tuesday_noon = Utc.with_ymd_and_hms(2027, 1, 5, 11, 0, 0).unwrap();
        assert_eq!(
            listed(&s, tuesday_noon, 4, &none),
            [
                "Tue 05 19:00 stop",
                "Wed 06 07:00 start (skip date)",
                "Wed 06 19:00 stop (skip date)",
                "Thu 07 07:00 start"
            ]
        );
        assert_eq!(s.action_at(tuesday_noon, &none), Action::Start);
        let night = Utc.with_ymd_and_hms(2027, 1, 5, 22, 0, 0).unwrap();
        assert_eq!(s.action_at(night, &none), Action::Stop);
    }

    #[test]
    fn window_fields_that_do_not_go_together_are_named() {
        type Mutation = fn(&mut ScheduleRecord);
        let cases: Vec<(Mutation, &str)> = vec![
            (|r| r.cron = Some("0 19 * * *".into()), "asleep"),
            (|r| r.action = Some("stop".into()), "action"),
            (|r| r.prewarm_minutes = 15, "prewarm"),
            (|r| r.asleep = Some("Mon 25:00-07:00".into()), "asleep"),
            (|r| r.asleep = None, "cron"),
            (|r| r.skip_calendars = vec!["a b".into()], "skip-calendar"),
            (
                |r| r.skip_calendars = vec!["x".into(), "x".into()],
                "skip-calendar",
            ),
            (
                |r| {
                    r.skip_calendars = vec!["x".into()];
                    r.awake_calendars = vec!["x".into()];
                },
                "awake-on-calendar",
            ),
        ];
        for (mutate, field) in cases {
            let mut r = window_record("Mon-Fri 19:00-07:00");
            mutate(&mut r);
            assert_eq!(Schedule::try_from(r).unwrap_err().field(), field);
        }
        let mut cron_enforced = record();
        cron_enforced.enforce = true;
        assert_eq!(
            Schedule::try_from(cron_enforced).unwrap_err().field(),
            "enforce"
        );
    }
}
