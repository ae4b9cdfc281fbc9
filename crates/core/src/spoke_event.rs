//! Change events a spoke forwards to the hub bus (Auto Scaling and EKS API calls recorded by
//! CloudTrail, sent on by the spoke stack's EventBridge rule), and which of them change what the
//! inventory cache holds.
//!
//! The cache keeps each target's identity, tags, cluster tags and instance types
//! ([`crate::target::Target`]), never its sizes: sizes are read live by the worker. So a call
//! that only resizes a group — curfew's own stops and starts among them — leaves the cache as
//! true as it was. Treating every such call as a change made each wave forget the inventory of
//! every account and region it touched, and the next wave list them live again, assuming each
//! role once more than the work needs.
//!
//! ```
//! use curfew_core::spoke_event::SpokeEvent;
//!
//! let resize: SpokeEvent = serde_json::from_value(serde_json::json!({
//!     "detail-type": "AWS API Call via CloudTrail", "source": "aws.autoscaling",
//!     "account": "111111111111", "region": "eu-west-1",
//!     "detail": {"eventName": "UpdateAutoScalingGroup",
//!                "requestParameters": {"autoScalingGroupName": "web", "minSize": 0, "maxSize": 0}}
//! })).unwrap();
//! assert!(!resize.changes_inventory());
//! ```

use serde::Deserialize;

/// Auto Scaling and EKS calls that change which targets exist, their tags or their cluster's
/// tags: always a change of the inventory.
pub const INVENTORY_CALLS: [&str; 10] = [
    "CreateAutoScalingGroup",
    "DeleteAutoScalingGroup",
    "CreateOrUpdateTags",
    "DeleteTags",
    "CreateCluster",
    "DeleteCluster",
    "CreateNodegroup",
    "DeleteNodegroup",
    "TagResource",
    "UntagResource",
];

/// Calls that change a group's sizes, labels or taints and nothing the inventory holds.
pub const SIZE_CALLS: [&str; 2] = ["SetDesiredCapacity", "UpdateNodegroupConfig"];

/// `UpdateAutoScalingGroup` changes the inventory only when it carries one of these request
/// parameters: they decide the instance types discovery records. Any other update (sizes,
/// health checks, termination policies) leaves the cache true.
pub const INSTANCE_TYPE_PARAMETERS: [&str; 3] = [
    "mixedInstancesPolicy",
    "launchTemplate",
    "launchConfigurationName",
];

/// One forwarded change event, as the hub bus delivers it to the router.
#[derive(Clone, Debug, Deserialize)]
pub struct SpokeEvent {
    /// The spoke account the call was made in.
    pub account: String,
    /// Its region.
    pub region: String,
    /// `aws.autoscaling` or `aws.eks`.
    pub source: String,
    /// What CloudTrail recorded of the call.
    #[serde(default)]
    pub detail: CallDetail,
}

/// The parts of a CloudTrail record the hub reads.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CallDetail {
    /// The API call (`CreateAutoScalingGroup`, ...).
    #[serde(default)]
    pub event_name: Option<String>,
    /// The call's parameters as CloudTrail recorded them.
    #[serde(default)]
    pub request_parameters: Option<serde_json::Value>,
}

impl SpokeEvent {
    /// The call's name, or `unknown` when the event carries none.
    pub fn call(&self) -> &str {
        self.detail.event_name.as_deref().unwrap_or("unknown")
    }

    /// True when the call may have changed what the inventory cache holds for its account and
    /// region, so the next operation there must list it live. An event this cannot read (no
    /// call name, or a call it does not know) counts as a change: a needless listing costs one
    /// role assumption, a missed one leaves a new group out of a stop.
    pub fn changes_inventory(&self) -> bool {
        let Some(call) = self.detail.event_name.as_deref() else {
            return true;
        };
        if SIZE_CALLS.contains(&call) {
            return false;
        }
        if call == "UpdateAutoScalingGroup" {
            let parameters = self
                .detail
                .request_parameters
                .as_ref()
                .and_then(|p| p.as_object());
            return match parameters {
                Some(p) => INSTANCE_TYPE_PARAMETERS.iter().any(|k| p.contains_key(*k)),
                // Parameters CloudTrail left out (too large, or redacted): assume the worst.
                None => true,
            };
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(call: Option<&str>, parameters: Option<serde_json::Value>) -> SpokeEvent {
        SpokeEvent {
            account: "111111111111".into(),
            region: "eu-west-1".into(),
            source: "aws.autoscaling".into(),
            detail: CallDetail {
                event_name: call.map(str::to_string),
                request_parameters: parameters,
            },
        }
    }

    #[test]
    fn a_group_created_deleted_or_retagged_changes_the_inventory() {
        for call in INVENTORY_CALLS {
            assert!(event(Some(call), None).changes_inventory(), "{call}");
        }
    }

    #[test]
    fn a_resize_leaves_the_inventory_as_it_was() {
        for call in SIZE_CALLS {
            assert!(!event(Some(call), None).changes_inventory(), "{call}");
        }
        let sizes = serde_json::json!({"autoScalingGroupName": "web", "minSize": 0, "maxSize": 0,
                                       "desiredCapacity": 0});
        assert!(!event(Some("UpdateAutoScalingGroup"), Some(sizes)).changes_inventory());
    }

    #[test]
    fn an_update_of_a_groups_instances_changes_the_inventory() {
        for parameter in INSTANCE_TYPE_PARAMETERS {
            let parameters = serde_json::json!({"autoScalingGroupName": "web", parameter: {}});
            assert!(
                event(Some("UpdateAutoScalingGroup"), Some(parameters)).changes_inventory(),
                "{parameter}"
            );
        }
    }

    #[test]
    fn an_event_that_cannot_be_read_counts_as_a_change() {
        assert!(event(None, None).changes_inventory());
        assert!(event(Some("UpdateAutoScalingGroup"), None).changes_inventory());
        assert!(event(Some("AttachInstances"), None).changes_inventory());
    }

    #[test]
    fn the_spoke_stack_forwards_exactly_the_calls_that_change_the_inventory() {
        let stack = include_str!("../../../infra/lib/spoke-stack.ts");
        let quoted = |name: &str| format!("'{name}'");
        for call in INVENTORY_CALLS.iter().chain(&INSTANCE_TYPE_PARAMETERS) {
            assert!(
                stack.contains(&quoted(call)),
                "{call} missing from the spoke stack"
            );
        }
        for call in SIZE_CALLS {
            assert!(
                !stack.contains(&quoted(call)),
                "{call} forwarded by the spoke stack"
            );
        }
    }

    #[test]
    fn an_eventbridge_delivery_reads_as_a_spoke_event() {
        let delivered = serde_json::json!({
            "version": "0", "id": "6a7e8feb", "detail-type": "AWS API Call via CloudTrail",
            "source": "aws.eks", "account": "222222222222", "time": "2027-01-04T18:00:00Z",
            "region": "us-east-1", "resources": [],
            "detail": {"eventSource": "eks.amazonaws.com", "eventName": "UpdateNodegroupConfig",
                       "requestParameters": {"clusterName": "c", "nodegroupName": "n"}}
        });
        let event: SpokeEvent = serde_json::from_value(delivered).unwrap();
        assert_eq!(
            (event.account.as_str(), event.region.as_str(), event.call()),
            ("222222222222", "us-east-1", "UpdateNodegroupConfig")
        );
        assert!(!event.changes_inventory());
    }
}
