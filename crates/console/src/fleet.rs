//! The fleet as the console shows it: every target a selector matches, with its live sizes,
//! whether curfew holds it asleep (and the baseline a start would restore), the override that
//! keeps it awake, and the next fires of the schedules that cover it.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use curfew_core::decision::Action;
use curfew_core::operation::Discovery;
use curfew_core::ports::{Override, PortResult};
use curfew_core::schedule::Schedule;
use curfew_core::selector::Selector;
use curfew_core::service::{router, Hub};
use curfew_core::target::{Sizes, Target};
use serde::Serialize;

/// One target on the fleet page.
#[derive(Clone, Debug, Serialize)]
pub struct FleetTarget {
    /// `account#region#kind#[cluster/]name`.
    pub key: String,
    /// The target.
    #[serde(flatten)]
    pub target: Target,
    /// Sizes now (min/max/desired), unless the spoke could not be read.
    pub sizes: Option<Sizes>,
    /// True when curfew holds it asleep (a baseline is saved).
    pub asleep: bool,
    /// The sizes a start restores, when asleep.
    pub baseline: Option<Sizes>,
    /// Until when an override keeps it awake (stops skip it), if one does.
    pub awake_until: Option<DateTime<Utc>>,
    /// The next time an enabled schedule stops it, and which.
    pub next_stop: Option<NextFire>,
    /// The next time an enabled schedule starts it, and which.
    pub next_start: Option<NextFire>,
    /// Why its sizes are unknown.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

/// The next fire of a schedule covering a target.
#[derive(Clone, Debug, Serialize)]
pub struct NextFire {
    /// The schedule.
    pub schedule: String,
    /// When (UTC).
    pub at: DateTime<Utc>,
}

/// Totals over the listed targets.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Totals {
    /// Targets listed.
    pub targets: usize,
    /// Of them, held asleep.
    pub asleep: usize,
    /// Nodes (desired capacity) running now.
    pub nodes_running: i64,
    /// Nodes the asleep targets' baselines would run: capacity kept asleep right now.
    pub nodes_asleep: i64,
}

/// The fleet a selector matches.
#[derive(Clone, Debug, Serialize)]
pub struct Fleet {
    /// The targets, by key.
    pub targets: Vec<FleetTarget>,
    /// Totals over them.
    pub totals: Totals,
    /// Accounts or regions that could not be listed (the others are shown regardless).
    pub problems: Vec<String>,
}

/// Reads the fleet `selector` matches: the inventory (cached while fresh, else listed live,
/// caching nothing), each target's live sizes, the baselines saved per account and region, the
/// overrides in force and the schedules. Writes nothing.
pub async fn fleet(hub: &Hub, selector: &Selector) -> PortResult<Fleet> {
    let now = hub.clock.now();
    // The plan of a stop reads every matching target live and writes nothing: the same reads
    // `curfew plan` makes, so the console and the command line agree on what a target is.
    let plan = router::plan(hub, Action::Stop, selector, Discovery::Cached, None).await?;
    let shards: BTreeSet<(String, String)> = plan
        .changes
        .iter()
        .map(|c| (c.target.account.clone(), c.target.region.clone()))
        .collect();
    let mut baselines = BTreeMap::new();
    for (account, region) in &shards {
        for b in hub.store.asleep_baselines(account, region).await? {
            baselines.insert(b.target_key.clone(), b.sizes);
        }
    }
    let overrides = hub.store.active_overrides(now).await?;
    let schedules = hub.store.list_schedules().await?.schedules;
    let mut fires: Vec<(&Schedule, Action, DateTime<Utc>)> = Vec::new();
    for s in schedules.iter().filter(|s| s.enabled) {
        let calendars = curfew_core::service::poller::schedule_calendars(hub, s).await?;
        for action in [Action::Stop, Action::Start] {
            if let Some(at) = s.next_fire_doing(now, action, &calendars) {
                fires.push((s, action, at));
            }
        }
    }
    let next = |target: &Target, action: Action| {
        fires
            .iter()
            .filter(|(s, a, _)| *a == action && s.selector.matches(target))
            .map(|(s, _, at)| (s, at))
            .min_by_key(|(_, at)| *at)
            .map(|(s, at)| NextFire {
                schedule: s.name.clone(),
                at: *at,
            })
    };
    let mut totals = Totals::default();
    let targets: Vec<FleetTarget> = plan
        .changes
        .into_iter()
        .map(|change| {
            let key = change.target.key();
            let baseline = baselines.get(&key).copied();
            // A target whose spoke could not be read has a reason and zero sizes in the plan.
            let unreadable = change
                .reason
                .as_deref()
                .filter(|r| r.starts_with("could not read"))
                .map(str::to_string);
            let sizes = unreadable.is_none().then_some(change.live);
            totals.targets += 1;
            totals.nodes_running += sizes.map_or(0, |s| i64::from(s.desired));
            if let Some(b) = baseline {
                totals.asleep += 1;
                totals.nodes_asleep += i64::from(b.desired);
            }
            FleetTarget {
                awake_until: Override::awake_until(&overrides, &change.target, now),
                next_stop: next(&change.target, Action::Stop),
                next_start: next(&change.target, Action::Start),
                key,
                sizes,
                asleep: baseline.is_some(),
                baseline,
                problem: unreadable,
                target: change.target,
            }
        })
        .collect();
    Ok(Fleet {
        targets,
        totals,
        problems: plan.problems,
    })
}
