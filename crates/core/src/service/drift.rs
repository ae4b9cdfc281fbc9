//! The drift check: what something other than curfew undid on a target curfew holds asleep —
//! its sizes, the Auto Scaling processes or Cluster Autoscaler tags its stop held, or the pause
//! of its cluster (Cluster Autoscaler scaled up, NodePool limits reopened, held workloads scaled
//! up). Read-only: the check takes no lease and changes nothing, so it can neither delay nor
//! supersede a real operation; a stop over the target (a schedule firing again) holds it again.

use super::hold::{drift as cluster_drift, StepError};
use super::Hub;
use crate::cluster_hold::cluster_of;
use crate::operation::TaskMessage;
use crate::ports::Baseline;
use crate::target::LiveState;

/// What the check found changed on `msg`'s target since its stop, one line each; empty when it
/// is asleep with every hold in place.
pub(super) async fn findings(
    hub: &Hub,
    msg: &TaskMessage,
    live: LiveState,
    baseline: &Baseline,
) -> Result<Vec<String>, StepError> {
    let mut found = Vec::new();
    let asleep = msg.target.kind.stopped_sizes(live.sizes);
    if live.sizes != asleep {
        found.push(format!(
            "woken: sizes {} (asleep is {asleep}; the saved baseline is {})",
            live.sizes, baseline.sizes
        ));
    }
    let resumed = baseline.held.minus(live.suspended);
    if !resumed.is_empty() {
        found.push(format!("processes resumed: {resumed}"));
    }
    if !baseline.ca_tags.is_empty() {
        let now = hub
            .spokes
            .ca_tags(&msg.role, &msg.target)
            .await
            .map_err(|e| ("reading Cluster Autoscaler tags", e))?;
        let back = now
            .iter()
            .filter(|t| {
                baseline
                    .ca_tags
                    .iter()
                    .any(|h| h.asg == t.asg && h.key == t.key)
            })
            .count();
        if back > 0 {
            found.push(format!("{back} Cluster Autoscaler tag(s) put back"));
        }
    }
    if baseline.cluster_hold {
        if let Some((at, key)) = cluster_of(&msg.role, &msg.target) {
            let hold = hub
                .store
                .get_cluster_hold(&key)
                .await
                .map_err(|e| ("reading the cluster's hold", e))?;
            if let Some(saved) = hold.and_then(|h| h.saved) {
                let awake = cluster_drift(hub, &at, &saved).await?;
                if !awake.is_empty() {
                    found.push(format!(
                        "cluster {}: {} awake again",
                        at.cluster,
                        awake.join(", ")
                    ));
                }
            }
        }
    }
    Ok(found)
}
