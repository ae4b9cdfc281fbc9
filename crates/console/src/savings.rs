//! What sleeping saved: node-hours (node groups) and instance-hours (ASGs) kept asleep, from
//! the operations' recorded sizes and times, priced where a price table says what an
//! instance-hour of the target's type costs; and the capacity awake beside it. A successful stop
//! that took a target to zero opens an asleep interval worth its desired capacity before the
//! stop; the next successful start of that target closes it (still asleep: now closes it). Dry
//! runs and drift checks change nothing and count for nothing.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use curfew_core::decision::Action;
use curfew_core::operation::{OpSource, Operation, Task, TaskStatus};
use curfew_core::target::TargetKind;
use serde::Serialize;

use crate::prices::{PriceTable, Unpriced};

/// One stretch of time a target slept.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Asleep {
    /// The target's key.
    pub target: String,
    /// ASG or node group.
    pub kind: TargetKind,
    /// The schedule whose stop put it to sleep (`None`: a manual stop).
    pub schedule: Option<String>,
    /// From the stop.
    pub from: DateTime<Utc>,
    /// To the start, or now.
    pub until: DateTime<Utc>,
    /// Instances (desired capacity) the stop took away.
    pub capacity: i64,
    /// The instance types the stopped target ran (its task's target, as discovered).
    pub instance_types: Vec<String>,
}

fn changed(task: &Task) -> bool {
    task.status == TaskStatus::Succeeded && task.before.is_some() && task.after.is_some()
}

/// The asleep intervals the operations record, oldest first, closed at `now` when no start
/// followed.
pub fn asleep(history: &[(Operation, Vec<Task>)], now: DateTime<Utc>) -> Vec<Asleep> {
    let mut events: Vec<(&Operation, &Task)> = history
        .iter()
        .filter(|(op, _)| !op.dry_run && !op.check)
        .flat_map(|(op, tasks)| tasks.iter().filter(|t| changed(t)).map(move |t| (op, t)))
        .collect();
    events.sort_by_key(|(_, t)| t.updated_at);
    let mut open: BTreeMap<String, Asleep> = BTreeMap::new();
    let mut done = Vec::new();
    for (op, task) in events {
        let key = task.target.key();
        let (Some(before), Some(after)) = (task.before, task.after) else {
            continue;
        };
        match op.action {
            Action::Stop if after.desired == 0 && before.desired > 0 => {
                // A second stop of a sleeping target changes nothing: the first one counts.
                open.entry(key.clone()).or_insert(Asleep {
                    target: key,
                    kind: task.target.kind,
                    schedule: match &op.source {
                        OpSource::Schedule { name, .. } => Some(name.clone()),
                        _ => None,
                    },
                    from: task.updated_at,
                    until: now,
                    capacity: i64::from(before.desired),
                    instance_types: task.target.instance_types.clone(),
                });
            }
            Action::Start => {
                if let Some(mut interval) = open.remove(&key) {
                    interval.until = task.updated_at;
                    done.push(interval);
                }
            }
            Action::Stop => {}
        }
    }
    done.extend(open.into_values());
    done.sort_by_key(|a| a.from);
    done
}

/// A target the fleet lists now, as the awake line counts it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listed {
    /// Its key.
    pub key: String,
    /// Its desired capacity now (`None`: its spoke could not be read).
    pub desired: Option<i64>,
}

/// Money saved and the hours it does not cover.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Priced {
    /// What the priced hours would have cost awake: hours x capacity x price per instance-hour.
    pub saved: f64,
    /// Node-hours asleep with no price (their targets' types unknown, unlisted or mixed).
    pub unpriced_node_hours: f64,
    /// Instance-hours asleep with no price.
    pub unpriced_instance_hours: f64,
}

/// A target whose asleep hours have no price, and why.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct UnpricedTarget {
    /// The target's key.
    pub target: String,
    /// ASG or node group.
    pub kind: TargetKind,
    /// Its instance types, as its stop's task recorded them.
    pub instance_types: Vec<String>,
    /// Why it has no price.
    pub reason: Unpriced,
    /// Its node-hours (node group) or instance-hours (ASG) in the window.
    pub hours: f64,
}

/// The money side of the savings, when a price table is configured.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Money {
    /// The price table's currency.
    pub currency: String,
    /// In total.
    #[serde(flatten)]
    pub total: Priced,
    /// Per schedule (`manual` for manual stops), the same keys as [`Savings::per_schedule`].
    pub per_schedule: BTreeMap<String, Priced>,
    /// The targets whose hours have no price, most hours first.
    pub unpriced: Vec<UnpricedTarget>,
}

/// Hours asleep per schedule and kind, their money where priced, and capacity asleep and awake
/// per hour, over a window.
#[derive(Clone, Debug, Serialize)]
pub struct Savings {
    /// The window's start.
    pub from: DateTime<Utc>,
    /// The window's end.
    pub until: DateTime<Utc>,
    /// Node-hours kept asleep (node groups).
    pub node_hours: f64,
    /// Instance-hours kept asleep (ASGs).
    pub instance_hours: f64,
    /// Per schedule (`manual` for manual stops): node-hours and instance-hours.
    pub per_schedule: BTreeMap<String, (f64, f64)>,
    /// Capacity asleep at the middle of each hour of the window, oldest first.
    pub hourly: Vec<i64>,
    /// Money saved, with what it leaves unpriced; `None` without a price table.
    pub money: Option<Money>,
    /// Capacity awake at the middle of each hour of the window, oldest first: see [`awake`].
    pub awake_hourly: Vec<i64>,
    /// The targets the awake line counts (those the fleet lists now).
    pub awake_targets: usize,
    /// Of them, those whose sizes could not be read now: counted only up to curfew's last
    /// reading of them.
    pub awake_unread: usize,
}

/// The savings over `[until - days, until)` that `history` (operations with their tasks)
/// records, priced by `prices` when given, with the awake capacity of the `listed` targets.
pub fn savings(
    history: &[(Operation, Vec<Task>)],
    listed: &[Listed],
    prices: Option<&PriceTable>,
    until: DateTime<Utc>,
    days: i64,
) -> Savings {
    let intervals = asleep(history, until);
    let from = until - Duration::days(days);
    let mut s = Savings {
        from,
        until,
        node_hours: 0.0,
        instance_hours: 0.0,
        per_schedule: BTreeMap::new(),
        hourly: Vec::new(),
        money: prices.map(|p| Money {
            currency: p.currency().to_string(),
            total: Priced::default(),
            per_schedule: BTreeMap::new(),
            unpriced: Vec::new(),
        }),
        awake_hourly: Vec::new(),
        awake_targets: listed.len(),
        awake_unread: listed.iter().filter(|l| l.desired.is_none()).count(),
    };
    let mut unpriced: BTreeMap<(String, Unpriced), UnpricedTarget> = BTreeMap::new();
    for a in &intervals {
        let (start, end) = (a.from.max(from), a.until.min(until));
        if end <= start {
            continue;
        }
        let hours = (end - start).num_seconds() as f64 / 3600.0 * a.capacity as f64;
        let schedule = a.schedule.clone().unwrap_or_else(|| "manual".into());
        let entry = s.per_schedule.entry(schedule.clone()).or_default();
        match a.kind {
            TargetKind::Nodegroup => {
                s.node_hours += hours;
                entry.0 += hours;
            }
            TargetKind::Asg => {
                s.instance_hours += hours;
                entry.1 += hours;
            }
        }
        if let (Some(money), Some(prices)) = (s.money.as_mut(), prices) {
            let price = prices.price(&a.instance_types);
            for priced in [
                &mut money.total,
                money.per_schedule.entry(schedule).or_default(),
            ] {
                match (&price, a.kind) {
                    (Ok(price), _) => priced.saved += hours * price,
                    (Err(_), TargetKind::Nodegroup) => priced.unpriced_node_hours += hours,
                    (Err(_), TargetKind::Asg) => priced.unpriced_instance_hours += hours,
                }
            }
            if let Err(reason) = price {
                unpriced
                    .entry((a.target.clone(), reason.clone()))
                    .or_insert_with(|| UnpricedTarget {
                        target: a.target.clone(),
                        kind: a.kind,
                        instance_types: a.instance_types.clone(),
                        reason,
                        hours: 0.0,
                    })
                    .hours += hours;
            }
        }
    }
    if let Some(money) = s.money.as_mut() {
        money.unpriced = unpriced.into_values().collect();
        money
            .unpriced
            .sort_by(|a, b| b.hours.total_cmp(&a.hours).then(a.target.cmp(&b.target)));
    }
    let middles: Vec<DateTime<Utc>> = (0..days * 24)
        .map(|h| from + Duration::hours(h) + Duration::minutes(30))
        .collect();
    s.hourly = middles
        .iter()
        .map(|&middle| {
            intervals
                .iter()
                .filter(|a| a.from <= middle && middle < a.until)
                .map(|a| a.capacity)
                .sum()
        })
        .collect();
    s.awake_hourly = awake(history, listed, &intervals, until, &middles);
    s
}

/// Capacity awake at each of `middles`: for every target the fleet lists now that was not
/// asleep then, its desired capacity as curfew next saw it, from a task's reading of its sizes
/// (`before`: what a stop, start, dry run or drift check found) or its live sizes now.
/// curfew reads sizes only when it acts or is asked, so between two readings this assumes the
/// later one held; a target with no reading after an hour (unreadable now) counts nothing there.
pub fn awake(
    history: &[(Operation, Vec<Task>)],
    listed: &[Listed],
    intervals: &[Asleep],
    now: DateTime<Utc>,
    middles: &[DateTime<Utc>],
) -> Vec<i64> {
    let mut seen: BTreeMap<&str, Vec<(DateTime<Utc>, i64)>> = listed
        .iter()
        .map(|l| {
            (
                l.key.as_str(),
                l.desired.map(|d| (now, d)).into_iter().collect(),
            )
        })
        .collect();
    for task in history.iter().flat_map(|(_, tasks)| tasks) {
        if let (Some(before), Some(readings)) =
            (task.before, seen.get_mut(task.target.key().as_str()))
        {
            readings.push((task.updated_at, i64::from(before.desired)));
        }
    }
    let mut slept: BTreeMap<&str, Vec<&Asleep>> = BTreeMap::new();
    for a in intervals {
        slept.entry(a.target.as_str()).or_default().push(a);
    }
    for readings in seen.values_mut() {
        readings.sort_by_key(|(at, _)| *at);
    }
    middles
        .iter()
        .map(|&middle| {
            seen.iter()
                .filter(|(key, _)| {
                    !slept
                        .get(*key)
                        .is_some_and(|s| s.iter().any(|a| a.from <= middle && middle < a.until))
                })
                .filter_map(|(_, readings)| {
                    let next = readings.partition_point(|(at, _)| *at < middle);
                    readings.get(next).map(|(_, desired)| *desired)
                })
                .sum()
        })
        .collect()
}

/// The hourly capacity asleep (bars) and awake (a line) as an SVG chart, server-rendered: no
/// script needed. Each hour carries a tooltip with both numbers.
pub fn chart(s: &Savings) -> String {
    const W: f64 = 840.0;
    const H: f64 = 220.0;
    // The plot sits between the legend (top) and the day labels (bottom).
    const TOP: f64 = 30.0;
    const BOTTOM: f64 = H - 22.0;
    let hours = s.hourly.len().max(s.awake_hourly.len());
    let at = |series: &[i64], i: usize| series.get(i).copied().unwrap_or(0);
    let asleep_peak = s.hourly.iter().copied().max().unwrap_or(0);
    let awake_peak = s.awake_hourly.iter().copied().max().unwrap_or(0);
    let scale = asleep_peak.max(awake_peak).max(1) as f64;
    let y = |v: i64| BOTTOM - v as f64 / scale * (BOTTOM - TOP);
    let bar = W / hours.max(1) as f64;
    let mut out = String::new();
    for d in 0..=(hours / 24) {
        let x = d as f64 * 24.0 * bar;
        out.push_str(&format!(
            r#"<line x1="{x:.1}" y1="{TOP}" x2="{x:.1}" y2="{H}" class="day"/>"#
        ));
        if d < hours / 24 {
            // Days are labelled in UTC, the chart's hours being UTC hours.
            let day = s.from + Duration::days(d as i64);
            out.push_str(&format!(
                r#"<text x="{:.1}" y="{:.1}">{}</text>"#,
                x + 4.0,
                H - 6.0,
                day.format("%a %d %b")
            ));
        }
    }
    out.push_str(&format!(
        r#"<line x1="0" y1="{BOTTOM}" x2="{W}" y2="{BOTTOM}" class="base"/><g class="asleep">"#
    ));
    for (i, v) in s.hourly.iter().enumerate().filter(|(_, v)| **v > 0) {
        out.push_str(&format!(
            r#"<rect x="{:.1}" y="{:.1}" width="{:.1}" height="{:.1}"/>"#,
            i as f64 * bar,
            y(*v),
            bar.max(1.0),
            BOTTOM - y(*v),
        ));
    }
    out.push_str("</g>");
    if !s.awake_hourly.is_empty() {
        // A step line: each hour's value held across the hour.
        let mut d = format!("M0,{:.1}", y(s.awake_hourly[0]));
        for (i, v) in s.awake_hourly.iter().enumerate() {
            d.push_str(&format!("H{:.1}", (i + 1) as f64 * bar));
            if let Some(next) = s.awake_hourly.get(i + 1).filter(|next| *next != v) {
                d.push_str(&format!("V{:.1}", y(*next)));
            }
        }
        out.push_str(&format!(r#"<path class="awake" d="{d}"/>"#));
    }
    out.push_str(r#"<g class="hours">"#);
    for i in 0..hours {
        let hour = s.from + Duration::hours(i as i64);
        out.push_str(&format!(
            r#"<rect x="{:.1}" y="{TOP}" width="{:.1}" height="{:.1}"><title>{} UTC: {} awake, {} asleep</title></rect>"#,
            i as f64 * bar,
            bar.max(1.0),
            BOTTOM - TOP,
            hour.format("%a %d %b %H:00"),
            at(&s.awake_hourly, i),
            at(&s.hourly, i),
        ));
    }
    out.push_str("</g>");
    format!(
        r#"<svg class="chart" id="savings-chart" viewBox="0 0 {W} {H}" role="img" aria-label="Capacity awake and asleep per hour over the last {days} days (peak {awake_peak} awake, {asleep_peak} asleep)">{out}<g class="legend"><line class="legend-awake" x1="8" y1="13" x2="26" y2="13"/><text x="32" y="17">awake (peak {awake_peak})</text><rect class="legend-asleep" x="190" y="6" width="14" height="14"/><text x="210" y="17">asleep (peak {asleep_peak})</text></g></svg>"#,
        days = hours / 24,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use curfew_core::target::{Sizes, Target};
    use std::path::Path;

    fn at(day: u32, hour: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2027, 1, day, hour, 0, 0).unwrap()
    }

    fn op(id: &str, action: &str, schedule: Option<&str>, dry_run: bool) -> Operation {
        let source = match schedule {
            Some(name) => {
                serde_json::json!({"type": "schedule", "name": name, "fire_time": "2027-01-04T18:00:00Z"})
            }
            None => serde_json::json!({"type": "manual"}),
        };
        serde_json::from_value(serde_json::json!({
            "id": id, "action": action, "selector": "tag:env=dev", "source": source,
            "created_at": "2027-01-04T18:00:00Z", "dry_run": dry_run, "status": "SUCCEEDED",
        }))
        .unwrap()
    }

    fn target(kind: TargetKind, name: &str, types: &[&str]) -> Target {
        Target {
            account: "111111111111".into(),
            region: "eu-west-1".into(),
            kind,
            cluster: (kind == TargetKind::Nodegroup).then(|| "dev".to_string()),
            name: name.into(),
            tags: Default::default(),
            cluster_tags: Default::default(),
            instance_types: types.iter().map(|t| t.to_string()).collect(),
        }
    }

    fn task_of(
        op_id: &str,
        target: Target,
        before: Sizes,
        after: Sizes,
        when: DateTime<Utc>,
    ) -> Task {
        let mut t = Task::pending(op_id, target, when);
        t.status = TaskStatus::Succeeded;
        t.before = Some(before);
        t.after = Some(after);
        t
    }

    fn task(
        op_id: &str,
        kind: TargetKind,
        before: Sizes,
        after: Sizes,
        when: DateTime<Utc>,
    ) -> Task {
        task_of(op_id, target(kind, "web", &[]), before, after, when)
    }

    /// A stop by `schedule` at `from` and a start at `until` of each target, asleep at the
    /// desired capacity `desired`.
    fn night(
        schedule: &str,
        targets: &[(Target, i32)],
        from: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Vec<(Operation, Vec<Task>)> {
        let stop = |(t, d): &(Target, i32)| {
            let asleep = t.kind.stopped_sizes(Sizes::new(1, 6, *d));
            task_of("stop", t.clone(), Sizes::new(1, 6, *d), asleep, from)
        };
        let start = |(t, d): &(Target, i32)| {
            let asleep = t.kind.stopped_sizes(Sizes::new(1, 6, *d));
            task_of("start", t.clone(), asleep, Sizes::new(1, 6, *d), until)
        };
        vec![
            (
                op("stop", "stop", Some(schedule), false),
                targets.iter().map(stop).collect(),
            ),
            (
                op("start", "start", Some(schedule), false),
                targets.iter().map(start).collect(),
            ),
        ]
    }

    fn prices() -> PriceTable {
        PriceTable::parse(
            "currency = \"EUR\"\n[prices]\nt3.micro = 0.01\nt3a.micro = 0.01\nm5.large = 0.1\nm5a.large = 0.09\n",
            Path::new("prices.toml"),
        )
        .unwrap()
    }

    #[test]
    fn a_night_asleep_counts_its_capacity_times_its_hours() {
        let history = vec![
            (
                op("stop", "stop", Some("dev-stop"), false),
                vec![task(
                    "stop",
                    TargetKind::Asg,
                    Sizes::new(1, 4, 3),
                    Sizes::new(0, 0, 0),
                    at(4, 18),
                )],
            ),
            (
                op("start", "start", Some("dev-start"), false),
                vec![task(
                    "start",
                    TargetKind::Asg,
                    Sizes::new(0, 0, 0),
                    Sizes::new(1, 4, 3),
                    at(5, 6),
                )],
            ),
        ];
        assert_eq!(asleep(&history, at(6, 0)).len(), 1);
        let s = savings(&history, &[], None, at(6, 0), 7);
        assert_eq!(s.instance_hours, 36.0);
        assert_eq!(s.node_hours, 0.0);
        assert_eq!(s.per_schedule["dev-stop"], (0.0, 36.0));
        assert_eq!(s.hourly.iter().filter(|v| **v == 3).count(), 12);
        assert_eq!(s.money, None, "no price table, no money");
    }

    #[test]
    fn a_target_still_asleep_counts_until_now_and_dry_runs_count_for_nothing() {
        let history = vec![
            (
                op("dry", "stop", None, true),
                vec![task(
                    "dry",
                    TargetKind::Nodegroup,
                    Sizes::new(1, 5, 4),
                    Sizes::new(0, 5, 0),
                    at(4, 10),
                )],
            ),
            (
                op("stop", "stop", None, false),
                vec![task(
                    "stop",
                    TargetKind::Nodegroup,
                    Sizes::new(1, 5, 4),
                    Sizes::new(0, 5, 0),
                    at(4, 20),
                )],
            ),
        ];
        let s = savings(&history, &[], None, at(5, 0), 7);
        assert_eq!(s.node_hours, 16.0);
        assert_eq!(s.per_schedule["manual"], (16.0, 0.0));
    }

    #[test]
    fn priced_hours_are_hours_times_capacity_times_the_price() {
        let history = night(
            "dev-stop",
            &[(target(TargetKind::Asg, "web", &["t3.micro"]), 3)],
            at(4, 18),
            at(5, 6),
        );
        let s = savings(&history, &[], Some(&prices()), at(6, 0), 7);
        let money = s.money.unwrap();
        assert_eq!(money.currency, "EUR");
        // 12 hours x 3 instances x 0.01.
        assert!(
            (money.total.saved - 0.36).abs() < 1e-9,
            "{}",
            money.total.saved
        );
        assert_eq!(money.total.unpriced_instance_hours, 0.0);
        assert!((money.per_schedule["dev-stop"].saved - 0.36).abs() < 1e-9);
        assert!(money.unpriced.is_empty());
    }

    #[test]
    fn several_types_at_one_price_are_priced_at_it() {
        let history = night(
            "dev-stop",
            &[(
                target(TargetKind::Asg, "web", &["t3.micro", "t3a.micro"]),
                2,
            )],
            at(4, 18),
            at(5, 6),
        );
        let money = savings(&history, &[], Some(&prices()), at(6, 0), 7)
            .money
            .unwrap();
        assert!(
            (money.total.saved - 0.24).abs() < 1e-9,
            "{}",
            money.total.saved
        );
    }

    #[test]
    fn an_unpriced_type_counts_its_hours_as_not_priced_and_names_the_target() {
        let history = night(
            "dev-stop",
            &[
                (target(TargetKind::Asg, "web", &["t3.micro"]), 1),
                (target(TargetKind::Nodegroup, "gpu", &["g5.xlarge"]), 2),
                (target(TargetKind::Asg, "legacy", &[]), 4),
            ],
            at(4, 18),
            at(5, 6),
        );
        let s = savings(&history, &[], Some(&prices()), at(6, 0), 7);
        assert_eq!((s.node_hours, s.instance_hours), (24.0, 60.0));
        let money = s.money.unwrap();
        assert!(
            (money.total.saved - 0.12).abs() < 1e-9,
            "only web is priced"
        );
        assert_eq!(money.total.unpriced_node_hours, 24.0);
        assert_eq!(money.total.unpriced_instance_hours, 48.0);
        assert_eq!(money.per_schedule["dev-stop"].unpriced_node_hours, 24.0);
        let reasons: Vec<(String, String, f64)> = money
            .unpriced
            .iter()
            .map(|u| (u.target.clone(), u.reason.to_string(), u.hours))
            .collect();
        assert_eq!(
            reasons,
            [
                (
                    "111111111111#eu-west-1#asg#legacy".to_string(),
                    "instance type not known".to_string(),
                    48.0
                ),
                (
                    "111111111111#eu-west-1#nodegroup#dev/gpu".to_string(),
                    "no price for g5.xlarge".to_string(),
                    24.0
                ),
            ]
        );
    }

    #[test]
    fn a_target_of_types_at_different_prices_is_not_priced_and_says_why() {
        let history = night(
            "dev-stop",
            &[(
                target(TargetKind::Nodegroup, "mixed", &["m5.large", "m5a.large"]),
                2,
            )],
            at(4, 18),
            at(5, 6),
        );
        let money = savings(&history, &[], Some(&prices()), at(6, 0), 7)
            .money
            .unwrap();
        assert_eq!(money.total.saved, 0.0);
        assert_eq!(money.total.unpriced_node_hours, 24.0);
        assert!(matches!(money.unpriced[0].reason, Unpriced::MixedPrices(_)));
        assert!(
            money.unpriced[0]
                .reason
                .to_string()
                .starts_with("mixed prices (m5.large 0.1, m5a.large 0.09)"),
            "{}",
            money.unpriced[0].reason
        );
    }

    fn listed(name: &str, kind: TargetKind, desired: Option<i64>) -> Listed {
        Listed {
            key: target(kind, name, &[]).key(),
            desired,
        }
    }

    #[test]
    fn the_awake_line_counts_each_listed_target_outside_its_nights_at_its_next_reading() {
        // web: 3 instances when the stop found it at 18:00, asleep until 06:00, 5 now.
        let history = night(
            "dev-stop",
            &[(target(TargetKind::Asg, "web", &[]), 3)],
            at(4, 18),
            at(5, 6),
        );
        let listed = [
            listed("web", TargetKind::Asg, Some(5)),
            // Never touched by curfew: its live size, every hour.
            listed("db", TargetKind::Asg, Some(2)),
        ];
        let s = savings(&history, &listed, None, at(6, 0), 2);
        assert_eq!((s.awake_targets, s.awake_unread), (2, 0));
        let hour = |day: u32, h: u32| ((at(day, h) - s.from).num_hours()) as usize;
        assert_eq!(s.awake_hourly.len(), 48);
        assert_eq!(
            s.awake_hourly[hour(4, 17)],
            3 + 2,
            "before the stop: its reading then"
        );
        assert_eq!(s.awake_hourly[hour(4, 23)], 2, "asleep: not awake");
        assert_eq!(s.hourly[hour(4, 23)], 3);
        assert_eq!(
            s.awake_hourly[hour(5, 6)],
            5 + 2,
            "after the start: its size now"
        );
        assert_eq!(s.awake_hourly[hour(5, 23)], 5 + 2);
    }

    #[test]
    fn an_unreadable_target_counts_only_up_to_its_last_reading() {
        let history = night(
            "dev-stop",
            &[(target(TargetKind::Nodegroup, "workers", &[]), 4)],
            at(4, 18),
            at(5, 6),
        );
        let listed = [listed("workers", TargetKind::Nodegroup, None)];
        let s = savings(&history, &listed, None, at(6, 0), 2);
        assert_eq!((s.awake_targets, s.awake_unread), (1, 1));
        let hour = |day: u32, h: u32| ((at(day, h) - s.from).num_hours()) as usize;
        assert_eq!(s.awake_hourly[hour(4, 10)], 4);
        // The start's reading (asleep, 0) is its last: nothing known after it.
        assert_eq!(s.awake_hourly[hour(5, 12)], 0);
        // A target curfew has no record of is not counted at all.
        let s = savings(&[], &listed, None, at(6, 0), 2);
        assert!(s.awake_hourly.iter().all(|v| *v == 0));
    }

    fn asleep_group(svg: &str) -> &str {
        let start = svg.find(r#"<g class="asleep">"#).unwrap();
        let end = svg[start..].find("</g>").unwrap();
        &svg[start..start + end]
    }

    #[test]
    fn the_chart_draws_one_bar_per_hour_asleep_and_the_awake_line_with_a_legend() {
        let history = vec![(
            op("stop", "stop", None, false),
            vec![task(
                "stop",
                TargetKind::Asg,
                Sizes::new(1, 4, 2),
                Sizes::new(0, 0, 0),
                at(4, 21),
            )],
        )];
        let listed = [
            listed("web", TargetKind::Asg, Some(0)),
            listed("db", TargetKind::Asg, Some(6)),
        ];
        let s = savings(&history, &listed, None, at(5, 0), 1);
        let svg = chart(&s);
        assert_eq!(asleep_group(&svg).matches("<rect").count(), 3);
        // 2 awake (web) + 6 (db) until the stop at 21:00, then db's 6 alone.
        let path = svg
            .split(r#"<path class="awake" d=""#)
            .nth(1)
            .and_then(|p| p.split('"').next())
            .expect("an awake line");
        assert_eq!(path.matches('V').count(), 1, "{path}");
        assert!(svg.contains("awake (peak 8)"), "{svg}");
        assert!(svg.contains("asleep (peak 2)"), "{svg}");
        assert!(
            svg.contains("Mon 04 Jan 22:00 UTC: 6 awake, 2 asleep"),
            "{svg}"
        );
    }
}
