//! Holding clusters asleep: the modes a node group's cluster opts into so that its own
//! autoscalers cannot wake what curfew put to sleep, and what each mode saves.
//!
//! A cluster opts in with its tag `curfew/hold` (modes joined by `+`, e.g.
//! `ca-tags+karpenter`); a schedule or a manual operation may name modes with `--hold` (joined
//! by `,`), which wins over the tag. Without either, node groups are handled as before.
//!
//! ```
//! use curfew_core::hold::{HoldModes, Source};
//! let modes = HoldModes::parse("ca-tags+karpenter", Source::ClusterTag).unwrap();
//! assert!(modes.ca_tags && modes.karpenter && !modes.workloads);
//! assert_eq!(modes.to_string(), "ca-tags+karpenter");
//! assert!(HoldModes::parse("ca-tags,autoscaler", Source::Flag).is_err());
//! ```

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::decision::Action;
use crate::target::{Processes, Target, TargetKind};

/// The cluster tag a cluster opts in with.
pub const HOLD_TAG: &str = "curfew/hold";

/// The Auto Scaling tag Cluster Autoscaler's auto-discovery looks for on every cluster.
pub const CA_ENABLED_TAG: &str = "k8s.io/cluster-autoscaler/enabled";

/// The Cluster Autoscaler auto-discovery tags of a node group's ASG in `cluster`.
pub fn ca_tag_keys(cluster: &str) -> [String; 2] {
    [
        CA_ENABLED_TAG.to_string(),
        format!("k8s.io/cluster-autoscaler/{cluster}"),
    ]
}

/// Which hold modes apply.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct HoldModes {
    /// Remove Cluster Autoscaler's auto-discovery tags from the node group's own ASG.
    pub ca_tags: bool,
    /// Scale the `cluster-autoscaler` Deployment to zero.
    pub ca_deployment: bool,
    /// Hold Karpenter's NodePools at zero CPU and drain their NodeClaims.
    pub karpenter: bool,
    /// Scale the workloads themselves to zero.
    pub workloads: bool,
}

/// Where a list of modes was written, for error messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// The cluster tag `curfew/hold` (modes joined by `+`).
    ClusterTag,
    /// The `--hold` flag or the `hold` field of an invocation (modes joined by `,`).
    Flag,
}

/// A list of modes that does not parse, naming where it was written and the word.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: unknown hold mode {word:?} (use ca-tags, ca-deployment, karpenter, workloads, or none)")]
pub struct HoldError {
    /// `cluster tag curfew/hold` or `--hold`.
    pub field: &'static str,
    /// The word that is not a mode.
    pub word: String,
}

const WORDS: [&str; 4] = ["ca-tags", "ca-deployment", "karpenter", "workloads"];

impl HoldModes {
    /// No mode: node groups are handled as before.
    pub const NONE: HoldModes = HoldModes {
        ca_tags: false,
        ca_deployment: false,
        karpenter: false,
        workloads: false,
    };

    /// Parses modes joined by `+` (cluster tag) or `,` (flag); `none` alone means no mode.
    pub fn parse(input: &str, source: Source) -> Result<HoldModes, HoldError> {
        let (separator, field) = match source {
            Source::ClusterTag => ('+', "cluster tag curfew/hold"),
            Source::Flag => (',', "--hold"),
        };
        let mut modes = HoldModes::NONE;
        let input = input.trim();
        if input.eq_ignore_ascii_case("none") || input.is_empty() {
            return Ok(modes);
        }
        for word in input.split(separator).map(str::trim) {
            match word.to_ascii_lowercase().as_str() {
                "ca-tags" => modes.ca_tags = true,
                "ca-deployment" => modes.ca_deployment = true,
                "karpenter" => modes.karpenter = true,
                "workloads" => modes.workloads = true,
                _ => {
                    return Err(HoldError {
                        field,
                        word: word.to_string(),
                    })
                }
            }
        }
        Ok(modes)
    }

    /// The modes that apply to `target`: the operation's (`flag`) if it names any, otherwise its
    /// cluster's tag; ASGs have none.
    pub fn of_target(target: &Target, flag: Option<HoldModes>) -> Result<HoldModes, HoldError> {
        if target.kind != TargetKind::Nodegroup {
            return Ok(HoldModes::NONE);
        }
        match (flag, target.cluster_tags.get(HOLD_TAG)) {
            (Some(modes), _) => Ok(modes),
            (None, Some(tag)) => HoldModes::parse(tag, Source::ClusterTag),
            (None, None) => Ok(HoldModes::NONE),
        }
    }

    /// True when no mode applies.
    pub fn is_empty(self) -> bool {
        self == HoldModes::NONE
    }

    fn words(self) -> Vec<&'static str> {
        [
            self.ca_tags,
            self.ca_deployment,
            self.karpenter,
            self.workloads,
        ]
        .into_iter()
        .zip(WORDS)
        .filter_map(|(on, word)| on.then_some(word))
        .collect()
    }
}

impl fmt::Display for HoldModes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let words = self.words();
        if words.is_empty() {
            f.write_str("none")
        } else {
            f.write_str(&words.join("+"))
        }
    }
}

/// Serialized as the list of its words (`["ca-tags", "karpenter"]`).
impl Serialize for HoldModes {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.words().serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for HoldModes {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let words: Vec<String> = Vec::deserialize(deserializer)?;
        HoldModes::parse(&words.join(","), Source::Flag).map_err(serde::de::Error::custom)
    }
}

/// The hold steps of a stop (what it suspends and removes) or of a start (what it resumes and
/// puts back), one line each, as `plan` and `ops show` list them.
pub fn hold_steps(action: Action, processes: Processes, ca_tags: &[CaTag]) -> Vec<String> {
    let mut steps = Vec::new();
    if !processes.is_empty() {
        let verb = match action {
            Action::Stop => "suspend",
            Action::Start => "resume",
        };
        steps.push(format!("processes: {verb} {processes}"));
    }
    let mut asgs: Vec<&str> = ca_tags.iter().map(|t| t.asg.as_str()).collect();
    asgs.dedup();
    for asg in asgs {
        let n = ca_tags.iter().filter(|t| t.asg == asg).count();
        let tags = if n == 1 { "tag" } else { "tags" };
        steps.push(match action {
            Action::Stop => format!("ca-tags: remove {n} {tags} from {asg}"),
            Action::Start => format!("ca-tags: restore {n} {tags} on {asg}"),
        });
    }
    steps
}

/// One Cluster Autoscaler auto-discovery tag on a node group's own ASG, as it was before the
/// stop removed it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct CaTag {
    /// The node group's ASG.
    pub asg: String,
    /// The tag key.
    pub key: String,
    /// Its value.
    pub value: String,
    /// Whether it propagated to launched instances.
    #[serde(default)]
    pub propagate_at_launch: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn nodegroup(tag: Option<&str>) -> Target {
        Target {
            account: "111111111111".into(),
            region: "eu-west-1".into(),
            kind: TargetKind::Nodegroup,
            cluster: Some("dev".into()),
            name: "workers".into(),
            tags: BTreeMap::new(),
            cluster_tags: tag
                .map(|t| BTreeMap::from([(HOLD_TAG.to_string(), t.to_string())]))
                .unwrap_or_default(),
            instance_types: Vec::new(),
        }
    }

    #[test]
    fn a_flag_wins_over_the_cluster_tag_and_asgs_hold_nothing() {
        let tagged = nodegroup(Some("ca-tags+karpenter"));
        let from_tag = HoldModes::of_target(&tagged, None).unwrap();
        assert!(from_tag.ca_tags && from_tag.karpenter);
        let flag = HoldModes::parse("ca-deployment", Source::Flag).unwrap();
        assert_eq!(HoldModes::of_target(&tagged, Some(flag)).unwrap(), flag);
        let none = HoldModes::parse("none", Source::Flag).unwrap();
        assert!(HoldModes::of_target(&tagged, Some(none))
            .unwrap()
            .is_empty());
        assert!(HoldModes::of_target(&nodegroup(None), None)
            .unwrap()
            .is_empty());
        let mut asg = nodegroup(Some("ca-tags"));
        asg.kind = TargetKind::Asg;
        assert!(HoldModes::of_target(&asg, None).unwrap().is_empty());
    }

    #[test]
    fn a_bad_mode_names_where_it_was_written_and_the_word() {
        let e = HoldModes::of_target(&nodegroup(Some("ca-tags+autoscaler")), None).unwrap_err();
        assert_eq!(e.field, "cluster tag curfew/hold");
        assert_eq!(e.word, "autoscaler");
        let e = HoldModes::parse("ca-tags+karpenter", Source::Flag).unwrap_err();
        assert_eq!(e.field, "--hold");
        assert!(e.to_string().contains("ca-tags+karpenter"), "{e}");
    }

    #[test]
    fn hold_steps_say_what_a_stop_holds_and_a_start_undoes() {
        let tags: Vec<CaTag> = ca_tag_keys("dev")
            .into_iter()
            .map(|key| CaTag {
                asg: "eks-general-1a2b".into(),
                key,
                value: "true".into(),
                propagate_at_launch: true,
            })
            .collect();
        assert_eq!(
            hold_steps(Action::Stop, Processes::NONE, &tags),
            vec!["ca-tags: remove 2 tags from eks-general-1a2b"]
        );
        assert_eq!(
            hold_steps(Action::Start, Processes::HELD, &[]),
            vec!["processes: resume ScheduledActions, AlarmNotification"]
        );
        assert!(hold_steps(Action::Stop, Processes::NONE, &[]).is_empty());
    }

    #[test]
    fn modes_round_trip_as_a_list_of_words() {
        let modes = HoldModes::parse("workloads,ca-tags", Source::Flag).unwrap();
        let json = serde_json::to_string(&modes).unwrap();
        assert_eq!(json, r#"["ca-tags","workloads"]"#);
        assert_eq!(serde_json::from_str::<HoldModes>(&json).unwrap(), modes);
    }
}
