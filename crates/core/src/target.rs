//! Targets: the scalable things curfew puts to sleep, and their sizes.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// What kind of scalable resource a target is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TargetKind {
    /// An EC2 Auto Scaling group.
    Asg,
    /// An EKS managed node group.
    Nodegroup,
}

impl TargetKind {
    /// The selector spelling (`asg`, `nodegroup`).
    pub fn as_str(self) -> &'static str {
        match self {
            TargetKind::Asg => "asg",
            TargetKind::Nodegroup => "nodegroup",
        }
    }

    /// The sizes a target of this kind is held at while stopped.
    ///
    /// An ASG goes to 0/0/0 so no scaling policy or autoscaler can wake it. EKS rejects a
    /// node group with `maxSize` 0, so a node group keeps its max and only min and desired drop.
    pub fn stopped_sizes(self, live: Sizes) -> Sizes {
        match self {
            TargetKind::Asg => Sizes::new(0, 0, 0),
            TargetKind::Nodegroup => Sizes::new(0, live.max, 0),
        }
    }
}

impl fmt::Display for TargetKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Minimum, maximum and desired capacity of a group.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Sizes {
    /// Minimum size.
    pub min: i32,
    /// Maximum size.
    pub max: i32,
    /// Desired capacity.
    pub desired: i32,
}

impl Sizes {
    /// Sizes from min, max and desired.
    pub const fn new(min: i32, max: i32, desired: i32) -> Self {
        Sizes { min, max, desired }
    }

    /// True when min <= desired <= max and nothing is negative. The emulator accepts
    /// desired > max, so curfew checks this itself before every update.
    pub fn is_valid(&self) -> bool {
        self.min >= 0 && self.min <= self.desired && self.desired <= self.max
    }
}

impl fmt::Display for Sizes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.min, self.max, self.desired)
    }
}

/// One scalable resource in one spoke account and region.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Target {
    /// Spoke account id.
    pub account: String,
    /// AWS region.
    pub region: String,
    /// ASG or node group.
    pub kind: TargetKind,
    /// The EKS cluster, for node groups.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    /// ASG name or node group name.
    pub name: String,
    /// Tags on the resource itself.
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// Tags on the node group's cluster (empty for ASGs); selectors match these too.
    #[serde(default)]
    pub cluster_tags: BTreeMap<String, String>,
    /// The EC2 instance types it runs, as discovery found them (a node group's
    /// `instanceTypes`; an ASG's mixed-instances overrides, else its running instances' types);
    /// empty when not known. Savings price its hours by them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub instance_types: Vec<String>,
}

impl Target {
    /// The stable key of this target: `account#region#kind#[cluster/]name`. Sorting by it groups
    /// targets by account and region, which is how tasks are sharded.
    pub fn key(&self) -> String {
        // Built by hand, not with `format!`: the worker asks for it a dozen times per target.
        let kind = self.kind.as_str();
        let cluster = self.cluster.as_deref();
        let mut key = String::with_capacity(
            self.account.len()
                + self.region.len()
                + kind.len()
                + cluster.map_or(0, |c| c.len() + 1)
                + self.name.len()
                + 3,
        );
        for part in [self.account.as_str(), "#", &self.region, "#", kind, "#"] {
            key.push_str(part);
        }
        if let Some(cluster) = cluster {
            key.push_str(cluster);
            key.push('/');
        }
        key.push_str(&self.name);
        key
    }

    /// Whether `other` names the same target: its key's parts are equal (so the keys are),
    /// compared without building either key, for scans over many targets.
    pub fn same_key(&self, other: &Target) -> bool {
        self.name == other.name
            && self.kind == other.kind
            && self.cluster == other.cluster
            && self.region == other.region
            && self.account == other.account
    }

    /// The target a [`Target::key`] names, with what a key does not carry (tags, instance
    /// types) left empty: how a shard's listing names a planned target whose task has not been
    /// written yet. `None` if `key` is not one. An ASG's name may hold `#` and `/`; a cluster's
    /// name holds neither (EKS allows letters, digits, `-` and `_`), so the split is exact.
    pub fn from_key(key: &str) -> Option<Target> {
        let mut parts = key.splitn(4, '#');
        let (account, region, kind, rest) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        let (kind, cluster, name) = match kind {
            "asg" => (TargetKind::Asg, None, rest),
            "nodegroup" => {
                let (cluster, name) = rest.split_once('/')?;
                (TargetKind::Nodegroup, Some(cluster.to_string()), name)
            }
            _ => return None,
        };
        if account.is_empty() || region.is_empty() || name.is_empty() {
            return None;
        }
        Some(Target {
            account: account.to_string(),
            region: region.to_string(),
            kind,
            cluster,
            name: name.to_string(),
            tags: BTreeMap::new(),
            cluster_tags: BTreeMap::new(),
            instance_types: Vec::new(),
        })
    }

    /// A short human name: `cluster/nodegroup` or the ASG name.
    pub fn display_name(&self) -> String {
        match &self.cluster {
            Some(cluster) => format!("{cluster}/{}", self.name),
            None => self.name.clone(),
        }
    }

    /// The tag value for `key`, looked up on the resource first, then on its cluster.
    pub fn tag(&self, key: &str) -> Option<&str> {
        self.tags
            .get(key)
            .or_else(|| self.cluster_tags.get(key))
            .map(String::as_str)
    }
}

/// What a spoke reports about a target right now.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LiveState {
    /// Current sizes.
    pub sizes: Sizes,
    /// True while the resource cannot take an update (an EKS node group that is UPDATING).
    pub busy: bool,
    /// Which of the processes curfew holds suspended are suspended now (ASGs; none for node
    /// groups).
    #[serde(default)]
    pub suspended: Processes,
}

/// A set of the Auto Scaling processes curfew suspends while an ASG sleeps, so that nothing
/// scales it back up: `ScheduledActions` (scheduled scaling) and `AlarmNotification` (alarm
/// driven policies). Never `Launch`, `Terminate` or `HealthCheck`: a group at 0/0/0 launches
/// nothing anyway, and those keep the group able to heal once it wakes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Processes {
    /// `ScheduledActions`.
    #[serde(default)]
    pub scheduled_actions: bool,
    /// `AlarmNotification`.
    #[serde(default)]
    pub alarm_notification: bool,
}

impl Processes {
    /// Neither process.
    pub const NONE: Processes = Processes {
        scheduled_actions: false,
        alarm_notification: false,
    };
    /// Both processes curfew holds.
    pub const HELD: Processes = Processes {
        scheduled_actions: true,
        alarm_notification: true,
    };

    /// The set among `names` (Auto Scaling process names; others are ignored).
    pub fn from_names<'a>(names: impl IntoIterator<Item = &'a str>) -> Processes {
        let mut set = Processes::NONE;
        for name in names {
            match name {
                "ScheduledActions" => set.scheduled_actions = true,
                "AlarmNotification" => set.alarm_notification = true,
                _ => {}
            }
        }
        set
    }

    /// The Auto Scaling names of the processes in the set.
    pub fn names(self) -> Vec<&'static str> {
        let mut names = Vec::new();
        if self.scheduled_actions {
            names.push("ScheduledActions");
        }
        if self.alarm_notification {
            names.push("AlarmNotification");
        }
        names
    }

    /// The processes in `self` but not in `other`.
    pub fn minus(self, other: Processes) -> Processes {
        Processes {
            scheduled_actions: self.scheduled_actions && !other.scheduled_actions,
            alarm_notification: self.alarm_notification && !other.alarm_notification,
        }
    }

    /// The processes in either.
    pub fn union(self, other: Processes) -> Processes {
        Processes {
            scheduled_actions: self.scheduled_actions || other.scheduled_actions,
            alarm_notification: self.alarm_notification || other.alarm_notification,
        }
    }

    /// True when every process of `other` is in `self`.
    pub fn contains(self, other: Processes) -> bool {
        other.minus(self).is_empty()
    }

    /// True for the empty set.
    pub fn is_empty(self) -> bool {
        self == Processes::NONE
    }
}

impl fmt::Display for Processes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names = self.names();
        if names.is_empty() {
            f.write_str("none")
        } else {
            f.write_str(&names.join(", "))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Node group `workers` of cluster `prod`, untagged.
    fn prod_workers() -> Target {
        Target {
            account: "111111111111".into(),
            region: "eu-west-1".into(),
            kind: TargetKind::Nodegroup,
            cluster: Some("prod".into()),
            name: "workers".into(),
            tags: BTreeMap::new(),
            cluster_tags: BTreeMap::new(),
            instance_types: Vec::new(),
        }
    }

    #[test]
    fn an_asg_stops_at_zero_everything_and_a_nodegroup_keeps_its_max() {
        let live = Sizes::new(2, 5, 3);
        assert_eq!(TargetKind::Asg.stopped_sizes(live), Sizes::new(0, 0, 0));
        assert_eq!(
            TargetKind::Nodegroup.stopped_sizes(live),
            Sizes::new(0, 5, 0)
        );
    }

    #[test]
    fn target_keys_group_by_account_then_region() {
        let ng = prod_workers();
        assert_eq!(ng.key(), "111111111111#eu-west-1#nodegroup#prod/workers");
        let asg = Target {
            kind: TargetKind::Asg,
            cluster: None,
            name: "web".into(),
            ..ng
        };
        assert_eq!(asg.key(), "111111111111#eu-west-1#asg#web");
    }

    #[test]
    fn two_targets_have_the_same_key_exactly_when_same_key_says_so() {
        let ng = prod_workers();
        let tagged = Target {
            tags: BTreeMap::from([("team".into(), "a".into())]),
            ..ng.clone()
        };
        let others = [
            Target {
                account: "222222222222".into(),
                ..ng.clone()
            },
            Target {
                region: "us-east-1".into(),
                ..ng.clone()
            },
            Target {
                cluster: Some("dev".into()),
                ..ng.clone()
            },
            Target {
                name: "spot".into(),
                ..ng.clone()
            },
            Target {
                kind: TargetKind::Asg,
                cluster: None,
                name: "prod/workers".into(),
                ..ng.clone()
            },
        ];
        assert!(ng.same_key(&tagged) && ng.key() == tagged.key());
        for other in &others {
            assert_eq!(
                ng.same_key(other),
                ng.key() == other.key(),
                "{}",
                other.key()
            );
            assert!(!ng.same_key(other), "{}", other.key());
        }
    }

    #[test]
    fn a_key_names_its_target_back_without_its_tags() {
        let ng = Target {
            tags: BTreeMap::from([("team".into(), "a".into())]),
            instance_types: vec!["m5.large".into()],
            ..prod_workers()
        };
        let back = Target::from_key(&ng.key()).unwrap();
        assert_eq!(back.key(), ng.key());
        assert!(back.tags.is_empty() && back.instance_types.is_empty());
        // An ASG's name may hold the separators.
        let odd = Target::from_key("111111111111#eu-west-1#asg#a#b/c").unwrap();
        assert_eq!(
            (odd.kind, odd.cluster, odd.name.as_str()),
            (TargetKind::Asg, None, "a#b/c")
        );
        for bad in [
            "",
            "1#r",
            "1#r#asg#",
            "1#r#nodegroup#nocluster",
            "1#r#lambda#x",
            "#r#asg#x",
        ] {
            assert_eq!(Target::from_key(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_target_stored_before_instance_types_reads_with_none_and_none_is_not_written() {
        let old = serde_json::json!({
            "account": "111111111111", "region": "eu-west-1", "kind": "asg", "name": "web",
            "tags": {}, "cluster_tags": {},
        });
        let mut t: Target = serde_json::from_value(old.clone()).unwrap();
        assert!(t.instance_types.is_empty());
        assert_eq!(serde_json::to_value(&t).unwrap(), old);
        t.instance_types = vec!["m5.large".into()];
        let back: Target = serde_json::from_value(serde_json::to_value(&t).unwrap()).unwrap();
        assert_eq!(back.instance_types, ["m5.large"]);
    }

    #[test]
    fn only_the_held_processes_are_read_from_a_groups_suspended_processes() {
        let found = Processes::from_names(["Launch", "AlarmNotification", "AZRebalance"]);
        assert_eq!(
            found,
            Processes {
                scheduled_actions: false,
                alarm_notification: true
            }
        );
        assert_eq!(
            Processes::HELD.minus(found).names(),
            vec!["ScheduledActions"]
        );
        assert!(Processes::HELD.contains(found));
        assert!(!found.contains(Processes::HELD));
    }

    #[test]
    fn desired_above_max_is_not_a_valid_size() {
        assert!(!Sizes::new(0, 2, 3).is_valid());
        assert!(Sizes::new(0, 0, 0).is_valid());
    }
}
