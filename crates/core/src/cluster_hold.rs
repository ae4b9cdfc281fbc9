//! The hold of a whole cluster: what the cluster-wide modes (`ca-deployment`, `karpenter`,
//! `workloads`) saved before they paused the cluster, and which of its node groups curfew holds
//! asleep under it.
//!
//! Unlike a node group's baseline, these belong to the cluster: Cluster Autoscaler and
//! Karpenter serve every node group in it. The first node group a stop puts to sleep saves what
//! it finds (replicas, NodePool limits, workloads) and pauses the cluster; every other one
//! joins; the wake of the last one restores exactly what was saved, after its node group is
//! back. One record per cluster (`CLUSTER#account#region#cluster / HOLD`) is changed only by
//! compare-and-set on its `generation`, fenced by the writer's target lease, so two node groups
//! of one cluster stopping or starting at once never lose each other's membership, and a read
//! of the cluster's state is saved only if nothing changed the record since it was seen idle.
//!
//! ```
//! use curfew_core::cluster_hold::ClusterHold;
//! use curfew_core::hold::{HoldModes, Source};
//!
//! let idle = ClusterHold::idle("111111111111#eu-west-1#dev");
//! let karpenter = HoldModes::parse("karpenter", Source::Flag).unwrap();
//! assert_eq!(idle.missing(karpenter), karpenter);
//! let joined = idle.with_member("a");
//! assert_eq!(joined.generation, 1);
//! assert!(joined.members.contains("a") && !joined.restore_pending());
//! ```

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::cluster::{ClusterRef, CronJob, NodePool, Workload};
use crate::decision::Action;
use crate::hold::HoldModes;
use crate::target::Target;

/// The cluster tag that names Cluster Autoscaler's Deployment (`namespace/name`) when it is
/// not `kube-system/cluster-autoscaler` (the Helm chart names it
/// `<release>-aws-cluster-autoscaler`).
pub const CA_DEPLOYMENT_TAG: &str = "curfew/ca-deployment";

/// Cluster Autoscaler's Deployment unless the cluster's tag names another.
pub const DEFAULT_CA_DEPLOYMENT: (&str, &str) = ("kube-system", "cluster-autoscaler");

/// The cluster tag that lists the namespaces the `workloads` mode scales (joined by `+`).
/// Without it, every namespace but Kubernetes' own and those annotated `curfew/exclude: "true"`.
pub const NAMESPACES_TAG: &str = "curfew/namespaces";

/// Namespaces the `workloads` mode never scales unless the namespaces tag names them: the
/// cluster's own machinery runs there (and CoreDNS, which the wake needs).
pub const SYSTEM_NAMESPACES: [&str; 3] = ["kube-system", "kube-public", "kube-node-lease"];

/// The limits a NodePool is held at: no CPU, so Karpenter launches nothing for it.
pub fn closed_limits() -> BTreeMap<String, String> {
    BTreeMap::from([("cpu".to_string(), "0".to_string())])
}

/// The key of a node group's cluster hold record, `account#region#cluster`; `None` for an ASG.
pub fn cluster_key(target: &Target) -> Option<String> {
    let cluster = target.cluster.as_ref()?;
    Some(format!("{}#{}#{cluster}", target.account, target.region))
}

/// The modes of `modes` that act on the whole cluster (all but `ca-tags`, which acts on the
/// node group's own ASG and is kept in its baseline).
pub fn cluster_wide(modes: HoldModes) -> HoldModes {
    HoldModes {
        ca_tags: false,
        ..modes
    }
}

/// Where Cluster Autoscaler's Deployment is, as saved before it was scaled to zero.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedDeployment {
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// Its replicas before the sleep.
    pub replicas: i32,
}

/// The namespace and name of Cluster Autoscaler's Deployment in `target`'s cluster: its
/// `curfew/ca-deployment` tag if set, else [`DEFAULT_CA_DEPLOYMENT`]. A tag that is not
/// `namespace/name` is an error naming the tag.
pub fn ca_deployment_of(target: &Target) -> Result<(String, String), String> {
    match target.cluster_tags.get(CA_DEPLOYMENT_TAG) {
        None => Ok((
            DEFAULT_CA_DEPLOYMENT.0.to_string(),
            DEFAULT_CA_DEPLOYMENT.1.to_string(),
        )),
        Some(value) => match value.trim().split_once('/') {
            Some((ns, name)) if !ns.is_empty() && !name.is_empty() && !name.contains('/') => {
                Ok((ns.to_string(), name.to_string()))
            }
            _ => Err(format!(
                "cluster tag {CA_DEPLOYMENT_TAG}: {value:?} is not namespace/name"
            )),
        },
    }
}

/// The namespaces `target`'s cluster tag lists for the `workloads` mode, if it lists any.
pub fn listed_namespaces(target: &Target) -> Option<Vec<String>> {
    let value = target.cluster_tags.get(NAMESPACES_TAG)?;
    Some(
        value
            .split('+')
            .map(str::trim)
            .filter(|ns| !ns.is_empty())
            .map(str::to_string)
            .collect(),
    )
}

/// The cluster-wide hold steps a planned change of `target` would take, one line per mode, as
/// `plan` lists them before anything is read from the cluster: a stop pauses the cluster with
/// `modes` (joining the hold if another node group already paused it), a start leaves the
/// hold, and the last node group to wake restores the cluster.
pub fn planned_cluster_steps(target: &Target, modes: HoldModes, action: Action) -> Vec<String> {
    let Some(cluster) = target.cluster.as_deref() else {
        return Vec::new();
    };
    if action == Action::Start {
        return vec![format!(
            "cluster hold: leave {cluster}'s hold; the last node group to wake restores the cluster"
        )];
    }
    let mut steps = Vec::new();
    if modes.ca_deployment {
        steps.push(match ca_deployment_of(target) {
            Ok((namespace, name)) => {
                format!("ca-deployment: scale {namespace}/{name} in {cluster} to 0")
            }
            Err(e) => format!("ca-deployment: {e}"),
        });
    }
    if modes.karpenter {
        steps.push(format!(
            "karpenter: limit {cluster}'s NodePools to cpu 0 and drain their NodeClaims"
        ));
    }
    if modes.workloads {
        let namespaces = match listed_namespaces(target) {
            Some(listed) => format!("namespaces {}", listed.join(", ")),
            None => "every namespace not excluded".to_string(),
        };
        steps.push(format!(
            "workloads: scale the Deployments and StatefulSets of {cluster} ({namespaces}) to 0 and suspend their CronJobs"
        ));
    }
    steps
}

/// What the cluster-wide modes saved before pausing the cluster: exactly what a wake puts back.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterSaved {
    /// The modes whose state is saved here (and which the cluster is paused by).
    pub modes: HoldModes,
    /// `ca-deployment`: Cluster Autoscaler's Deployment and its replicas.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_deployment: Option<SavedDeployment>,
    /// `karpenter`: every NodePool with the limits it had.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub node_pools: Vec<NodePool>,
    /// `workloads`: the Deployments and StatefulSets scaled to zero, with their replicas.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub workloads: Vec<Workload>,
    /// `workloads`: the CronJobs suspended (those that were running).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cron_jobs: Vec<CronJob>,
}

impl ClusterSaved {
    /// Adds what `more` saved for modes not saved here yet.
    pub fn merge(&mut self, more: ClusterSaved) {
        if more.modes.ca_deployment && !self.modes.ca_deployment {
            self.modes.ca_deployment = true;
            self.ca_deployment = more.ca_deployment;
        }
        if more.modes.karpenter && !self.modes.karpenter {
            self.modes.karpenter = true;
            self.node_pools = more.node_pools;
        }
        if more.modes.workloads && !self.modes.workloads {
            self.modes.workloads = true;
            self.workloads = more.workloads;
            self.cron_jobs = more.cron_jobs;
        }
    }

    /// One line per mode, as `plan` and `ops show` list them: what a stop pauses (`stop`) or
    /// what the last wake puts back.
    pub fn steps(&self, stop: bool) -> Vec<String> {
        let mut steps = Vec::new();
        if let Some(d) = &self.ca_deployment {
            steps.push(if stop {
                format!(
                    "ca-deployment: scale {}/{} from {} to 0",
                    d.namespace, d.name, d.replicas
                )
            } else {
                format!(
                    "ca-deployment: scale {}/{} back to {}",
                    d.namespace, d.name, d.replicas
                )
            });
        }
        if self.modes.karpenter {
            let n = self.node_pools.len();
            let pools = if n == 1 { "NodePool" } else { "NodePools" };
            steps.push(if stop {
                format!("karpenter: limit {n} {pools} to cpu 0 and drain their NodeClaims")
            } else {
                format!("karpenter: restore the limits of {n} {pools}")
            });
        }
        if self.modes.workloads {
            let (w, j) = (self.workloads.len(), self.cron_jobs.len());
            steps.push(if stop {
                format!("workloads: scale {w} to 0, suspend {j} CronJobs")
            } else {
                format!("workloads: restore the replicas of {w}, resume {j} CronJobs")
            });
        }
        steps
    }
}

/// The wake restoring a cluster: the node group whose start left the hold last (or took an
/// unfinished restore over), and until when the others leave the cluster to it.
///
/// While it lasts, no stop pauses the cluster: a pause landing between the restore's calls, or
/// a restore call landing after a pause, would leave a node group asleep in a cluster that is
/// awake again. The claim ends with the restore (the record reset) or at `until`, the end of
/// the claimant's lease, after which its delivery is dead or no longer trusted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestoreClaim {
    /// The key of the claimant's node group.
    pub by: String,
    /// When the claim lapses.
    pub until: DateTime<Utc>,
}

impl RestoreClaim {
    fn new(by: &str, until: DateTime<Utc>) -> Self {
        RestoreClaim {
            by: by.to_string(),
            until,
        }
    }
}

/// One cluster's hold record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterHold {
    /// `account#region#cluster` (see [`cluster_key`]).
    pub cluster_key: String,
    /// Bumped by every write; every write is conditioned on the one it read.
    pub generation: u64,
    /// The keys of the node groups curfew holds asleep under this hold.
    #[serde(default)]
    pub members: BTreeSet<String>,
    /// What the pause saved, while the cluster is paused (or its restore is not done yet).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub saved: Option<ClusterSaved>,
    /// When it was last written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<DateTime<Utc>>,
    /// Who is restoring the cluster, while a restore is pending (absent in records an earlier
    /// version wrote: their pending restore is anyone's to finish).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restoring: Option<RestoreClaim>,
}

impl ClusterHold {
    /// A cluster nothing holds: what a missing record means (generation 0).
    pub fn idle(cluster_key: &str) -> ClusterHold {
        ClusterHold {
            cluster_key: cluster_key.to_string(),
            generation: 0,
            members: BTreeSet::new(),
            saved: None,
            updated_at: None,
            restoring: None,
        }
    }

    /// The modes of `wanted` whose state is not saved yet (to read and save before pausing).
    pub fn missing(&self, wanted: HoldModes) -> HoldModes {
        let saved = self.saved.as_ref().map(|s| s.modes).unwrap_or_default();
        HoldModes {
            ca_tags: false,
            ca_deployment: wanted.ca_deployment && !saved.ca_deployment,
            karpenter: wanted.karpenter && !saved.karpenter,
            workloads: wanted.workloads && !saved.workloads,
        }
    }

    /// No node group is held any more but the saved state has not been put back yet: whoever
    /// sees this finishes the restore (a wake that crashed between leaving and restoring).
    pub fn restore_pending(&self) -> bool {
        self.members.is_empty() && self.saved.is_some()
    }

    /// The node group whose wake is restoring the cluster at `now`: a restore is pending and
    /// its claim has not lapsed. A stop must not join (and pause) until this is `None`.
    pub fn restorer(&self, now: DateTime<Utc>) -> Option<&str> {
        self.restoring
            .as_ref()
            .filter(|claim| self.restore_pending() && claim.until > now)
            .map(|claim| claim.by.as_str())
    }

    /// The next generation with `member` in. A lapsed restore claim goes: the cluster is held
    /// again, with what was saved.
    pub fn with_member(&self, member: &str) -> ClusterHold {
        let mut next = self.next();
        next.members.insert(member.to_string());
        next.restoring = None;
        next
    }

    /// The next generation with `member` out. The last one out claims the restore until
    /// `until` in the same write, so no stop pauses the cluster while it restores.
    pub fn without_member(&self, member: &str, until: DateTime<Utc>) -> ClusterHold {
        let mut next = self.next();
        next.members.remove(member);
        if next.restore_pending() {
            next.restoring = Some(RestoreClaim::new(member, until));
        }
        next
    }

    /// The next generation, with the pending restore claimed by `by` until `until` (taking
    /// over a restore its claimant left unfinished past its claim, or one without a claim).
    pub fn claimed(&self, by: &str, until: DateTime<Utc>) -> ClusterHold {
        let mut next = self.next();
        next.restoring = Some(RestoreClaim::new(by, until));
        next
    }

    /// The next generation, restored: nothing saved, nobody held, nobody restoring.
    pub fn restored(&self) -> ClusterHold {
        let mut next = self.next();
        next.members.clear();
        next.saved = None;
        next.restoring = None;
        next
    }

    fn next(&self) -> ClusterHold {
        ClusterHold {
            generation: self.generation + 1,
            ..self.clone()
        }
    }
}

/// A node group's cluster, reached through `role`, and the key of its hold record; `None` for
/// an ASG.
pub fn cluster_of(
    role: &crate::account::SpokeRole,
    target: &Target,
) -> Option<(ClusterRef, String)> {
    let at = ClusterRef {
        role: role.clone(),
        region: target.region.clone(),
        cluster: target.cluster.clone()?,
    };
    Some((at, cluster_key(target)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hold::Source;
    use crate::target::TargetKind;

    fn nodegroup(tags: &[(&str, &str)]) -> Target {
        Target {
            account: "111111111111".into(),
            region: "eu-west-1".into(),
            kind: TargetKind::Nodegroup,
            cluster: Some("dev".into()),
            name: "workers".into(),
            tags: BTreeMap::new(),
            cluster_tags: tags
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            instance_types: Vec::new(),
        }
    }

    #[test]
    fn the_ca_deployment_is_the_default_unless_the_cluster_names_another() {
        assert_eq!(
            ca_deployment_of(&nodegroup(&[])).unwrap(),
            ("kube-system".into(), "cluster-autoscaler".into())
        );
        let named = nodegroup(&[(CA_DEPLOYMENT_TAG, "autoscaling/ca-aws-cluster-autoscaler")]);
        assert_eq!(
            ca_deployment_of(&named).unwrap(),
            ("autoscaling".into(), "ca-aws-cluster-autoscaler".into())
        );
        let bad = nodegroup(&[(CA_DEPLOYMENT_TAG, "cluster-autoscaler")]);
        assert!(ca_deployment_of(&bad)
            .unwrap_err()
            .contains("curfew/ca-deployment"));
    }

    #[test]
    fn a_hold_saves_each_mode_once_and_finishes_a_pending_restore() {
        let both = HoldModes::parse("karpenter,ca-deployment", Source::Flag).unwrap();
        let mut hold = ClusterHold::idle("k").with_member("a");
        hold.saved = Some(ClusterSaved {
            modes: HoldModes::parse("karpenter", Source::Flag).unwrap(),
            ..Default::default()
        });
        let missing = hold.missing(both);
        assert!(missing.ca_deployment && !missing.karpenter);
        let now = Utc::now();
        let until = now + chrono::Duration::minutes(15);
        let left = hold
            .with_member("b")
            .without_member("a", until)
            .without_member("b", until);
        assert_eq!(left.generation, 4);
        assert!(left.restore_pending());
        let done = left.restored();
        assert!(!done.restore_pending() && done.saved.is_none() && done.restoring.is_none());
    }

    #[test]
    fn the_last_one_out_claims_the_restore_until_its_lease_ends() {
        let now = Utc::now();
        let until = now + chrono::Duration::minutes(15);
        let mut hold = ClusterHold::idle("k").with_member("a").with_member("b");
        hold.saved = Some(ClusterSaved::default());
        let one_left = hold.without_member("a", until);
        assert_eq!(one_left.restoring, None, "b still holds the cluster");
        let last = one_left.without_member("b", until);
        assert_eq!(last.restorer(now), Some("b"));
        assert_eq!(last.restorer(until), None, "lapsed with b's lease");
        let taken = last.claimed("c", until + chrono::Duration::minutes(15));
        assert_eq!(taken.restorer(until), Some("c"));
        let joined = last.with_member("d");
        assert_eq!((&joined.restoring, joined.restorer(now)), (&None, None));
    }

    #[test]
    fn merging_keeps_what_was_saved_first() {
        let karpenter = HoldModes::parse("karpenter", Source::Flag).unwrap();
        let mut saved = ClusterSaved {
            modes: karpenter,
            node_pools: vec![NodePool {
                name: "default".into(),
                limits: None,
            }],
            ..Default::default()
        };
        saved.merge(ClusterSaved {
            modes: HoldModes::parse("karpenter,ca-deployment", Source::Flag).unwrap(),
            ca_deployment: Some(SavedDeployment {
                namespace: "kube-system".into(),
                name: "cluster-autoscaler".into(),
                replicas: 2,
            }),
            node_pools: vec![],
            ..Default::default()
        });
        assert_eq!(saved.node_pools.len(), 1);
        assert_eq!(saved.ca_deployment.as_ref().unwrap().replicas, 2);
        assert_eq!(
            saved.steps(true),
            [
                "ca-deployment: scale kube-system/cluster-autoscaler from 2 to 0",
                "karpenter: limit 1 NodePool to cpu 0 and drain their NodeClaims"
            ]
        );
    }
}
