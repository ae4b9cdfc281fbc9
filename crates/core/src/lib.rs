//! # curfew-core
//!
//! The domain of curfew, a hub-and-spoke scheduler that puts EKS managed node groups and EC2
//! Auto Scaling groups to sleep on cron schedules and wakes them exactly as they were.
//!
//! Pure decisions live here ([`decision::decide`], [`cron::CronSpec`], [`selector::Selector`]);
//! everything that touches AWS goes through the small traits in [`ports`], implemented by
//! `curfew-aws`. The three Lambda handlers' logic is in [`service`].
//!
//! ```
//! use curfew_core::decision::{decide, Action, Decision, DecisionInput};
//! use curfew_core::target::{LiveState, Sizes, TargetKind};
//!
//! let decision = decide(&DecisionInput {
//!     action: Action::Stop,
//!     kind: TargetKind::Asg,
//!     live: LiveState { sizes: Sizes::new(2, 6, 4), busy: false, suspended: Default::default() },
//!     baseline: None,
//!     default_start: None,
//!     awake_until: None,
//!     now: chrono::Utc::now(),
//! });
//! assert_eq!(
//!     decision,
//!     Decision::Scale { save_baseline: Some(Sizes::new(2, 6, 4)), to: Sizes::new(0, 0, 0), retire_baseline: false }
//! );
//! ```
#![warn(missing_docs)]

pub mod account;
pub mod audit;
pub mod audit_list;
pub mod audit_verify;
pub mod calendar;
pub mod chunk;
pub mod clock;
pub mod cluster;
pub mod cluster_hold;
pub mod cron;
pub mod decision;
pub mod fakes;
pub mod health;
pub mod hold;
pub mod inventory;
pub mod keep_awake;
pub mod metrics;
pub mod notice;
pub mod operation;
pub mod ports;
pub mod schedule;
pub mod selector;
pub mod service;
pub mod session;
pub mod spoke_event;
pub mod target;
pub mod trail;
pub mod view;
pub mod window;
