//! [`FakeSpokes`]: spoke accounts' Auto Scaling groups and node groups in memory.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};

use async_trait::async_trait;

use crate::account::SpokeRole;
use crate::ports::{ErrorKind, PortError, PortResult, Spokes};
use crate::target::{LiveState, Sizes, Target};

use super::lock;

#[derive(Default)]
struct Fleet {
    targets: BTreeMap<String, (Target, LiveState)>,
    denied: BTreeSet<String>,
}

/// Spoke accounts in memory: targets with their live sizes, keyed by target key.
#[derive(Default)]
pub struct FakeSpokes {
    fleet: Mutex<Fleet>,
    calls: AtomicUsize,
}

impl FakeSpokes {
    /// No targets.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds (or replaces) a target at `sizes`, not busy.
    pub fn add(&self, target: Target, sizes: Sizes) {
        lock(&self.fleet)
            .targets
            .insert(target.key(), (target, LiveState { sizes, busy: false }));
    }

    /// The target's sizes now, if it exists.
    pub fn sizes(&self, key: &str) -> Option<Sizes> {
        lock(&self.fleet)
            .targets
            .get(key)
            .map(|(_, live)| live.sizes)
    }

    /// Changes a target's sizes outside curfew (someone woke it by hand).
    pub fn resize(&self, key: &str, sizes: Sizes) {
        if let Some((_, live)) = lock(&self.fleet).targets.get_mut(key) {
            live.sizes = sizes;
        }
    }

    /// Marks a target busy (an EKS node group that is UPDATING) or idle again.
    pub fn set_busy(&self, key: &str, busy: bool) {
        if let Some((_, live)) = lock(&self.fleet).targets.get_mut(key) {
            live.busy = busy;
        }
    }

    /// Makes every call into `account` fail with [`ErrorKind::AccessDenied`].
    pub fn deny(&self, account: &str) {
        lock(&self.fleet).denied.insert(account.to_string());
    }

    /// How many calls the services made (discover, live_state, set_sizes).
    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    fn enter(&self, role: &SpokeRole) -> PortResult<MutexGuard<'_, Fleet>> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let fleet = lock(&self.fleet);
        if fleet.denied.contains(&role.account) {
            return Err(PortError::new(
                ErrorKind::AccessDenied,
                format!(
                    "access denied: cannot assume {} in account {}",
                    role.role_arn, role.account
                ),
            ));
        }
        Ok(fleet)
    }
}

fn not_found(target: &Target) -> PortError {
    PortError::new(
        ErrorKind::NotFound,
        format!("{} does not exist", target.key()),
    )
}

#[async_trait]
impl Spokes for FakeSpokes {
    async fn discover(&self, role: &SpokeRole, region: &str) -> PortResult<Vec<Target>> {
        let fleet = self.enter(role)?;
        Ok(fleet
            .targets
            .values()
            .filter(|(t, _)| t.account == role.account && t.region == region)
            .map(|(t, _)| t.clone())
            .collect())
    }

    async fn live_state(&self, role: &SpokeRole, target: &Target) -> PortResult<LiveState> {
        let fleet = self.enter(role)?;
        fleet
            .targets
            .get(&target.key())
            .map(|(_, live)| *live)
            .ok_or_else(|| not_found(target))
    }

    async fn set_sizes(&self, role: &SpokeRole, target: &Target, sizes: Sizes) -> PortResult<()> {
        let mut fleet = self.enter(role)?;
        let (_, live) = fleet
            .targets
            .get_mut(&target.key())
            .ok_or_else(|| not_found(target))?;
        if live.busy {
            // EKS answers ResourceInUseException while a node group update is in flight.
            return Err(PortError::new(
                ErrorKind::InUse,
                format!("{} is being updated", target.key()),
            ));
        }
        live.sizes = sizes;
        Ok(())
    }
}
