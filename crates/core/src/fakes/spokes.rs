//! [`FakeSpokes`]: spoke accounts' Auto Scaling groups and node groups in memory.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};

use async_trait::async_trait;
use futures::stream::{self, BoxStream, TryStreamExt};

use crate::account::SpokeRole;
use crate::hold::CaTag;
use crate::ports::{ErrorKind, PortError, PortResult, Spokes, UpdateState};
use crate::target::{LiveState, Processes, Sizes, Target};

use super::lock;

#[derive(Default)]
struct Fleet {
    targets: BTreeMap<String, (Target, LiveState)>,
    denied: BTreeSet<String>,
    /// How the next update of a node group goes, by target key.
    scripts: BTreeMap<String, UpdateScript>,
    /// Node group updates by id.
    updates: BTreeMap<String, Update>,
    /// The update in flight of each node group, by target key (so a status check finds it
    /// without walking every update ever made).
    in_flight: BTreeMap<String, String>,
    /// Every change applied to a target: (target key, from, to).
    changes: Vec<(String, Sizes, Sizes)>,
    /// Cluster Autoscaler tags on each node group's own ASGs, by node group key.
    ca_tags: BTreeMap<String, Vec<CaTag>>,
}

/// How the next EKS update of one node group goes.
#[derive(Clone, Debug, Default)]
struct UpdateScript {
    /// Status checks (live state or update status reads) it stays UPDATING for.
    checks: u32,
    /// Ends Failed with this reason instead of applying.
    fails: Option<String>,
}

#[derive(Clone, Debug)]
struct Update {
    key: String,
    to: Sizes,
    script: UpdateScript,
    state: UpdateState,
}

/// Spoke accounts in memory: targets with their live sizes, keyed by target key.
#[derive(Default)]
pub struct FakeSpokes {
    fleet: Mutex<Fleet>,
    calls: AtomicUsize,
    /// Targets per page of `discover_pages` (0: all in one page).
    page: AtomicUsize,
    /// The next `discover_pages` fails after this many pages with an error of this kind.
    cut: Mutex<Option<(usize, ErrorKind)>>,
}

impl FakeSpokes {
    /// No targets.
    pub fn new() -> Self {
        Self::default()
    }

    /// Lists `page` targets per page of `discover_pages` from now on (0: every target in one).
    pub fn set_page(&self, page: usize) {
        self.page.store(page, Ordering::SeqCst);
    }

    /// The next `discover_pages` ends with an error of `kind` after `pages` pages (a listing
    /// stopped part-way: throttled, or out of the invocation's time for its paced requests);
    /// the one after it lists whole.
    pub fn cut_listing_after(&self, pages: usize, kind: ErrorKind) {
        *lock(&self.cut) = Some((pages, kind));
    }

    /// Adds (or replaces) a target at `sizes`, not busy.
    pub fn add(&self, target: Target, sizes: Sizes) {
        lock(&self.fleet).targets.insert(
            target.key(),
            (
                target,
                LiveState {
                    sizes,
                    busy: false,
                    suspended: Processes::NONE,
                },
            ),
        );
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

    /// Puts Cluster Autoscaler tags on node group `key`'s own ASGs (what its owners set up).
    pub fn set_ca_tags(&self, key: &str, tags: Vec<CaTag>) {
        lock(&self.fleet).ca_tags.insert(key.to_string(), tags);
    }

    /// The Cluster Autoscaler tags on node group `key`'s ASGs now, sorted.
    pub fn ca_tags_of(&self, key: &str) -> Vec<CaTag> {
        let mut tags = lock(&self.fleet)
            .ca_tags
            .get(key)
            .cloned()
            .unwrap_or_default();
        tags.sort();
        tags
    }

    /// Which of the held processes of an ASG are suspended now.
    pub fn suspended(&self, key: &str) -> Option<Processes> {
        lock(&self.fleet)
            .targets
            .get(key)
            .map(|(_, live)| live.suspended)
    }

    /// Sets which held processes are suspended, outside curfew (the owners did it).
    pub fn set_suspended(&self, key: &str, processes: Processes) {
        if let Some((_, live)) = lock(&self.fleet).targets.get_mut(key) {
            live.suspended = processes;
        }
    }

    /// Marks a target busy (an EKS node group that is UPDATING) or idle again.
    pub fn set_busy(&self, key: &str, busy: bool) {
        if let Some((_, live)) = lock(&self.fleet).targets.get_mut(key) {
            live.busy = busy;
        }
    }

    /// Makes the next update of node group `key` stay UPDATING for `checks` status reads and
    /// then apply, or end Failed with `fails` (the node group keeps its sizes).
    pub fn script_next_update(&self, key: &str, checks: u32, fails: Option<String>) {
        lock(&self.fleet)
            .scripts
            .insert(key.to_string(), UpdateScript { checks, fails });
    }

    /// Every change applied to a target so far: (target key, from, to), oldest first.
    pub fn changes(&self) -> Vec<(String, Sizes, Sizes)> {
        lock(&self.fleet).changes.clone()
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

    /// The listing of one moment cut into pages of [`FakeSpokes::set_page`] targets.
    fn discover_pages<'a>(
        &'a self,
        role: &'a SpokeRole,
        region: &'a str,
    ) -> BoxStream<'a, PortResult<Vec<Target>>> {
        let page = self.page.load(Ordering::SeqCst);
        let cut = lock(&self.cut).take();
        Box::pin(
            stream::once(self.discover(role, region))
                .map_ok(move |found| {
                    let mut pages: Vec<PortResult<Vec<Target>>> = if page == 0 {
                        vec![Ok(found)]
                    } else {
                        found.chunks(page).map(|p| Ok(p.to_vec())).collect()
                    };
                    if let Some((cut_after, cut_kind)) = cut {
                        pages.truncate(cut_after);
                        pages.push(Err(PortError::new(
                            cut_kind,
                            "listing stopped part-way (injected)",
                        )));
                    }
                    stream::iter(pages)
                })
                .try_flatten(),
        )
    }

    async fn live_state(&self, role: &SpokeRole, target: &Target) -> PortResult<LiveState> {
        let mut fleet = self.enter(role)?;
        fleet.advance_updates(&target.key());
        fleet
            .targets
            .get(&target.key())
            .map(|(_, live)| *live)
            .ok_or_else(|| not_found(target))
    }

    async fn set_sizes(
        &self,
        role: &SpokeRole,
        target: &Target,
        sizes: Sizes,
    ) -> PortResult<Option<String>> {
        let mut fleet = self.enter(role)?;
        let key = target.key();
        let (_, live) = fleet
            .targets
            .get_mut(&key)
            .ok_or_else(|| not_found(target))?;
        if live.busy {
            // EKS answers ResourceInUseException while a node group update is in flight.
            return Err(PortError::new(
                ErrorKind::InUse,
                format!("{key} is being updated"),
            ));
        }
        if target.kind == crate::target::TargetKind::Asg {
            let from = live.sizes;
            live.sizes = sizes;
            fleet.changes.push((key, from, sizes));
            return Ok(None);
        }
        // EKS accepts the update and applies it asynchronously: UPDATING until it is done.
        live.busy = true;
        let script = fleet.scripts.remove(&key).unwrap_or_default();
        let id = format!("update-{}", fleet.updates.len() + 1);
        fleet.in_flight.insert(key.clone(), id.clone());
        fleet.updates.insert(
            id.clone(),
            Update {
                key: key.clone(),
                to: sizes,
                script,
                state: UpdateState::InProgress,
            },
        );
        if fleet.updates[&id].script.checks == 0 {
            fleet.advance_updates(&key);
        }
        Ok(Some(id))
    }

    async fn ca_tags(&self, role: &SpokeRole, target: &Target) -> PortResult<Vec<CaTag>> {
        let fleet = self.enter(role)?;
        if !fleet.targets.contains_key(&target.key()) {
            return Err(not_found(target));
        }
        Ok(fleet
            .ca_tags
            .get(&target.key())
            .cloned()
            .unwrap_or_default())
    }

    async fn remove_ca_tags(
        &self,
        role: &SpokeRole,
        target: &Target,
        tags: &[CaTag],
    ) -> PortResult<()> {
        let mut fleet = self.enter(role)?;
        if let Some(on) = fleet.ca_tags.get_mut(&target.key()) {
            on.retain(|t| !tags.iter().any(|r| r.asg == t.asg && r.key == t.key));
        }
        Ok(())
    }

    async fn restore_ca_tags(
        &self,
        role: &SpokeRole,
        target: &Target,
        tags: &[CaTag],
    ) -> PortResult<()> {
        let mut fleet = self.enter(role)?;
        let on = fleet.ca_tags.entry(target.key()).or_default();
        for tag in tags {
            on.retain(|t| !(t.asg == tag.asg && t.key == tag.key));
            on.push(tag.clone());
        }
        Ok(())
    }

    async fn suspend_processes(
        &self,
        role: &SpokeRole,
        target: &Target,
        processes: Processes,
    ) -> PortResult<()> {
        let mut fleet = self.enter(role)?;
        let live = asg_of(&mut fleet, target)?;
        live.suspended = live.suspended.union(processes);
        Ok(())
    }

    async fn resume_processes(
        &self,
        role: &SpokeRole,
        target: &Target,
        processes: Processes,
    ) -> PortResult<()> {
        let mut fleet = self.enter(role)?;
        let live = asg_of(&mut fleet, target)?;
        live.suspended = live.suspended.minus(processes);
        Ok(())
    }

    async fn update_state(
        &self,
        role: &SpokeRole,
        target: &Target,
        update_id: &str,
        _expected: Sizes,
    ) -> PortResult<UpdateState> {
        let mut fleet = self.enter(role)?;
        fleet.advance_updates(&target.key());
        fleet
            .updates
            .get(update_id)
            .filter(|u| u.key == target.key())
            .map(|u| u.state.clone())
            .ok_or_else(|| {
                PortError::new(
                    ErrorKind::NotFound,
                    format!("no update {update_id} of {}", target.key()),
                )
            })
    }
}

/// The live state of an ASG target (process suspension is an Auto Scaling feature).
fn asg_of<'a>(fleet: &'a mut Fleet, target: &Target) -> PortResult<&'a mut LiveState> {
    if target.kind != crate::target::TargetKind::Asg {
        return Err(PortError::new(
            ErrorKind::Invalid,
            format!("{} is not an Auto Scaling group", target.key()),
        ));
    }
    fleet
        .targets
        .get_mut(&target.key())
        .map(|(_, live)| live)
        .ok_or_else(|| not_found(target))
}

impl Fleet {
    /// Moves the target's update in flight one status check on: it applies (or fails) once its
    /// script's checks are used up.
    fn advance_updates(&mut self, key: &str) {
        let Some(update) = self
            .in_flight
            .get(key)
            .and_then(|id| self.updates.get_mut(id))
        else {
            return;
        };
        if update.script.checks > 0 {
            update.script.checks -= 1;
            return;
        }
        let Some((_, live)) = self.targets.get_mut(key) else {
            return;
        };
        live.busy = false;
        self.in_flight.remove(key);
        match update.script.fails.clone() {
            Some(reason) => update.state = UpdateState::Failed(reason),
            None => {
                update.state = UpdateState::Done;
                let from = live.sizes;
                live.sizes = update.to;
                self.changes.push((key.to_string(), from, update.to));
            }
        }
    }
}
