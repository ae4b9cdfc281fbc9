//! A seeded scenario: spoke accounts and their targets in random initial states, the
//! operations an operator starts (overlapping stops, starts and dry runs on overlapping
//! selectors), an override, a broken role, and EKS updates that stay UPDATING or fail.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use curfew_core::account::Account;
use curfew_core::cluster::{ClusterRef, Workload, WorkloadKind};
use curfew_core::cluster_hold::{
    cluster_key, cluster_of, ClusterHold, ClusterSaved, SavedDeployment, DEFAULT_CA_DEPLOYMENT,
};
use curfew_core::decision::Action;
use curfew_core::fakes::{FakeClusters, FakeSpokes, MemoryStore};
use curfew_core::hold::{ca_tag_keys, CaTag, HoldModes, Source, HOLD_TAG};
use curfew_core::ports::{
    AccountStore, Baseline, ChangeInFlight, Lease, LeaseToken, Override, PortResult, TargetStore,
};
use curfew_core::selector::Selector;
use curfew_core::target::{Processes, Sizes, Target, TargetKind};
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::RngExt;

/// A target's state in the model: the states a correct curfew keeps every target in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Model {
    /// Running at its own sizes, no baseline saved.
    Awake,
    /// Held at its stopped sizes, with its own sizes saved as the baseline.
    Asleep,
    /// At its stopped sizes before curfew ever touched it, no baseline: left alone by both.
    FoundAsleep,
}

/// One target of the scenario.
#[derive(Clone, Debug)]
pub struct ScenarioTarget {
    /// The target.
    pub target: Target,
    /// Its own (awake) sizes: what a stop saves and a start restores.
    pub own: Sizes,
    /// Where it starts.
    pub initial: Model,
    /// Its next EKS update stays UPDATING this many status reads, and may fail.
    pub update: Option<(u32, Option<String>)>,
    /// Held processes its owners suspended themselves (ASGs): curfew must leave them so.
    pub owner_suspended: Processes,
    /// Cluster Autoscaler tags on its ASG (node groups whose cluster opts into `ca-tags`).
    pub ca_tags: Vec<CaTag>,
    /// Its cluster opts into `ca-deployment`: while any of its node groups curfew holds
    /// asleep, Cluster Autoscaler's Deployment is at 0; otherwise at [`CA_REPLICAS`].
    pub cluster_hold: bool,
}

/// Cluster Autoscaler's replicas in every cluster held by `ca-deployment`, while awake.
pub const CA_REPLICAS: i32 = 2;

/// The cluster every node group of an account and region is in.
pub const CLUSTER: &str = "main";

impl ScenarioTarget {
    /// The held processes suspended on a target in `state`: while asleep all of them (the
    /// owners' and curfew's), otherwise only the owners'.
    pub fn suspended_in(&self, state: Model) -> Processes {
        match (self.target.kind, state) {
            (TargetKind::Asg, Model::Asleep) => Processes::HELD,
            (TargetKind::Asg, _) => self.owner_suspended,
            (TargetKind::Nodegroup, _) => Processes::NONE,
        }
    }

    /// The Cluster Autoscaler tags on the target in `state`: none while asleep.
    pub fn ca_tags_in(&self, state: Model) -> Vec<CaTag> {
        match state {
            Model::Asleep => Vec::new(),
            _ => self.ca_tags.clone(),
        }
    }

    /// The processes a stop of this target suspends and its start resumes.
    pub fn held(&self) -> Processes {
        match self.target.kind {
            TargetKind::Asg => Processes::HELD.minus(self.owner_suspended),
            TargetKind::Nodegroup => Processes::NONE,
        }
    }

    /// The sizes a target in `state` is at.
    pub fn sizes_in(&self, state: Model) -> Sizes {
        match state {
            Model::Awake => self.own,
            Model::Asleep | Model::FoundAsleep => self.target.kind.stopped_sizes(self.own),
        }
    }
}

/// An operation the operator starts at some step.
#[derive(Clone, Debug)]
pub struct PlannedOperation {
    /// The driver step at which it is started.
    pub step: usize,
    /// Stop or start.
    pub action: Action,
    /// Which targets.
    pub selector: Selector,
    /// Plan only.
    pub dry_run: bool,
}

/// Everything one seed runs.
#[derive(Clone, Debug)]
pub struct Scenario {
    /// Registered accounts.
    pub accounts: Vec<Account>,
    /// The account whose role cannot be assumed, if any.
    pub denied: Option<String>,
    /// The targets, by key.
    pub targets: BTreeMap<String, ScenarioTarget>,
    /// Operations in the order they are started.
    pub operations: Vec<PlannedOperation>,
    /// The target an override keeps awake from the given step to the end of the run, if any
    /// (put while operations are being started, like any other operator action).
    pub kept_awake: Option<(String, usize)>,
}

const REGIONS: [&str; 2] = ["eu-west-1", "us-east-1"];
const SELECTORS: [&str; 8] = [
    "tag:env=dev",
    "tag:team=a",
    "kind=asg",
    "kind=nodegroup",
    "region=eu-west-1",
    "tag:env=dev,kind=nodegroup",
    "name=t1*",
    "account=100000000001",
];

fn awake_sizes(rng: &mut StdRng) -> Sizes {
    let min = rng.random_range(0..3);
    let max = min + rng.random_range(1..5);
    let desired = rng.random_range(min.max(1)..=max);
    Sizes::new(min, max, desired)
}

/// What a seed's fleet and operations lean towards.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Mix {
    /// ASGs and node groups alike, half the account-regions' clusters held (the suite).
    #[default]
    Fleet,
    /// Mostly node groups, nearly every cluster held, more operations overlapping: the
    /// cluster hold's joins, leaves and restores racing each other (`make chaos MIX=holds`).
    Holds,
}

/// How a [`Mix`] draws its fleet and operations.
struct Leaning {
    /// The chance an account-region's cluster is held (`ca-deployment`).
    cluster_held: f64,
    /// Targets per account-region.
    targets_per_region: std::ops::RangeInclusive<i32>,
    /// The chance a target is an ASG (else a node group).
    asg: f64,
    /// Operations per seed.
    operations: std::ops::RangeInclusive<i32>,
}

impl Mix {
    /// Parses `fleet` or `holds`.
    pub fn parse(name: &str) -> Option<Mix> {
        match name {
            "fleet" => Some(Mix::Fleet),
            "holds" => Some(Mix::Holds),
            _ => None,
        }
    }

    fn leaning(self) -> Leaning {
        match self {
            Mix::Fleet => Leaning {
                cluster_held: 0.5,
                targets_per_region: 1..=4,
                asg: 0.5,
                operations: 2..=6,
            },
            Mix::Holds => Leaning {
                cluster_held: 0.9,
                targets_per_region: 2..=5,
                asg: 0.15,
                operations: 4..=9,
            },
        }
    }
}

impl Scenario {
    /// Draws a scenario from `rng`, leaning as `mix` says (the same draws as ever for
    /// [`Mix::Fleet`], so a seed replays the same scenario).
    pub fn generate(rng: &mut StdRng, mix: Mix) -> Scenario {
        let mix = mix.leaning();
        let accounts: Vec<Account> = (1..=rng.random_range(1..=3))
            .map(|i| {
                let id = format!("1000000000{i:02}");
                let regions = &REGIONS[..rng.random_range(1..=2)];
                let regions: Vec<String> = regions.iter().map(|r| r.to_string()).collect();
                let role = format!("arn:aws:iam::{id}:role/curfew-spoke");
                Account::new(&id, &role, None, &regions).expect("a valid account")
            })
            .collect();
        let mut targets = BTreeMap::new();
        let mut n = 0;
        for account in &accounts {
            for region in &account.regions {
                let cluster_hold = rng.random_bool(mix.cluster_held);
                for _ in 0..rng.random_range(mix.targets_per_region.clone()) {
                    n += 1;
                    let kind = if rng.random_bool(mix.asg) {
                        TargetKind::Asg
                    } else {
                        TargetKind::Nodegroup
                    };
                    let tags = BTreeMap::from([
                        (
                            "env".to_string(),
                            ["dev", "prod"].choose(rng).unwrap().to_string(),
                        ),
                        (
                            "team".to_string(),
                            ["a", "b"].choose(rng).unwrap().to_string(),
                        ),
                    ]);
                    let target = Target {
                        account: account.id.clone(),
                        region: region.clone(),
                        kind,
                        cluster: (kind == TargetKind::Nodegroup).then(|| CLUSTER.to_string()),
                        name: format!("t{n}"),
                        tags,
                        cluster_tags: BTreeMap::new(),
                        instance_types: Vec::new(),
                    };
                    let roll = rng.random_range(0..100);
                    let initial = match roll {
                        0..60 => Model::Awake,
                        60..85 => Model::Asleep,
                        _ => Model::FoundAsleep,
                    };
                    let update =
                        (kind == TargetKind::Nodegroup && rng.random_bool(0.5)).then(|| {
                            let fails = rng.random_bool(0.25).then(|| {
                                "NodeCreationFailure: instances failed to join".to_string()
                            });
                            (rng.random_range(0..4), fails)
                        });
                    let owner_suspended = if kind == TargetKind::Asg {
                        Processes {
                            scheduled_actions: rng.random_bool(0.2),
                            alarm_notification: rng.random_bool(0.2),
                        }
                    } else {
                        Processes::NONE
                    };
                    let mut target = target;
                    let mut ca_tags = Vec::new();
                    let mut modes = Vec::new();
                    if kind == TargetKind::Nodegroup && rng.random_bool(0.5) {
                        modes.push("ca-tags");
                        ca_tags = ca_tag_keys(CLUSTER)
                            .into_iter()
                            .map(|key| CaTag {
                                asg: format!("eks-{}", target.name),
                                key,
                                value: "true".into(),
                                propagate_at_launch: true,
                            })
                            .collect();
                        ca_tags.sort();
                    }
                    let cluster_hold = kind == TargetKind::Nodegroup && cluster_hold;
                    if cluster_hold {
                        modes.push("ca-deployment");
                    }
                    if !modes.is_empty() {
                        target
                            .cluster_tags
                            .insert(HOLD_TAG.to_string(), modes.join("+"));
                    }
                    let t = ScenarioTarget {
                        ca_tags,
                        cluster_hold,
                        own: awake_sizes(rng),
                        target,
                        initial,
                        update,
                        owner_suspended,
                    };
                    targets.insert(t.target.key(), t);
                }
            }
        }
        let denied = (accounts.len() > 1 && rng.random_bool(0.2))
            .then(|| accounts.choose(rng).unwrap().id.clone());
        let kept_awake = rng
            .random_bool(0.3)
            .then(|| {
                targets
                    .keys()
                    .collect::<Vec<_>>()
                    .choose(rng)
                    .map(|k| k.to_string())
            })
            .flatten()
            .map(|key| (key, rng.random_range(0..40)));
        let mut operations: Vec<PlannedOperation> = (0..rng.random_range(mix.operations))
            .map(|_| PlannedOperation {
                step: rng.random_range(0..40),
                action: if rng.random_bool(0.5) {
                    Action::Stop
                } else {
                    Action::Start
                },
                selector: Selector::parse(SELECTORS.choose(rng).unwrap()).expect("a selector"),
                dry_run: rng.random_bool(0.25),
            })
            .collect();
        operations.sort_by_key(|o| o.step);
        Scenario {
            accounts,
            denied,
            targets,
            operations,
            kept_awake,
        }
    }

    /// The clusters held by `ca-deployment`, with the keys of their node groups.
    pub fn held_clusters(&self) -> BTreeMap<String, (ClusterRef, Vec<String>)> {
        let mut clusters: BTreeMap<String, (ClusterRef, Vec<String>)> = BTreeMap::new();
        for (key, t) in self.targets.iter().filter(|(_, t)| t.cluster_hold) {
            let account = self
                .accounts
                .iter()
                .find(|a| a.id == t.target.account)
                .expect("every target's account is registered");
            let (at, cluster) =
                cluster_of(&account.role, &t.target).expect("a node group has a cluster");
            clusters
                .entry(cluster)
                .or_insert_with(|| (at, Vec::new()))
                .1
                .push(key.clone());
        }
        clusters
    }

    /// Puts the scenario's initial state into the fakes: accounts, targets at their sizes,
    /// baselines of the targets that start asleep (saved by an operation a day before), the
    /// override, the broken role and the scripted EKS updates.
    pub async fn install(
        &self,
        store: &MemoryStore,
        spokes: &FakeSpokes,
        clusters: &FakeClusters,
        now: DateTime<Utc>,
    ) -> PortResult<()> {
        for (at, members) in self.held_clusters().values() {
            let asleep = members
                .iter()
                .any(|key| self.targets[key].initial == Model::Asleep);
            clusters.add_workload(
                at,
                Workload {
                    kind: WorkloadKind::Deployment,
                    namespace: DEFAULT_CA_DEPLOYMENT.0.into(),
                    name: DEFAULT_CA_DEPLOYMENT.1.into(),
                    replicas: if asleep { 0 } else { CA_REPLICAS },
                    excluded: false,
                },
            );
        }
        for account in &self.accounts {
            store.put_account(account).await?;
        }
        let yesterday = now - Duration::days(1);
        for (key, t) in &self.targets {
            spokes.add(t.target.clone(), t.sizes_in(t.initial));
            spokes.set_suspended(key, t.suspended_in(t.initial));
            spokes.set_ca_tags(key, t.ca_tags_in(t.initial));
            if t.initial == Model::Asleep {
                let lease = LeaseToken::new("yesterday", Action::Stop);
                let ttl = Duration::minutes(1);
                let granted = store
                    .acquire_lease(key, &lease, yesterday, yesterday, ttl)
                    .await?;
                assert!(
                    matches!(granted, Lease::Acquired { .. }),
                    "a fresh store grants every lease"
                );
                let baseline = Baseline {
                    target_key: key.clone(),
                    sizes: t.own,
                    op_id: "yesterday".into(),
                    saved_at: yesterday,
                    held: t.held(),
                    ca_tags: t.ca_tags.clone(),
                    cluster_hold: t.cluster_hold,
                };
                let change = ChangeInFlight {
                    before: t.own,
                    planned: t.sizes_in(t.initial),
                    at: yesterday,
                };
                store
                    .save_baseline(&baseline, &lease, false, &change)
                    .await?;
                if t.cluster_hold {
                    join_cluster_hold(store, &t.target, &lease, yesterday).await?;
                }
                store.release_lease(key, &lease, true).await?;
            }
            if let Some((checks, fails)) = &t.update {
                spokes.script_next_update(key, *checks, fails.clone());
            }
        }
        if let Some(account) = &self.denied {
            spokes.deny(account);
        }
        Ok(())
    }

    /// The override keeping `kept_awake` awake, as `curfew override add` writes it at `now`.
    pub fn keep_awake(&self, now: DateTime<Utc>) -> Option<Override> {
        let (key, _) = self.kept_awake.as_ref()?;
        let name = &self.targets[key].target.name;
        Some(Override {
            id: "keep-awake".into(),
            selector: Selector::parse(&format!("name={name}")).expect("a selector"),
            awake_until: now + Duration::days(30),
            created_at: now,
        })
    }
}

/// Puts `target` into its cluster's hold as a stop of yesterday left it: the cluster paused,
/// Cluster Autoscaler's [`CA_REPLICAS`] saved.
async fn join_cluster_hold(
    store: &MemoryStore,
    target: &Target,
    lease: &LeaseToken,
    at: DateTime<Utc>,
) -> PortResult<()> {
    let key = cluster_key(target).expect("a node group has a cluster");
    let current = store
        .get_cluster_hold(&key)
        .await?
        .unwrap_or_else(|| ClusterHold::idle(&key));
    let mut next = current.with_member(&target.key());
    next.saved.get_or_insert_with(|| ClusterSaved {
        modes: HoldModes::parse("ca-deployment", Source::Flag).expect("a mode"),
        ca_deployment: Some(SavedDeployment {
            namespace: DEFAULT_CA_DEPLOYMENT.0.into(),
            name: DEFAULT_CA_DEPLOYMENT.1.into(),
            replicas: CA_REPLICAS,
        }),
        ..ClusterSaved::default()
    });
    next.updated_at = Some(at);
    let written = store
        .put_cluster_hold(&next, current.generation, &target.key(), lease)
        .await?;
    assert!(
        written,
        "nothing else writes while the scenario is installed"
    );
    Ok(())
}
