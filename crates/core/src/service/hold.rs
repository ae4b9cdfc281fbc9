//! The cluster-wide hold modes as the worker drives them (see [`crate::cluster_hold`]).
//!
//! Sleep: a node group's stop joins its cluster's hold (the first saves what it finds), then
//! pauses the cluster — workloads to zero and CronJobs suspended, Cluster Autoscaler's
//! Deployment to zero, every NodePool limited to `cpu: "0"`, its NodeClaims deleted — and waits
//! until Karpenter's nodes are gone before the node group shrinks. Wake is the exact reverse,
//! once the node group is back: the last node group to leave restores the NodePool limits, then
//! Cluster Autoscaler, then the workloads and CronJobs.
//!
//! Every step sets an absolute value (replicas, limits, `suspend`), so repeating one after a
//! crash changes nothing; the record says which node groups are in, what was saved and which
//! wake is restoring it (no stop joins meanwhile), and a restore that a crash cut short is
//! finished by that wake's next delivery, or by whoever finds it pending once its claim lapses.

use tracing::info;

use super::Hub;
use crate::cluster::{ClusterRef, WorkloadKind};
use crate::cluster_hold::{
    ca_deployment_of, closed_limits, listed_namespaces, ClusterHold, ClusterSaved, SavedDeployment,
    SYSTEM_NAMESPACES,
};
use crate::hold::HoldModes;
use crate::operation::TaskMessage;
use crate::ports::{ErrorKind, LeaseToken, PortError, PortResult};
use crate::target::Target;

/// A failed step of a hold: which step, and why.
pub(super) type StepError = (&'static str, PortError);

/// How many times a writer re-reads a cluster's hold record that others keep changing before
/// it leaves the message for a later delivery.
const ATTEMPTS: usize = 8;

/// Where a stop's pause of its cluster stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Paused {
    /// Everything is paused: the node group may shrink.
    Held,
    /// Karpenter has `nodes` nodes still draining: come back later.
    Draining(usize),
}

/// Joins `msg`'s node group to its cluster's hold for `modes` (saving what the modes pause the
/// first time each is asked for) and pauses the cluster.
pub(super) async fn hold_cluster(
    hub: &Hub,
    msg: &TaskMessage,
    lease: &LeaseToken,
    at: &ClusterRef,
    key: &str,
    modes: HoldModes,
) -> Result<Paused, StepError> {
    let saved = join(hub, msg, lease, at, key, modes).await?;
    let draining = pause(hub, at, &saved, true).await?;
    Ok(match draining {
        0 => Paused::Held,
        nodes => Paused::Draining(nodes),
    })
}

/// Makes sure the node group is in its cluster's hold and returns what the hold saved.
async fn join(
    hub: &Hub,
    msg: &TaskMessage,
    lease: &LeaseToken,
    at: &ClusterRef,
    key: &str,
    modes: HoldModes,
) -> Result<ClusterSaved, StepError> {
    let me = msg.target.key();
    for _ in 0..ATTEMPTS {
        let current = read(hub, key).await?;
        if let Some(by) = current.restorer(hub.clock.now()) {
            return Err(restoring(key, by));
        }
        let missing = current.missing(modes);
        if current.members.contains(&me) && missing.is_empty() {
            return Ok(current.saved.unwrap_or_default());
        }
        let mut next = current.with_member(&me);
        if !missing.is_empty() {
            // Read only after the record was seen without these modes: the write below is
            // conditioned on that generation, so a pause (or restore) another node group made
            // meanwhile makes it fail, and this read is then thrown away and made again.
            let found = save(hub, &msg.target, at, missing).await?;
            next.saved
                .get_or_insert_with(ClusterSaved::default)
                .merge(found);
        }
        next.updated_at = Some(hub.clock.now());
        if write(hub, &next, current.generation, &me, lease).await? {
            return Ok(next.saved.unwrap_or_default());
        }
    }
    Err(busy(key))
}

/// What a wake's leave of its cluster's hold came to ([`release_cluster`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Released {
    /// This wake restored the cluster: the steps it took.
    Restored(Vec<String>),
    /// Other node groups still hold the cluster paused.
    StillHeld,
    /// Another node group's wake (this key) is restoring the cluster.
    RestoringBy(String),
    /// Nothing holds the cluster any more: a wake restored it (an earlier delivery of this one
    /// whose answer was lost, or another's).
    NotHeld,
    /// Node groups joined while this wake's claim had lapsed: the cluster is paused again for
    /// them.
    PausedAgain,
}

impl Released {
    /// The task's steps for it, naming `cluster`.
    pub(super) fn steps(self, cluster: &str) -> Vec<String> {
        let left = |why: String| vec![format!("cluster hold: left; {why}")];
        match self {
            Released::Restored(steps) => steps,
            Released::StillHeld => left(format!("other node groups of {cluster} keep it paused")),
            Released::RestoringBy(by) => left(format!(
                "the wake of node group {by} restores cluster {cluster}"
            )),
            Released::NotHeld => left(format!("nothing holds cluster {cluster} any more")),
            Released::PausedAgain => left(format!(
                "node groups that joined meanwhile keep {cluster} paused (paused again)"
            )),
        }
    }
}

/// Leaves the cluster's hold (if the node group is in it) and, when no node group is left,
/// restores what the hold saved and resets the record. Returns the restore's steps when this
/// call restored the cluster, else why it did not ([`Released`]). Also finishes a restore that a
/// crash cut short.
///
/// The last one out claims the restore in the same write (see [`RestoreClaim`]): until the
/// record is reset, or the claim lapses with this delivery's lease, no stop joins, so no pause
/// interleaves with the restore's calls. A retry after a failed reset finds its own claim and
/// restores again (every step sets an absolute value); a restore whose claimant died is taken
/// over by the next wake once the claim lapses, or joined by the next stop (which keeps what
/// was saved and pauses the cluster again).
///
/// [`RestoreClaim`]: crate::cluster_hold::RestoreClaim
pub(super) async fn release_cluster(
    hub: &Hub,
    target_key: &str,
    lease: &LeaseToken,
    at: &ClusterRef,
    key: &str,
) -> Result<Released, StepError> {
    for _ in 0..ATTEMPTS {
        let mut current = read(hub, key).await?;
        let now = hub.clock.now();
        let until = now + hub.settings.lease_ttl;
        let mut left_last = false;
        if current.members.contains(target_key) {
            let mut next = current.without_member(target_key, until);
            next.updated_at = Some(now);
            if !write(hub, &next, current.generation, target_key, lease).await? {
                continue;
            }
            left_last = next.restore_pending();
            current = next;
        }
        if !current.members.is_empty() {
            return Ok(Released::StillHeld);
        }
        if !current.restore_pending() {
            return Ok(Released::NotHeld);
        }
        match current.restorer(now) {
            // Another node group's wake is restoring it: that wake finishes it.
            Some(by) if by != target_key => return Ok(Released::RestoringBy(by.to_string())),
            Some(_) if left_last => {}
            // Unclaimed, lapsed, or claimed by an earlier delivery of this node group's wake:
            // claimed again until this delivery's lease ends, so a wake that keeps retrying
            // its restore never has a stop pause the cluster under it.
            _ => {
                let mut next = current.claimed(target_key, until);
                next.updated_at = Some(now);
                if !write(hub, &next, current.generation, target_key, lease).await? {
                    continue;
                }
                current = next;
            }
        }
        let saved = current.saved.clone().unwrap_or_default();
        restore(hub, at, &saved).await?;
        let mut done = current.restored();
        done.updated_at = Some(hub.clock.now());
        if write(hub, &done, current.generation, target_key, lease).await? {
            info!(cluster = %key, "restored what the cluster's hold saved");
            return Ok(Released::Restored(saved.steps(false)));
        }
        // Only once the claim lapsed can the record change under it: a stop that joined then
        // may have paused before this restore's calls landed, so the cluster is paused again
        // for it (without waiting for drains: that stop waits).
        let now = read(hub, key).await?;
        if let (false, Some(saved)) = (now.members.is_empty(), &now.saved) {
            pause(hub, at, saved, false).await?;
            return Ok(Released::PausedAgain);
        }
    }
    Err(busy(key))
}

/// For a node group already asleep: re-joins its cluster's hold and pauses again whatever was
/// put back since (drift). Returns what was found awake, if anything.
pub(super) async fn rehold_cluster(
    hub: &Hub,
    msg: &TaskMessage,
    lease: &LeaseToken,
    at: &ClusterRef,
    key: &str,
    modes: HoldModes,
) -> Result<Option<String>, StepError> {
    let saved = join(hub, msg, lease, at, key, modes).await?;
    let awake = drift(hub, at, &saved).await?;
    if awake.is_empty() {
        return Ok(None);
    }
    pause(hub, at, &saved, false).await?;
    Ok(Some(format!("paused {} again", awake.join(", "))))
}

async fn read(hub: &Hub, key: &str) -> Result<ClusterHold, StepError> {
    hub.store
        .get_cluster_hold(key)
        .await
        .map(|hold| hold.unwrap_or_else(|| ClusterHold::idle(key)))
        .map_err(|e| ("reading the cluster's hold", e))
}

async fn write(
    hub: &Hub,
    hold: &ClusterHold,
    read: u64,
    target_key: &str,
    lease: &LeaseToken,
) -> Result<bool, StepError> {
    hub.store
        .put_cluster_hold(hold, read, target_key, lease)
        .await
        .map_err(|e| ("writing the cluster's hold", e))
}

fn busy(key: &str) -> StepError {
    (
        "joining or leaving the cluster's hold",
        PortError::new(
            ErrorKind::Throttled,
            format!("the hold of cluster {key} kept changing; will retry"),
        ),
    )
}

/// A stop that finds another node group's wake restoring the cluster comes back later, and
/// joins once the restore is done (saving what it then finds) or the claim lapses.
fn restoring(key: &str, by: &str) -> StepError {
    (
        "joining the cluster's hold",
        PortError::new(
            ErrorKind::InUse,
            format!(
                "the wake of node group {by} is restoring cluster {key}; this stop pauses it \
                 once that is done"
            ),
        ),
    )
}

/// Reads what `modes` will pause, as it is now.
async fn save(
    hub: &Hub,
    target: &Target,
    at: &ClusterRef,
    modes: HoldModes,
) -> Result<ClusterSaved, StepError> {
    let mut saved = ClusterSaved {
        modes,
        ..ClusterSaved::default()
    };
    if modes.ca_deployment {
        let (namespace, name) =
            ca_deployment_of(target).map_err(|e| ("ca-deployment", invalid(e)))?;
        let replicas = hub
            .clusters
            .deployment_replicas(at, &namespace, &name)
            .await
            .map_err(|e| ("ca-deployment: reading the replicas", e))?
            .ok_or_else(|| {
                (
                    "ca-deployment",
                    PortError::new(
                        ErrorKind::NotFound,
                        format!(
                            "Deployment {namespace}/{name} not found in cluster {}; name Cluster \
                             Autoscaler's Deployment with the cluster tag curfew/ca-deployment",
                            at.cluster
                        ),
                    ),
                )
            })?;
        saved.ca_deployment = Some(SavedDeployment {
            namespace,
            name,
            replicas,
        });
    }
    if modes.karpenter {
        saved.node_pools = hub
            .clusters
            .node_pools(at)
            .await
            .map_err(|e| ("karpenter: listing the NodePools", e))?;
    }
    if modes.workloads {
        let namespaces = match listed_namespaces(target) {
            Some(listed) => listed,
            None => hub
                .clusters
                .namespaces(at)
                .await
                .map_err(|e| ("workloads: listing the namespaces", e))?
                .into_iter()
                .filter(|ns| !ns.excluded && !SYSTEM_NAMESPACES.contains(&ns.name.as_str()))
                .map(|ns| ns.name)
                .collect(),
        };
        for namespace in &namespaces {
            let workloads = hub
                .clusters
                .workloads(at, namespace)
                .await
                .map_err(|e| ("workloads: listing the workloads", e))?;
            saved.workloads.extend(
                workloads
                    .into_iter()
                    .filter(|w| !w.excluded && w.replicas > 0),
            );
            let jobs = hub
                .clusters
                .cron_jobs(at, namespace)
                .await
                .map_err(|e| ("workloads: listing the CronJobs", e))?;
            saved
                .cron_jobs
                .extend(jobs.into_iter().filter(|j| !j.excluded && !j.suspended));
        }
    }
    Ok(saved)
}

/// Pauses what `saved` names, in sleep's order; with `drain`, deletes Karpenter's NodeClaims
/// and returns how many of its nodes are still there. Something deleted since it was saved is
/// left deleted. A workload under a HorizontalPodAutoscaler needs nothing more: Kubernetes
/// stops autoscaling a target scaled to zero until its replicas are set again.
async fn pause(
    hub: &Hub,
    at: &ClusterRef,
    saved: &ClusterSaved,
    drain: bool,
) -> Result<usize, StepError> {
    for w in &saved.workloads {
        gone_is_fine(
            hub.clusters
                .scale(at, w.kind, &w.namespace, &w.name, 0)
                .await,
        )
        .map_err(|e| ("workloads: scaling to zero", e))?;
    }
    for j in &saved.cron_jobs {
        gone_is_fine(
            hub.clusters
                .set_cron_job_suspended(at, &j.namespace, &j.name, true)
                .await,
        )
        .map_err(|e| ("workloads: suspending CronJobs", e))?;
    }
    if let Some(d) = &saved.ca_deployment {
        gone_is_fine(
            hub.clusters
                .scale(at, WorkloadKind::Deployment, &d.namespace, &d.name, 0)
                .await,
        )
        .map_err(|e| ("ca-deployment: scaling to zero", e))?;
    }
    let closed = closed_limits();
    for pool in &saved.node_pools {
        gone_is_fine(
            hub.clusters
                .set_node_pool_limits(at, &pool.name, Some(&closed))
                .await,
        )
        .map_err(|e| ("karpenter: closing NodePools", e))?;
    }
    let mut nodes = 0;
    if drain {
        for pool in &saved.node_pools {
            nodes += hub
                .clusters
                .drain_node_pool(at, &pool.name)
                .await
                .map_err(|e| ("karpenter: draining NodeClaims", e))?;
        }
    }
    Ok(nodes)
}

/// Puts back exactly what `saved` names, in wake's order (the reverse of [`pause`]).
async fn restore(hub: &Hub, at: &ClusterRef, saved: &ClusterSaved) -> Result<(), StepError> {
    for pool in &saved.node_pools {
        gone_is_fine(
            hub.clusters
                .set_node_pool_limits(at, &pool.name, pool.limits.as_ref())
                .await,
        )
        .map_err(|e| ("karpenter: restoring NodePool limits", e))?;
    }
    if let Some(d) = &saved.ca_deployment {
        gone_is_fine(
            hub.clusters
                .scale(
                    at,
                    WorkloadKind::Deployment,
                    &d.namespace,
                    &d.name,
                    d.replicas,
                )
                .await,
        )
        .map_err(|e| ("ca-deployment: restoring replicas", e))?;
    }
    for w in &saved.workloads {
        gone_is_fine(
            hub.clusters
                .scale(at, w.kind, &w.namespace, &w.name, w.replicas)
                .await,
        )
        .map_err(|e| ("workloads: restoring replicas", e))?;
    }
    for j in &saved.cron_jobs {
        gone_is_fine(
            hub.clusters
                .set_cron_job_suspended(at, &j.namespace, &j.name, false)
                .await,
        )
        .map_err(|e| ("workloads: resuming CronJobs", e))?;
    }
    Ok(())
}

/// What of `saved` is awake again while the cluster should be paused.
pub(super) async fn drift(
    hub: &Hub,
    at: &ClusterRef,
    saved: &ClusterSaved,
) -> Result<Vec<String>, StepError> {
    let mut awake = Vec::new();
    if let Some(d) = &saved.ca_deployment {
        let replicas = hub
            .clusters
            .deployment_replicas(at, &d.namespace, &d.name)
            .await
            .map_err(|e| ("ca-deployment: reading the replicas", e))?;
        if replicas.is_some_and(|r| r > 0) {
            awake.push(format!("Deployment {}/{}", d.namespace, d.name));
        }
    }
    if saved.modes.karpenter {
        let closed = closed_limits();
        let pools = hub
            .clusters
            .node_pools(at)
            .await
            .map_err(|e| ("karpenter: listing the NodePools", e))?;
        let reopened = pools
            .iter()
            .filter(|p| saved.node_pools.iter().any(|s| s.name == p.name))
            .filter(|p| p.limits.as_ref() != Some(&closed))
            .count();
        if reopened > 0 {
            awake.push(format!("{reopened} NodePool(s)"));
        }
    }
    let mut namespaces: Vec<&str> = saved
        .workloads
        .iter()
        .map(|w| w.namespace.as_str())
        .collect();
    namespaces.sort_unstable();
    namespaces.dedup();
    let mut scaled_up = 0;
    for namespace in namespaces {
        let now = hub
            .clusters
            .workloads(at, namespace)
            .await
            .map_err(|e| ("workloads: listing the workloads", e))?;
        scaled_up += now
            .iter()
            .filter(|w| w.replicas > 0)
            .filter(|w| {
                saved
                    .workloads
                    .iter()
                    .any(|s| s.kind == w.kind && s.namespace == w.namespace && s.name == w.name)
            })
            .count();
    }
    if scaled_up > 0 {
        awake.push(format!("{scaled_up} workload(s)"));
    }
    Ok(awake)
}

fn gone_is_fine(result: PortResult<()>) -> PortResult<()> {
    match result {
        Err(e) if e.kind == ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

fn invalid(message: String) -> PortError {
    PortError::new(ErrorKind::Invalid, message)
}
