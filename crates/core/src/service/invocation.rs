//! Direct invocations of the router (the CLI against AWS, or `aws lambda invoke`):
//!
//! ```json
//! {"action": "trigger", "schedule": "dev-nights"}
//! {"action": "stop",  "select": "kind=nodegroup,tag:env=dev", "dry_run": false, "discovery": "cached"}
//! {"action": "start", "select": "tag:env=dev"}
//! ```
//! The answer is `{"operation_id": "...", "status": "RUNNING"}`; a malformed payload is
//! rejected with the field named and nothing written.

use serde::{Deserialize, Serialize};

use super::{router, Hub};
use crate::decision::Action;
use crate::hold::HoldModes;
use crate::operation::{Discovery, OpSource, OpStatus, Operation};
use crate::ports::PortError;
use crate::selector::Selector;

/// A direct invocation payload.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(tag = "action", rename_all = "lowercase", deny_unknown_fields)]
pub enum Invocation {
    /// Run a schedule's action now.
    Trigger {
        /// Schedule name.
        schedule: String,
    },
    /// Stop everything matching a selector.
    Stop {
        /// Selector.
        select: Selector,
        /// Plan only.
        #[serde(default)]
        dry_run: bool,
        /// Cache or live discovery.
        #[serde(default)]
        discovery: Discovery,
        /// Hold modes for node groups (`["ca-tags", "karpenter"]`), winning over their
        /// clusters' `curfew/hold` tags.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        hold: Option<HoldModes>,
    },
    /// Start everything matching a selector.
    Start {
        /// Selector.
        select: Selector,
        /// Plan only.
        #[serde(default)]
        dry_run: bool,
        /// Cache or live discovery.
        #[serde(default)]
        discovery: Discovery,
        /// Hold modes for node groups, as for a stop (a wake undoes what the stop held).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        hold: Option<HoldModes>,
    },
}

/// The answer to an invocation.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
pub struct InvocationResponse {
    /// The operation started.
    pub operation_id: String,
    /// Its status after fan-out.
    pub status: OpStatus,
}

/// Why an invocation was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum InvocationError {
    /// The payload is malformed; the message names the field.
    #[error("invalid invocation payload: {0}")]
    Payload(String),
    /// The named schedule does not exist.
    #[error("invalid schedule: no schedule named {0:?}")]
    UnknownSchedule(String),
    /// The state table or a queue failed.
    #[error(transparent)]
    Port(#[from] PortError),
}

impl Invocation {
    /// Parses a payload, naming the bad field when it is malformed.
    pub fn parse(payload: &serde_json::Value) -> Result<Invocation, InvocationError> {
        if payload.get("action").is_none() {
            return Err(InvocationError::Payload(
                "missing field `action` (expected trigger, stop or start)".into(),
            ));
        }
        serde_json::from_value(payload.clone()).map_err(|e| InvocationError::Payload(e.to_string()))
    }
}

/// Creates the operation an invocation asks for and fans it out.
pub async fn invoke(
    hub: &Hub,
    invocation: Invocation,
) -> Result<InvocationResponse, InvocationError> {
    let now = hub.clock.now();
    let (action, selector, dry_run, discovery, source, default_start, hold) = match invocation {
        Invocation::Trigger { schedule } => {
            let s = hub
                .store
                .get_schedule(&schedule)
                .await?
                .ok_or(InvocationError::UnknownSchedule(schedule))?;
            let source = OpSource::Schedule {
                name: s.name.clone(),
                fire_time: now,
            };
            // A window schedule run now does what its week says for now.
            let mut reads = super::poller::CalendarReads::default();
            let calendars = super::poller::calendars_of(hub, &s, &mut reads).await?;
            (
                s.action_at(now, &calendars),
                s.selector,
                s.dry_run,
                Discovery::Cached,
                source,
                s.default_start,
                s.hold,
            )
        }
        Invocation::Stop {
            select,
            dry_run,
            discovery,
            hold,
        } => (
            Action::Stop,
            select,
            dry_run,
            discovery,
            OpSource::Manual,
            None,
            hold,
        ),
        Invocation::Start {
            select,
            dry_run,
            discovery,
            hold,
        } => (
            Action::Start,
            select,
            dry_run,
            discovery,
            OpSource::Manual,
            None,
            hold,
        ),
    };
    let op = Operation {
        dry_run,
        default_start,
        discovery,
        hold,
        ..Operation::pending(
            Operation::manual_id(now, &hub.clock.unique()),
            action,
            selector,
            source,
            now,
        )
    };
    hub.store.create_operation(&op).await?;
    router::fan_out(hub, &op.id).await?;
    let status = hub
        .store
        .get_operation(&op.id)
        .await?
        .map(|o| o.status)
        .unwrap_or(OpStatus::Pending);
    Ok(InvocationResponse {
        operation_id: op.id,
        status,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn payloads_parse_into_invocations() {
        let i = Invocation::parse(&json!({"action": "stop", "select": "tag:env=dev"})).unwrap();
        assert!(matches!(i, Invocation::Stop { dry_run: false, .. }));
        let i = Invocation::parse(&json!({"action": "trigger", "schedule": "x"})).unwrap();
        assert_eq!(
            i,
            Invocation::Trigger {
                schedule: "x".into()
            }
        );
    }

    #[test]
    fn malformed_payloads_name_the_field() {
        for (payload, needle) in [
            (json!({"select": "kind=asg"}), "action"),
            (json!({"action": "pause"}), "pause"),
            (json!({"action": "stop"}), "select"),
            (json!({"action": "stop", "select": "env=dev"}), "selector"),
            (json!({"action": "trigger"}), "schedule"),
            (
                json!({"action": "stop", "select": "kind=asg", "dryrun": true}),
                "dryrun",
            ),
            (
                json!({"action": "stop", "select": "kind=asg", "discovery": "psychic"}),
                "psychic",
            ),
        ] {
            let err = Invocation::parse(&payload).unwrap_err().to_string();
            assert!(err.contains(needle), "{payload}: {err}");
        }
    }
}
