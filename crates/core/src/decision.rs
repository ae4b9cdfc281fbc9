//! The decision: what to do to one target, given its live state, its saved baseline and the
//! action. Pure: no I/O, so every rule in DESIGN.md "Semantics" is tested here directly.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::target::{LiveState, Processes, Sizes, TargetKind};

/// Stop (scale to zero, saving a baseline) or start (restore the baseline).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Save the baseline and scale to zero.
    Stop,
    /// Restore the baseline and retire it.
    Start,
}

impl Action {
    /// `stop` or `start`.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Stop => "stop",
            Action::Start => "start",
        }
    }

    /// Parses `stop` or `start`.
    pub fn parse(input: &str) -> Option<Action> {
        match input {
            "stop" => Some(Action::Stop),
            "start" => Some(Action::Start),
            _ => None,
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Everything the decision looks at.
#[derive(Clone, Copy, Debug)]
pub struct DecisionInput {
    /// Stop or start.
    pub action: Action,
    /// ASG or node group (they stop at different sizes).
    pub kind: TargetKind,
    /// What the spoke reports now.
    pub live: LiveState,
    /// The sizes saved by an earlier stop, if any.
    pub baseline: Option<Sizes>,
    /// Sizes a start uses when no baseline is saved (set per schedule), if any.
    pub default_start: Option<Sizes>,
    /// An override keeping the target awake until this instant, if any.
    pub awake_until: Option<DateTime<Utc>>,
    /// Now.
    pub now: DateTime<Utc>,
}

/// What to do to the target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Change the target's sizes.
    Scale {
        /// Sizes to save as the baseline first (a stop with no baseline yet).
        save_baseline: Option<Sizes>,
        /// Sizes to set.
        to: Sizes,
        /// Retire the baseline afterwards (a start).
        retire_baseline: bool,
    },
    /// The target is already where a start would put it; only retire the baseline.
    RetireBaseline,
    /// Leave the target alone.
    Skip(SkipReason),
    /// Not now: try again later (an EKS update in flight).
    RetryLater(String),
}

/// Why a target was left alone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SkipReason {
    /// Stop: already at its stopped sizes and a baseline is saved.
    AlreadyStopped,
    /// Stop: at its stopped sizes with no baseline, so there is nothing worth saving.
    StoppedWithoutBaseline,
    /// Start: no baseline saved and no default size configured.
    NoBaseline,
    /// Start: no baseline saved and the target is not at its stopped sizes: curfew did not put
    /// it to sleep, so a default start size must not resize it.
    AwakeWithoutBaseline,
    /// Start: no baseline saved, asleep, and already at the schedule's default start sizes.
    AtDefaultStart,
    /// Stop: an override keeps it awake.
    KeptAwake(DateTime<Utc>),
}

impl fmt::Display for SkipReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SkipReason::AlreadyStopped => f.write_str("already stopped; saved baseline kept"),
            SkipReason::StoppedWithoutBaseline => f.write_str(
                "already at its stopped sizes and no baseline is saved; nothing to save",
            ),
            SkipReason::NoBaseline => f.write_str(
                "no saved baseline to restore (it was not stopped by curfew) and no default size is set",
            ),
            SkipReason::AwakeWithoutBaseline => f.write_str(
                "not stopped by curfew (no saved baseline) and not at its stopped sizes; left as it is",
            ),
            SkipReason::AtDefaultStart => f.write_str(
                "no saved baseline; already at the schedule's default start sizes",
            ),
            SkipReason::KeptAwake(until) => {
                write!(
                    f,
                    "kept awake by an override until {}",
                    until.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                )
            }
        }
    }
}

/// Decides what to do to one target. See DESIGN.md "Semantics that must hold".
pub fn decide(input: &DecisionInput) -> Decision {
    let live = input.live.sizes;
    if input.live.busy {
        return Decision::RetryLater("an update is in progress on the node group".into());
    }
    match input.action {
        Action::Stop => {
            if let Some(until) = input.awake_until.filter(|u| *u > input.now) {
                return Decision::Skip(SkipReason::KeptAwake(until));
            }
            let stopped = input.kind.stopped_sizes(live);
            match (input.baseline, live == stopped) {
                (Some(_), true) => Decision::Skip(SkipReason::AlreadyStopped),
                // Woken by hand while a baseline is saved: scale down again, and keep the
                // original baseline (never overwrite it with the hand-set sizes).
                (Some(_), false) => Decision::Scale {
                    save_baseline: None,
                    to: stopped,
                    retire_baseline: false,
                },
                (None, true) => Decision::Skip(SkipReason::StoppedWithoutBaseline),
                (None, false) => Decision::Scale {
                    save_baseline: Some(live),
                    to: stopped,
                    retire_baseline: false,
                },
            }
        }
        Action::Start => match input.baseline {
            Some(baseline) => {
                let to = start_sizes(baseline, live);
                if to == live {
                    Decision::RetireBaseline
                } else {
                    Decision::Scale {
                        save_baseline: None,
                        to,
                        retire_baseline: true,
                    }
                }
            }
            // A default start size is for targets found asleep with nothing to restore; a
            // running group that curfew never stopped is someone else's and keeps its sizes.
            None => {
                let Some(default) = input.default_start else {
                    return Decision::Skip(SkipReason::NoBaseline);
                };
                if live != input.kind.stopped_sizes(live) {
                    return Decision::Skip(SkipReason::AwakeWithoutBaseline);
                }
                let to = start_sizes(default, live);
                if to == live {
                    Decision::Skip(SkipReason::AtDefaultStart)
                } else {
                    Decision::Scale {
                        save_baseline: None,
                        to,
                        retire_baseline: false,
                    }
                }
            }
        },
    }
}

/// Start sizes: min and max from the baseline, desired = max(baseline, live) so a start never
/// shrinks a group someone woke by hand. If the hand-set desired is above the baseline max, max
/// is raised to it rather than shrinking the group (min <= desired <= max must hold).
pub fn start_sizes(baseline: Sizes, live: Sizes) -> Sizes {
    let desired = baseline.desired.max(live.desired);
    Sizes::new(baseline.min, baseline.max.max(desired), desired)
}

/// Whether a target read as `live` is asleep the way a stop holds it, as far as its sizes and
/// processes show: at its stopped sizes, not UPDATING, and an ASG with every process a stop
/// suspends still suspended. `holds_more`: the target opts into a hold mode (Cluster Autoscaler
/// tags, a cluster-wide hold) whose state a size read cannot show, so it never counts as held
/// here. An enforce pass gives no task to a target held asleep (the router's pre-read); the
/// worker decides every target it gets on its own read under the lease.
pub fn held_asleep(kind: TargetKind, live: LiveState, holds_more: bool) -> bool {
    !holds_more
        && !live.busy
        && live.sizes == kind.stopped_sizes(live.sizes)
        && (kind != TargetKind::Asg || live.suspended.contains(Processes::HELD))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use proptest::prelude::*;

    fn input(
        action: Action,
        kind: TargetKind,
        live: Sizes,
        baseline: Option<Sizes>,
    ) -> DecisionInput {
        DecisionInput {
            action,
            kind,
            live: LiveState {
                sizes: live,
                busy: false,
                suspended: Default::default(),
            },
            baseline,
            default_start: None,
            awake_until: None,
            now: Utc.with_ymd_and_hms(2027, 1, 4, 18, 0, 0).unwrap(),
        }
    }

    #[test]
    fn stopping_an_asg_saves_its_sizes_and_holds_it_at_zero() {
        let d = decide(&input(
            Action::Stop,
            TargetKind::Asg,
            Sizes::new(2, 6, 4),
            None,
        ));
        assert_eq!(
            d,
            Decision::Scale {
                save_baseline: Some(Sizes::new(2, 6, 4)),
                to: Sizes::new(0, 0, 0),
                retire_baseline: false
            }
        );
    }

    #[test]
    fn stopping_a_nodegroup_keeps_its_max() {
        let d = decide(&input(
            Action::Stop,
            TargetKind::Nodegroup,
            Sizes::new(1, 5, 3),
            None,
        ));
        assert_eq!(
            d,
            Decision::Scale {
                save_baseline: Some(Sizes::new(1, 5, 3)),
                to: Sizes::new(0, 5, 0),
                retire_baseline: false
            }
        );
    }

    #[test]
    fn an_asg_at_zero_min_and_desired_but_positive_max_is_not_yet_stopped() {
        let d = decide(&input(
            Action::Stop,
            TargetKind::Asg,
            Sizes::new(0, 4, 0),
            None,
        ));
        assert_eq!(
            d,
            Decision::Scale {
                save_baseline: Some(Sizes::new(0, 4, 0)),
                to: Sizes::new(0, 0, 0),
                retire_baseline: false
            }
        );
    }

    #[test]
    fn stopping_twice_keeps_the_first_baseline() {
        let d = decide(&input(
            Action::Stop,
            TargetKind::Asg,
            Sizes::new(0, 0, 0),
            Some(Sizes::new(2, 6, 4)),
        ));
        assert_eq!(d, Decision::Skip(SkipReason::AlreadyStopped));
    }

    #[test]
    fn a_target_woken_by_hand_is_stopped_again_without_touching_its_baseline() {
        let d = decide(&input(
            Action::Stop,
            TargetKind::Asg,
            Sizes::new(1, 3, 1),
            Some(Sizes::new(2, 6, 4)),
        ));
        assert_eq!(
            d,
            Decision::Scale {
                save_baseline: None,
                to: Sizes::new(0, 0, 0),
                retire_baseline: false
            }
        );
    }

    #[test]
    fn a_stopped_target_without_baseline_is_skipped_with_the_reason() {
        let d = decide(&input(
            Action::Stop,
            TargetKind::Nodegroup,
            Sizes::new(0, 3, 0),
            None,
        ));
        assert_eq!(d, Decision::Skip(SkipReason::StoppedWithoutBaseline));
    }

    #[test]
    fn starting_restores_the_baseline_exactly_and_retires_it() {
        let d = decide(&input(
            Action::Start,
            TargetKind::Asg,
            Sizes::new(0, 0, 0),
            Some(Sizes::new(2, 6, 4)),
        ));
        assert_eq!(
            d,
            Decision::Scale {
                save_baseline: None,
                to: Sizes::new(2, 6, 4),
                retire_baseline: true
            }
        );
    }

    #[test]
    fn starting_never_shrinks_a_group_woken_by_hand() {
        let d = decide(&input(
            Action::Start,
            TargetKind::Nodegroup,
            Sizes::new(0, 5, 5),
            Some(Sizes::new(1, 5, 2)),
        ));
        assert_eq!(
            d,
            Decision::Scale {
                save_baseline: None,
                to: Sizes::new(1, 5, 5),
                retire_baseline: true
            }
        );
    }

    #[test]
    fn a_default_start_size_never_resizes_a_running_group_curfew_did_not_stop() {
        let mut i = input(Action::Start, TargetKind::Asg, Sizes::new(1, 6, 2), None);
        i.default_start = Some(Sizes::new(1, 3, 2));
        assert_eq!(decide(&i), Decision::Skip(SkipReason::AwakeWithoutBaseline));
        // An ASG at 0/4/0 is not at its stopped sizes (0/0/0) either.
        i.live.sizes = Sizes::new(0, 4, 0);
        assert_eq!(decide(&i), Decision::Skip(SkipReason::AwakeWithoutBaseline));
    }

    #[test]
    fn an_asleep_node_group_already_at_the_default_start_is_skipped_saying_so() {
        let mut i = input(
            Action::Start,
            TargetKind::Nodegroup,
            Sizes::new(0, 3, 0),
            None,
        );
        i.default_start = Some(Sizes::new(0, 3, 0));
        assert_eq!(decide(&i), Decision::Skip(SkipReason::AtDefaultStart));
        assert!(SkipReason::AtDefaultStart
            .to_string()
            .contains("default start"));
    }

    #[test]
    fn starting_without_baseline_is_skipped_unless_a_default_is_set() {
        let mut i = input(Action::Start, TargetKind::Asg, Sizes::new(0, 0, 0), None);
        assert_eq!(decide(&i), Decision::Skip(SkipReason::NoBaseline));
        i.default_start = Some(Sizes::new(1, 2, 1));
        assert_eq!(
            decide(&i),
            Decision::Scale {
                save_baseline: None,
                to: Sizes::new(1, 2, 1),
                retire_baseline: false
            }
        );
    }

    #[test]
    fn a_start_of_a_target_already_at_its_baseline_only_retires_it() {
        let d = decide(&input(
            Action::Start,
            TargetKind::Asg,
            Sizes::new(2, 6, 4),
            Some(Sizes::new(2, 6, 4)),
        ));
        assert_eq!(d, Decision::RetireBaseline);
    }

    #[test]
    fn a_busy_nodegroup_is_retried_later_not_failed() {
        let mut i = input(
            Action::Stop,
            TargetKind::Nodegroup,
            Sizes::new(1, 3, 1),
            None,
        );
        i.live.busy = true;
        assert!(matches!(decide(&i), Decision::RetryLater(_)));
    }

    #[test]
    fn an_override_keeps_a_target_awake_until_it_expires() {
        let mut i = input(Action::Stop, TargetKind::Asg, Sizes::new(1, 3, 1), None);
        i.awake_until = Some(i.now + chrono::Duration::hours(1));
        assert!(matches!(
            decide(&i),
            Decision::Skip(SkipReason::KeptAwake(_))
        ));
        i.awake_until = Some(i.now - chrono::Duration::hours(1));
        assert!(matches!(decide(&i), Decision::Scale { .. }));
    }

    fn sizes() -> impl Strategy<Value = Sizes> {
        (0..20i32, 0..20i32, 0..20i32).prop_map(|(a, b, c)| {
            let mut v = [a, b, c];
            v.sort();
            Sizes::new(v[0], v[2], v[1])
        })
    }

    proptest! {
        #[test]
        fn stop_then_start_restores_any_valid_sizes(live in sizes(), asg in any::<bool>()) {
            let kind = if asg { TargetKind::Asg } else { TargetKind::Nodegroup };
            let stop = decide(&input(Action::Stop, kind, live, None));
            let (baseline, stopped) = match stop {
                Decision::Scale { save_baseline: Some(b), to, .. } => (b, to),
                Decision::Skip(SkipReason::StoppedWithoutBaseline) => return Ok(()),
                other => panic!("unexpected {other:?}"),
            };
            prop_assert!(stopped.is_valid() || kind == TargetKind::Asg);
            let again = decide(&input(Action::Stop, kind, stopped, Some(baseline)));
            prop_assert_eq!(again, Decision::Skip(SkipReason::AlreadyStopped));
            match decide(&input(Action::Start, kind, stopped, Some(baseline))) {
                Decision::Scale { to, retire_baseline: true, .. } => prop_assert_eq!(to, live),
                other => panic!("unexpected {other:?}"),
            }
        }

        #[test]
        fn start_sizes_are_always_valid_and_never_below_live_desired(b in sizes(), live in sizes()) {
            let to = start_sizes(b, live);
            prop_assert!(to.is_valid());
            prop_assert!(to.desired >= live.desired);
            prop_assert_eq!(to.min, b.min);
        }
    }

    #[test]
    fn held_asleep_needs_stopped_sizes_the_held_processes_and_no_other_hold() {
        let asleep = LiveState {
            sizes: Sizes::new(0, 0, 0),
            busy: false,
            suspended: Processes::HELD,
        };
        assert!(held_asleep(TargetKind::Asg, asleep, false));
        assert!(
            !held_asleep(TargetKind::Asg, asleep, true),
            "a hold mode it cannot see"
        );
        let resumed = LiveState {
            suspended: Processes::NONE,
            ..asleep
        };
        assert!(
            !held_asleep(TargetKind::Asg, resumed, false),
            "processes resumed by hand"
        );
        let woken = LiveState {
            sizes: Sizes::new(1, 5, 3),
            ..asleep
        };
        assert!(!held_asleep(TargetKind::Asg, woken, false));
        let node_group = LiveState {
            sizes: Sizes::new(0, 5, 0),
            busy: false,
            suspended: Processes::NONE,
        };
        assert!(held_asleep(TargetKind::Nodegroup, node_group, false));
        let updating = LiveState {
            busy: true,
            ..node_group
        };
        assert!(!held_asleep(TargetKind::Nodegroup, updating, false));
        let scaled = LiveState {
            sizes: Sizes::new(0, 5, 1),
            ..node_group
        };
        assert!(!held_asleep(TargetKind::Nodegroup, scaled, false));
    }
}
