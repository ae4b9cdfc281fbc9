//! What sleeping saved: node-hours (node groups) and instance-hours (ASGs) kept asleep, from
//! the operations' recorded sizes and times. A successful stop that took a target to zero opens
//! an asleep interval worth its desired capacity before the stop; the next successful start of
//! that target closes it (still asleep: now closes it). Dry runs and drift checks change
//! nothing and count for nothing.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use curfew_core::decision::Action;
use curfew_core::operation::{OpSource, Operation, Task, TaskStatus};
use curfew_core::target::TargetKind;
use serde::Serialize;

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

/// Hours asleep per schedule and kind, and capacity asleep per hour, over a window.
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
}

/// The savings of `intervals` within `[until - days, until)`.
pub fn savings(intervals: &[Asleep], until: DateTime<Utc>, days: i64) -> Savings {
    let from = until - Duration::days(days);
    let mut s = Savings {
        from,
        until,
        node_hours: 0.0,
        instance_hours: 0.0,
        per_schedule: BTreeMap::new(),
        hourly: Vec::new(),
    };
    for a in intervals {
        let (start, end) = (a.from.max(from), a.until.min(until));
        if end <= start {
            continue;
        }
        let hours = (end - start).num_seconds() as f64 / 3600.0 * a.capacity as f64;
        let entry = s
            .per_schedule
            .entry(a.schedule.clone().unwrap_or_else(|| "manual".into()))
            .or_default();
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
    }
    s.hourly = (0..days * 24)
        .map(|h| {
            let middle = from + Duration::hours(h) + Duration::minutes(30);
            intervals
                .iter()
                .filter(|a| a.from <= middle && middle < a.until)
                .map(|a| a.capacity)
                .sum()
        })
        .collect();
    s
}

/// The hourly capacity asleep as an SVG bar chart (server-rendered: no script needed).
pub fn chart(s: &Savings) -> String {
    const W: f64 = 840.0;
    const H: f64 = 160.0;
    let peak = s.hourly.iter().copied().max().unwrap_or(0);
    let scale = peak.max(1) as f64;
    let bar = W / s.hourly.len().max(1) as f64;
    let mut bars = String::new();
    for (i, v) in s.hourly.iter().enumerate().filter(|(_, v)| **v > 0) {
        let h = *v as f64 / scale * (H - 36.0);
        bars.push_str(&format!(
            r#"<rect x="{:.1}" y="{:.1}" width="{:.1}" height="{:.1}"><title>{} asleep</title></rect>"#,
            i as f64 * bar,
            H - 18.0 - h,
            bar.max(1.0),
            h,
            v
        ));
    }
    let mut days = String::new();
    for d in 0..=(s.hourly.len() / 24) {
        let x = d as f64 * 24.0 * bar;
        days.push_str(&format!(
            r#"<line x1="{x:.1}" y1="0" x2="{x:.1}" y2="{H}" class="day"/>"#
        ));
        if d < s.hourly.len() / 24 {
            // Days are labelled in UTC, the chart's hours being UTC hours.
            let day = s.from + Duration::days(d as i64);
            days.push_str(&format!(
                r#"<text x="{:.1}" y="{:.1}">{}</text>"#,
                x + 4.0,
                H - 4.0,
                day.format("%a %d %b")
            ));
        }
    }
    format!(
        r#"<svg class="chart" id="savings-chart" viewBox="0 0 {W} {H}" role="img" aria-label="Capacity asleep per hour over the last {} days (peak {peak})">{days}<g class="asleep">{bars}</g><text x="4" y="14">peak {peak} asleep</text></svg>"#,
        s.hourly.len() / 24
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use curfew_core::target::{Sizes, Target};

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

    fn task(
        op_id: &str,
        kind: TargetKind,
        before: Sizes,
        after: Sizes,
        when: DateTime<Utc>,
    ) -> Task {
        let target = Target {
            account: "111111111111".into(),
            region: "eu-west-1".into(),
            kind,
            cluster: (kind == TargetKind::Nodegroup).then(|| "dev".to_string()),
            name: "web".into(),
            tags: Default::default(),
            cluster_tags: Default::default(),
        };
        let mut t = Task::pending(op_id, target, when);
        t.status = TaskStatus::Succeeded;
        t.before = Some(before);
        t.after = Some(after);
        t
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
        let intervals = asleep(&history, at(6, 0));
        assert_eq!(intervals.len(), 1);
        let s = savings(&intervals, at(6, 0), 7);
        assert_eq!(s.instance_hours, 36.0);
        assert_eq!(s.node_hours, 0.0);
        assert_eq!(s.per_schedule["dev-stop"], (0.0, 36.0));
        assert_eq!(s.hourly.iter().filter(|v| **v == 3).count(), 12);
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
        let s = savings(&asleep(&history, at(5, 0)), at(5, 0), 7);
        assert_eq!(s.node_hours, 16.0);
        assert_eq!(s.per_schedule["manual"], (16.0, 0.0));
    }

    #[test]
    fn the_chart_draws_one_bar_per_hour_asleep() {
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
        let s = savings(&asleep(&history, at(5, 0)), at(5, 0), 1);
        let svg = chart(&s);
        assert_eq!(svg.matches("<rect").count(), 3);
        assert!(svg.contains("peak 2 asleep"));
    }
}
