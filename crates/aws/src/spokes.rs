//! Reaching spoke accounts: AssumeRole through the session cache, then Auto Scaling and EKS.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use async_trait::async_trait;
use aws_config::{Region, SdkConfig};
use aws_credential_types::Credentials;
use chrono::{DateTime, Duration, Utc};
use curfew_core::account::SpokeRole;
use curfew_core::clock::Clock;
use curfew_core::health::ContactRecorder;
use curfew_core::hold::{ca_tag_keys, CaTag};
use curfew_core::ports::{ErrorKind, PortError, PortResult, Spokes, UpdateState};
use curfew_core::session::{Session, SessionCache};
use curfew_core::target::{LiveState, Processes, Sizes, Target, TargetKind};

use futures::future::{self, BoxFuture};
use futures::stream::{self, BoxStream, Stream, StreamExt, TryStreamExt};

use crate::config::spoke_retry_partition;
use crate::error::{classify, retrying};
use crate::pacing::{InFlight, Pace};

/// Tag AWS puts on a node group's own ASG: those are managed through EKS, not as ASGs.
const NODEGROUP_TAG: &str = "eks:nodegroup-name";

/// A service (`autoscaling`, `eks`), an account and a region: what AWS throttles on its own.
type PaceKey = (&'static str, String, String);

/// Auto Scaling and EKS in spoke accounts, through assumed roles.
pub struct AwsSpokes {
    sdk: SdkConfig,
    sts: aws_sdk_sts::Client,
    sessions: SessionCache<Credentials>,
    assume_role_calls: std::sync::atomic::AtomicU64,
    credential_lookups: std::sync::atomic::AtomicU64,
    /// Where each AssumeRole's outcome is recorded per account (`curfew health`), if anywhere.
    contacts: Option<Arc<ContactRecorder>>,
    /// The pace of this process's requests about targets, per service, account and region.
    paces: Mutex<HashMap<PaceKey, Arc<Pace>>>,
}

impl AwsSpokes {
    /// Spokes reached with STS from `sdk` (the hub's own credentials and endpoint).
    pub fn new(sdk: SdkConfig, clock: Arc<dyn Clock>) -> Self {
        AwsSpokes {
            sts: aws_sdk_sts::Client::new(&sdk),
            sdk,
            sessions: SessionCache::new(clock, Duration::minutes(5)),
            assume_role_calls: std::sync::atomic::AtomicU64::new(0),
            credential_lookups: std::sync::atomic::AtomicU64::new(0),
            contacts: None,
            paces: Mutex::new(HashMap::new()),
        }
    }

    /// The same, recording the outcome of every AssumeRole with `contacts`: at the session
    /// cache's pace (about once an hour per role while it works), never once per target.
    pub fn recording_contacts(self, contacts: Arc<ContactRecorder>) -> Self {
        AwsSpokes {
            contacts: Some(contacts),
            ..self
        }
    }

    /// How many times a spoke call needed credentials (each would be an AssumeRole call
    /// without the session cache).
    pub fn credential_lookups(&self) -> u64 {
        self.credential_lookups
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// How many AssumeRole calls this adapter has made (the session cache keeps it at about
    /// one per role per hour, whatever the number of tasks).
    pub fn assume_role_calls(&self) -> u64 {
        self.assume_role_calls
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Runs `call` (which reaches the spoke through the cached session) and, if the spoke says
    /// the session's credentials have expired (revoked, or expired earlier than STS said), drops
    /// the session and runs it once more with a fresh one.
    async fn fresh_on_expiry<T, F, Fut>(&self, role: &SpokeRole, call: F) -> PortResult<T>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = PortResult<T>>,
    {
        match call().await {
            Err(e) if e.kind == ErrorKind::ExpiredCredentials => {
                tracing::warn!(role = %role.role_arn, error = %e, "spoke session expired early; assuming the role again");
                self.sessions.invalidate(&session_key(role));
                call().await
            }
            other => other,
        }
    }

    async fn credentials(&self, role: &SpokeRole) -> PortResult<Credentials> {
        self.credential_lookups
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let key = session_key(role);
        self.sessions
            .get_or_assume(&key, || async {
                self.assume_role_calls
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let out = retrying(|| async {
                    self.sts
                        .assume_role()
                        .role_arn(&role.role_arn)
                        .role_session_name("curfew")
                        .set_external_id(role.external_id.clone())
                        .duration_seconds(3600)
                        .send()
                        .await
                        .map_err(|e| classify(&format!("assuming {}", role.role_arn), e))
                })
                .await;
                if let Some(contacts) = &self.contacts {
                    contacts
                        .record(&role.account, out.as_ref().map(|_| ()))
                        .await;
                }
                let out = out?;
                let c = out.credentials.ok_or_else(|| {
                    PortError::new(
                        ErrorKind::Other,
                        format!("assuming {}: no credentials returned", role.role_arn),
                    )
                })?;
                let expiry =
                    SystemTime::try_from(c.expiration).unwrap_or_else(|_| SystemTime::now());
                let expires_at: DateTime<Utc> = expiry.into();
                Ok::<_, PortError>(Session {
                    value: Credentials::new(
                        c.access_key_id,
                        c.secret_access_key,
                        Some(c.session_token),
                        Some(expiry),
                        "curfew-assume-role",
                    ),
                    expires_at,
                })
            })
            .await
    }

    /// This process's pace of requests about targets to `service` in `account` and `region`:
    /// AWS throttles each account and region of a service on its own.
    fn pace(&self, service: &'static str, account: &str, region: &str) -> Arc<Pace> {
        self.paces
            .lock()
            .expect("not poisoned")
            .entry((service, account.to_string(), region.to_string()))
            .or_default()
            .clone()
    }

    async fn autoscaling(
        &self,
        role: &SpokeRole,
        region: &str,
    ) -> PortResult<aws_sdk_autoscaling::Client> {
        let creds = self.credentials(role).await?;
        Ok(self.autoscaling_with(creds, &role.account, region))
    }

    /// An Auto Scaling client of `account` and `region`, retrying in their partition
    /// ([`spoke_retry_partition`]).
    fn autoscaling_with(
        &self,
        creds: Credentials,
        account: &str,
        region: &str,
    ) -> aws_sdk_autoscaling::Client {
        let conf = aws_sdk_autoscaling::config::Builder::from(&self.sdk)
            .region(Region::new(region.to_string()))
            .credentials_provider(creds)
            .retry_partition(spoke_retry_partition("autoscaling", account, region))
            .build();
        aws_sdk_autoscaling::Client::from_conf(conf)
    }

    async fn eks(&self, role: &SpokeRole, region: &str) -> PortResult<aws_sdk_eks::Client> {
        let creds = self.credentials(role).await?;
        Ok(self.eks_with(creds, &role.account, region))
    }

    /// An EKS client of `account` and `region`, retrying in their partition
    /// ([`spoke_retry_partition`]).
    fn eks_with(&self, creds: Credentials, account: &str, region: &str) -> aws_sdk_eks::Client {
        let conf = aws_sdk_eks::config::Builder::from(&self.sdk)
            .region(Region::new(region.to_string()))
            .credentials_provider(creds)
            .retry_partition(spoke_retry_partition("eks", account, region))
            .build();
        aws_sdk_eks::Client::from_conf(conf)
    }

    /// What the Kubernetes adapter (`curfew-kube`) needs to reach `cluster`'s API server: its
    /// endpoint and CA from `DescribeCluster`, and the spoke session's credentials (from the
    /// session cache) to sign the EKS bearer token with. The session's role must have an EKS
    /// access entry in the cluster for the token to be accepted.
    pub async fn cluster_connection(
        &self,
        role: &SpokeRole,
        region: &str,
        cluster: &str,
    ) -> PortResult<ClusterConnection> {
        self.fresh_on_expiry(role, || async {
            let credentials = self.credentials(role).await?;
            let client = self.eks_with(credentials.clone(), &role.account, region);
            let (endpoint, certificate_authority) = described_endpoint(&client, cluster).await?;
            Ok(ClusterConnection {
                endpoint,
                certificate_authority,
                credentials,
            })
        })
        .await
    }

    /// The client one listing's requests to a spoke service share: `client` (`autoscaling_with`,
    /// `eks_with`) with the role's cached session, made again with a fresh session (the cached
    /// one dropped) when the spoke refuses the session as expired.
    fn listing_client<'a, C>(
        &'a self,
        role: &'a SpokeRole,
        region: &'a str,
        client: fn(&AwsSpokes, Credentials, &str, &str) -> C,
    ) -> ListingClient<'a, C>
    where
        C: Clone + Send + 'a,
    {
        ListingClient::new(move |refused| {
            Box::pin(async move {
                if refused {
                    tracing::warn!(role = %role.role_arn, "spoke session expired early; assuming the role again");
                    self.sessions.invalidate(&session_key(role));
                }
                let credentials = self.credentials(role).await?;
                Ok(client(self, credentials, &role.account, region))
            })
        })
    }
}

/// The client a listing's requests to one spoke service share. The spoke may refuse its session
/// as expired (revoked, or expired earlier than STS said) halfway through a listing of
/// thousands of requests: the refused request is asked once more with a client of a fresh
/// session, and so are the requests after it, while what the listing has already yielded is
/// neither asked for nor yielded again ([`AwsSpokes::fresh_on_expiry`], one request at a time).
struct ListingClient<'a, C> {
    /// Makes the client; with a fresh session when the last one was refused (`true`).
    connect: Box<dyn Fn(bool) -> BoxFuture<'a, PortResult<C>> + Send + Sync + 'a>,
    /// Requests wait here while the client is made, so that the many describes in flight when
    /// a session expires assume the role once, not once each.
    current: tokio::sync::Mutex<Connection<C>>,
}

/// The client a [`ListingClient`] made last.
enum Connection<C> {
    /// None yet: the first request makes it.
    Unmade,
    /// The client, with the number of clients made before it.
    Made(u64, C),
    /// Making it failed: the listing ends with that error, and the requests still in flight
    /// fail with it rather than assume the role again each.
    Failed(ErrorKind, String),
}

impl<'a, C: Clone> ListingClient<'a, C> {
    fn new(connect: impl Fn(bool) -> BoxFuture<'a, PortResult<C>> + Send + Sync + 'a) -> Self {
        ListingClient {
            connect: Box::new(connect),
            current: tokio::sync::Mutex::new(Connection::Unmade),
        }
    }

    /// Runs `call` with the client and, if the spoke says its session has expired, once more
    /// with a client of a fresh session.
    async fn request<T, F, Fut>(&self, call: F) -> PortResult<T>
    where
        F: Fn(C) -> Fut,
        Fut: std::future::Future<Output = PortResult<T>>,
    {
        let (made, client) = self.client(None).await?;
        match call(client).await {
            Err(e) if e.kind == ErrorKind::ExpiredCredentials => {
                let (_, fresh) = self.client(Some(made)).await?;
                call(fresh).await
            }
            other => other,
        }
    }

    /// The client made last, or a new one if there is none or `refused` names it (a request
    /// refused with an older one takes the one made since).
    async fn client(&self, refused: Option<u64>) -> PortResult<(u64, C)> {
        let mut current = self.current.lock().await;
        let number = match &*current {
            Connection::Made(made, client) if refused != Some(*made) => {
                return Ok((*made, client.clone()))
            }
            Connection::Made(made, _) => made + 1,
            Connection::Failed(kind, message) => {
                return Err(PortError::new(*kind, message.clone()))
            }
            Connection::Unmade => 0,
        };
        match (self.connect)(refused.is_some()).await {
            Ok(client) => {
                *current = Connection::Made(number, client.clone());
                Ok((number, client))
            }
            Err(e) => {
                *current = Connection::Failed(e.kind, e.message.clone());
                Err(e)
            }
        }
    }
}

/// Every target of one account and region a page at a time ([`Spokes::discover_pages`]): the
/// ASGs' pages and the clusters' node groups listed at once ([`stream::select`]), each page
/// yielded as it is answered, none empty, until the first error.
fn listing<'a>(
    asgs: (ListingClient<'a, aws_sdk_autoscaling::Client>, Arc<Pace>),
    eks: (ListingClient<'a, aws_sdk_eks::Client>, Arc<Pace>),
    account: &'a str,
    region: &'a str,
) -> BoxStream<'a, PortResult<Vec<Target>>> {
    stream::select(
        asg_pages(asgs.0, asgs.1, account, region),
        nodegroup_pages(eks.0, eks.1, account, region),
    )
    // The other listing stops at the first error too: nothing more is asked of the spoke for a
    // listing the caller will not finish.
    .scan(false, |failed, page| {
        if *failed {
            return future::ready(None);
        }
        *failed = page.is_err();
        future::ready(Some(page))
    })
    .try_filter(|page| future::ready(!page.is_empty()))
    .boxed()
}

/// The ASGs of one account and region (not the ones EKS manages for node groups), a page of
/// DescribeAutoScalingGroups at a time: one page after the other, each yielded as it is
/// answered, and the next asked for only when the stream is polled again. Each page is retried
/// on its own: a throttle asks for that page again, not for the listing from its start. Each
/// attempt waits its turn of `pace`, the process's pace of Auto Scaling in the account-region.
fn asg_pages<'a>(
    asgs: ListingClient<'a, aws_sdk_autoscaling::Client>,
    pace: Arc<Pace>,
    account: &'a str,
    region: &'a str,
) -> impl Stream<Item = PortResult<Vec<Target>>> + Send + 'a {
    // The token of the page to ask for next (none for the first); none at all after the last.
    let first: Option<Option<String>> = Some(None);
    stream::try_unfold((asgs, pace, first), move |(asgs, pace, next)| async move {
        let Some(token) = next else {
            return Ok(None);
        };
        let (token, paced_by) = (&token, &pace);
        let page = asgs
            .request(|client| async move {
                paced(paced_by, || async {
                    client
                        .describe_auto_scaling_groups()
                        .max_records(ASG_PAGE)
                        .set_next_token(token.clone())
                        .send()
                        .await
                        .map_err(|e| classify("listing Auto Scaling groups", e))
                })
                .await
            })
            .await?;
        let targets = asg_targets(page.auto_scaling_groups(), account, region);
        let next = page.next_token.filter(|t| !t.is_empty()).map(Some);
        Ok(Some((targets, (asgs, pace, next))))
    })
}

/// The targets of one page of ASGs, without the ones EKS manages for node groups.
fn asg_targets(
    groups: &[aws_sdk_autoscaling::types::AutoScalingGroup],
    account: &str,
    region: &str,
) -> Vec<Target> {
    groups
        .iter()
        .filter(|g| !g.tags().iter().any(|t| t.key() == Some(NODEGROUP_TAG)))
        .map(|g| Target {
            account: account.to_string(),
            region: region.to_string(),
            kind: TargetKind::Asg,
            cluster: None,
            name: g.auto_scaling_group_name().unwrap_or_default().to_string(),
            tags: g
                .tags()
                .iter()
                .filter_map(|t| Some((t.key()?.to_string(), t.value()?.to_string())))
                .collect(),
            cluster_tags: Default::default(),
            instance_types: asg_instance_types(g),
        })
        .collect()
}

/// DescribeCluster and DescribeNodegroup requests one discovery starts with in flight. EKS has
/// no batch describe: an account and region with 3,000 node groups (EKS's default quotas: 100
/// clusters of 30) takes 3,000 DescribeNodegroup calls, past the worker's 120 s timeout one
/// after the other at 50 ms each. The simulation lists 3,000 node groups in 1,000 clusters,
/// with 7,000 ASGs, in 16.4 s of virtual time 16 at a time and 250.7 s one at a time
/// (`curfew_tests::sim`).
pub const EKS_DESCRIBE_CONCURRENCY: usize = 16;

/// The most describe requests one discovery grows to in flight while EKS answers without
/// throttling ([`InFlight`]: one more for every limit's worth of answers). EKS does not publish
/// its rate limits, so the limit finds the account's: it halves at a throttling error, down to
/// [`EKS_DESCRIBE_FLOOR`], and a throttled request is retried like any other (`retrying`).
pub const EKS_DESCRIBE_CEILING: usize = 64;

/// The fewest describe requests one discovery keeps in flight however often EKS throttles.
pub const EKS_DESCRIBE_FLOOR: usize = 2;

/// The pacing of one discovery's EKS describe requests: [`EKS_DESCRIBE_CONCURRENCY`] in
/// flight at first, between [`EKS_DESCRIBE_FLOOR`] and [`EKS_DESCRIBE_CEILING`] as EKS answers.
pub fn eks_describes_in_flight() -> InFlight {
    InFlight::new(
        EKS_DESCRIBE_CONCURRENCY,
        EKS_DESCRIBE_FLOOR,
        EKS_DESCRIBE_CEILING,
    )
}

/// The largest page DescribeAutoScalingGroups returns (its default is 50).
pub const ASG_PAGE: i32 = 100;

/// One cluster as discovery sees it: its name, its tags and its node groups' names.
struct ListedCluster {
    name: String,
    tags: std::collections::BTreeMap<String, String>,
    nodegroups: Vec<String>,
}

/// The EKS managed node groups of one account and region, with their clusters' tags, in the
/// order EKS lists them. The clusters are listed first (ListClusters, every page); then every
/// cluster is described and its node groups listed, [`EKS_DESCRIBE_CEILING`] clusters at a
/// time; then every node group is described, [`EKS_DESCRIBE_CEILING`] at a time, each yielded
/// once described and after the ones before it. Every request waits for its place in one
/// [`eks_describes_in_flight`] and its turn of `pace` ([`Describes`]). The node groups are not
/// described while later clusters are still being listed: modelled that way, the simulation's
/// listing of a large account-region against a spoke refusing calls over its rate failed on
/// every attempt, where this order lists it (docs/PERFORMANCE.md, "Planning in parts"); the
/// Auto Scaling pages stream beside it.
fn nodegroup_pages<'a>(
    eks: ListingClient<'a, aws_sdk_eks::Client>,
    pace: Arc<Pace>,
    account: &'a str,
    region: &'a str,
) -> impl Stream<Item = PortResult<Vec<Target>>> + Send + 'a {
    // Shared by the requests' futures, which the stream owns while they run.
    let eks = Arc::new(eks);
    let describes = Arc::new(Describes {
        in_flight: eks_describes_in_flight(),
        pace,
    });
    stream::once(async move {
        let names = cluster_names(eks.clone(), &describes.pace).await?;
        // The futures are made up front, not by a closure inside the stream, so the caller's
        // future stays `Send`. The stream holds as many as the limit can grow to; each waits
        // for its place in flight.
        let listing: Vec<_> = names
            .into_iter()
            .map(|name| {
                let (eks, describes) = (eks.clone(), describes.clone());
                async move { listed_cluster(&eks, &describes, name).await.map(Arc::new) }
            })
            .collect();
        let clusters: Vec<Arc<ListedCluster>> = stream::iter(listing)
            .buffered(EKS_DESCRIBE_CEILING)
            .try_collect()
            .await?;
        let describing: Vec<_> = clusters
            .into_iter()
            .flat_map(|cluster| {
                let (eks, describes) = (eks.clone(), describes.clone());
                (0..cluster.nodegroups.len()).map(move |at| {
                    let (eks, describes, cluster) =
                        (eks.clone(), describes.clone(), cluster.clone());
                    async move {
                        let name = &cluster.nodegroups[at];
                        described_nodegroup(&eks, &describes, account, region, &cluster, name)
                            .await
                            .map(|nodegroup| vec![nodegroup])
                    }
                })
            })
            .collect();
        Ok::<_, PortError>(stream::iter(describing).buffered(EKS_DESCRIBE_CEILING))
    })
    .try_flatten()
}

/// How one listing's EKS describe requests go out: each holds a place among
/// [`eks_describes_in_flight`]'s, then waits its turn of the process's pace of EKS in the
/// account-region, the one its calls about targets follow. The limit in flight bounds how many
/// wait at once but not how fast they are sent: at its floor of 2 and 50 ms a request it still
/// sends 40 a second, and against a spoke that let through 7 a second the simulation's listing
/// of a large account-region had a request refused past its retries on every attempt, where
/// paced it lists at the spoke's rate (docs/PERFORMANCE.md, "Listings paced").
struct Describes {
    in_flight: InFlight,
    pace: Arc<Pace>,
}

impl Describes {
    async fn request<T, F, Fut>(&self, call: F) -> PortResult<T>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = PortResult<T>>,
    {
        self.in_flight.request(|| self.pace.request(call)).await
    }
}

/// The names of the clusters of one account and region, at a turn of `pace` (one a page of
/// 100 clusters, EKS's default quota in a region, in practice).
async fn cluster_names(
    eks: Arc<ListingClient<'_, aws_sdk_eks::Client>>,
    pace: &Pace,
) -> PortResult<Vec<String>> {
    eks.request(|client| async move {
        paced(pace, || async {
            client
                .list_clusters()
                .into_paginator()
                .items()
                .send()
                .try_collect()
                .await
                .map_err(|e| classify("listing EKS clusters", e))
        })
        .await
    })
    .await
}

/// A cluster's tags and the names of its node groups.
async fn listed_cluster(
    eks: &ListingClient<'_, aws_sdk_eks::Client>,
    describes: &Describes,
    name: String,
) -> PortResult<ListedCluster> {
    let name = &name;
    let described = eks
        .request(|client| async move {
            retrying(|| {
                describes.request(|| async {
                    client
                        .describe_cluster()
                        .name(name)
                        .send()
                        .await
                        .map_err(|e| classify(&format!("describing cluster {name}"), e))
                })
            })
            .await
        })
        .await?;
    let tags = described
        .cluster
        .and_then(|c| c.tags)
        .unwrap_or_default()
        .into_iter()
        .collect();
    let nodegroups = eks
        .request(|client| async move {
            retrying(|| {
                describes.request(|| async {
                    client
                        .list_nodegroups()
                        .cluster_name(name)
                        .into_paginator()
                        .items()
                        .send()
                        .try_collect()
                        .await
                        .map_err(|e| classify(&format!("listing node groups of {name}"), e))
                })
            })
            .await
        })
        .await?;
    Ok(ListedCluster {
        name: name.clone(),
        tags,
        nodegroups,
    })
}

/// One node group of `cluster`, described.
async fn described_nodegroup(
    eks: &ListingClient<'_, aws_sdk_eks::Client>,
    describes: &Describes,
    account: &str,
    region: &str,
    cluster: &ListedCluster,
    name: &str,
) -> PortResult<Target> {
    let ng = eks
        .request(|client| async move {
            retrying(|| {
                describes.request(|| async {
                    client
                        .describe_nodegroup()
                        .cluster_name(&cluster.name)
                        .nodegroup_name(name)
                        .send()
                        .await
                        .map_err(|e| {
                            classify(&format!("describing node group {}/{name}", cluster.name), e)
                        })
                })
            })
            .await
        })
        .await?;
    let (tags, types) = ng
        .nodegroup
        .map(|n| (n.tags, n.instance_types))
        .unwrap_or_default();
    Ok(Target {
        account: account.to_string(),
        region: region.to_string(),
        kind: TargetKind::Nodegroup,
        cluster: Some(cluster.name.clone()),
        name: name.to_string(),
        tags: tags.unwrap_or_default().into_iter().collect(),
        cluster_tags: cluster.tags.clone(),
        // Null for a node group whose launch template names the type: unknown here (reading
        // the template would need EC2 permissions the spoke role lacks).
        instance_types: sorted_types(types.unwrap_or_default()),
    })
}

/// The instance types an ASG runs: its mixed-instances policy's overrides when it has some
/// (what it launches), else the types of the instances it runs now. Empty when neither says, as
/// for a group at zero launched from a launch template or configuration: those name the type,
/// but reading them needs `ec2:DescribeLaunchTemplateVersions` or
/// `autoscaling:DescribeLaunchConfigurations`, which the spoke role does not grant.
fn asg_instance_types(g: &aws_sdk_autoscaling::types::AutoScalingGroup) -> Vec<String> {
    let overrides: Vec<String> = g
        .mixed_instances_policy()
        .and_then(|p| p.launch_template())
        .map(|t| t.overrides())
        .unwrap_or_default()
        .iter()
        .filter_map(|o| o.instance_type())
        .map(str::to_string)
        .collect();
    if !overrides.is_empty() {
        return sorted_types(overrides);
    }
    sorted_types(
        g.instances()
            .iter()
            .filter_map(|i| i.instance_type())
            .map(str::to_string)
            .collect(),
    )
}

/// Types in a stable order, each once: the inventory compares equal however AWS ordered them.
fn sorted_types(mut types: Vec<String>) -> Vec<String> {
    types.retain(|t| !t.is_empty());
    types.sort();
    types.dedup();
    types
}

/// How to reach one EKS cluster's API server with a spoke session: see
/// [`AwsSpokes::cluster_connection`].
#[derive(Clone, Debug)]
pub struct ClusterConnection {
    /// The API server's URL (`cluster.endpoint`).
    pub endpoint: String,
    /// The cluster's CA bundle, base64 of PEM (`cluster.certificateAuthority.data`).
    pub certificate_authority: String,
    /// The spoke session's credentials.
    pub credentials: Credentials,
}

/// A cluster's API endpoint and CA. A cluster still being created has neither yet: that is
/// [`ErrorKind::InUse`], to be retried later like any EKS change in flight.
async fn described_endpoint(
    client: &aws_sdk_eks::Client,
    cluster: &str,
) -> PortResult<(String, String)> {
    let out = retrying(|| async {
        client
            .describe_cluster()
            .name(cluster)
            .send()
            .await
            .map_err(|e| classify(&format!("describing cluster {cluster}"), e))
    })
    .await?;
    let described = out.cluster.ok_or_else(|| {
        PortError::new(
            ErrorKind::NotFound,
            format!("cluster {cluster} no longer exists"),
        )
    })?;
    let endpoint = described.endpoint().filter(|e| !e.is_empty());
    let ca = described
        .certificate_authority()
        .and_then(|c| c.data())
        .filter(|d| !d.is_empty());
    match (endpoint, ca) {
        (Some(endpoint), Some(ca)) => Ok((endpoint.to_string(), ca.to_string())),
        _ => Err(PortError::new(
            ErrorKind::InUse,
            format!(
                "cluster {cluster} has no API endpoint yet (status {})",
                described.status().map(|s| s.as_str()).unwrap_or("unknown")
            ),
        )),
    }
}

/// The session cache's key for a role: the role and the external id it is assumed with.
/// Runs one request about a target, retried with [`retrying`]'s backoff, each attempt at its turn
/// of `pace` (the process's pace of that service, account and region).
async fn paced<T, F, Fut>(pace: &Pace, call: F) -> PortResult<T>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = PortResult<T>>,
{
    retrying(|| pace.request(&call)).await
}

fn session_key(role: &SpokeRole) -> String {
    format!(
        "{}|{}",
        role.role_arn,
        role.external_id.as_deref().unwrap_or("")
    )
}

fn cluster_of(target: &Target) -> PortResult<&str> {
    target.cluster.as_deref().ok_or_else(|| {
        PortError::new(
            ErrorKind::Invalid,
            format!("node group {} has no cluster", target.name),
        )
    })
}

/// The newest Auto Scaling activity of `asg`, as "at <time>: <cause>": Auto Scaling's own
/// account of why its sizes last changed ("a user request update of AutoScalingGroup
/// constraints to min: 1, max: 5, desired: 3 ...", an alarm's policy, a scheduled action).
pub(crate) async fn last_asg_activity(
    client: &aws_sdk_autoscaling::Client,
    pace: &Pace,
    asg: &str,
) -> PortResult<Option<String>> {
    let out = paced(pace, || async {
        client
            .describe_scaling_activities()
            .auto_scaling_group_name(asg)
            .max_records(1)
            .send()
            .await
            .map_err(|e| classify(&format!("reading the scaling activities of {asg}"), e))
    })
    .await?;
    Ok(out.activities().first().map(|a| {
        let at = a
            .start_time()
            .map(|t| format!("at {t}: "))
            .unwrap_or_default();
        format!("{at}{}", a.cause().unwrap_or("no cause given"))
    }))
}

#[async_trait]
impl Spokes for AwsSpokes {
    async fn last_change(&self, role: &SpokeRole, target: &Target) -> PortResult<Option<String>> {
        if target.kind != TargetKind::Asg {
            return Ok(None);
        }
        self.fresh_on_expiry(role, || async {
            let client = self.autoscaling(role, &target.region).await?;
            let pace = self.pace("autoscaling", &role.account, &target.region);
            last_asg_activity(&client, &pace, &target.name).await
        })
        .await
    }

    async fn discover(&self, role: &SpokeRole, region: &str) -> PortResult<Vec<Target>> {
        let mut found: Vec<Target> = self.discover_pages(role, region).try_concat().await?;
        // The pages come in the order the two listings are answered; the inventory keeps one
        // order: the ASGs, then the node groups, each as listed.
        found.sort_by_key(|t| t.kind != TargetKind::Asg);
        Ok(found)
    }

    fn discover_pages<'a>(
        &'a self,
        role: &'a SpokeRole,
        region: &'a str,
    ) -> BoxStream<'a, PortResult<Vec<Target>>> {
        listing(
            (
                self.listing_client(role, region, AwsSpokes::autoscaling_with),
                self.pace("autoscaling", &role.account, region),
            ),
            (
                self.listing_client(role, region, AwsSpokes::eks_with),
                self.pace("eks", &role.account, region),
            ),
            &role.account,
            region,
        )
    }

    async fn live_state(&self, role: &SpokeRole, target: &Target) -> PortResult<LiveState> {
        self.fresh_on_expiry(role, || self.read_live_state(role, target))
            .await
    }

    async fn set_sizes(
        &self,
        role: &SpokeRole,
        target: &Target,
        sizes: Sizes,
    ) -> PortResult<Option<String>> {
        self.fresh_on_expiry(role, || self.update_sizes(role, target, sizes))
            .await
    }

    async fn ca_tags(&self, role: &SpokeRole, target: &Target) -> PortResult<Vec<CaTag>> {
        self.fresh_on_expiry(role, || self.read_ca_tags(role, target))
            .await
    }

    async fn remove_ca_tags(
        &self,
        role: &SpokeRole,
        target: &Target,
        tags: &[CaTag],
    ) -> PortResult<()> {
        self.fresh_on_expiry(role, || self.change_ca_tags(role, target, tags, false))
            .await
    }

    async fn restore_ca_tags(
        &self,
        role: &SpokeRole,
        target: &Target,
        tags: &[CaTag],
    ) -> PortResult<()> {
        self.fresh_on_expiry(role, || self.change_ca_tags(role, target, tags, true))
            .await
    }

    async fn suspend_processes(
        &self,
        role: &SpokeRole,
        target: &Target,
        processes: Processes,
    ) -> PortResult<()> {
        self.fresh_on_expiry(role, || {
            self.change_processes(role, target, processes, true)
        })
        .await
    }

    async fn resume_processes(
        &self,
        role: &SpokeRole,
        target: &Target,
        processes: Processes,
    ) -> PortResult<()> {
        self.fresh_on_expiry(role, || {
            self.change_processes(role, target, processes, false)
        })
        .await
    }

    async fn update_state(
        &self,
        role: &SpokeRole,
        target: &Target,
        update_id: &str,
        expected: Sizes,
    ) -> PortResult<UpdateState> {
        self.fresh_on_expiry(role, || {
            self.read_update_state(role, target, update_id, expected)
        })
        .await
    }
}

impl AwsSpokes {
    /// The CA auto-discovery tags on the node group's own ASGs: DescribeNodegroup names them
    /// (`resources.autoScalingGroups`), DescribeAutoScalingGroups reads their tags.
    async fn read_ca_tags(&self, role: &SpokeRole, target: &Target) -> PortResult<Vec<CaTag>> {
        let cluster = cluster_of(target)?;
        let eks = self.eks(role, &target.region).await?;
        let eks_pace = self.pace("eks", &role.account, &target.region);
        let described = paced(&eks_pace, || async {
            eks.describe_nodegroup()
                .cluster_name(cluster)
                .nodegroup_name(&target.name)
                .send()
                .await
                .map_err(|e| {
                    classify(
                        &format!("describing node group {}", target.display_name()),
                        e,
                    )
                })
        })
        .await?;
        let asgs: Vec<String> = described
            .nodegroup
            .and_then(|ng| ng.resources)
            .map(|r| {
                r.auto_scaling_groups()
                    .iter()
                    .filter_map(|g| g.name().map(String::from))
                    .collect()
            })
            .unwrap_or_default();
        if asgs.is_empty() {
            return Ok(Vec::new());
        }
        let keys = ca_tag_keys(cluster);
        let client = self.autoscaling(role, &target.region).await?;
        let pace = self.pace("autoscaling", &role.account, &target.region);
        let groups = paced(&pace, || async {
            client
                .describe_auto_scaling_groups()
                .set_auto_scaling_group_names(Some(asgs.clone()))
                .send()
                .await
                .map_err(|e| {
                    classify(
                        &format!(
                            "describing the ASGs of node group {}",
                            target.display_name()
                        ),
                        e,
                    )
                })
        })
        .await?;
        let mut tags: Vec<CaTag> = groups
            .auto_scaling_groups()
            .iter()
            .flat_map(|g| {
                let asg = g.auto_scaling_group_name().unwrap_or_default().to_string();
                g.tags()
                    .iter()
                    .filter(|t| t.key().is_some_and(|k| keys.iter().any(|c| c == k)))
                    .map(move |t| CaTag {
                        asg: asg.clone(),
                        key: t.key().unwrap_or_default().to_string(),
                        value: t.value().unwrap_or_default().to_string(),
                        propagate_at_launch: t.propagate_at_launch().unwrap_or(false),
                    })
            })
            .collect();
        tags.sort();
        Ok(tags)
    }

    /// DeleteTags (`restore` false) or CreateOrUpdateTags (`restore` true) of exactly `tags`.
    async fn change_ca_tags(
        &self,
        role: &SpokeRole,
        target: &Target,
        tags: &[CaTag],
        restore: bool,
    ) -> PortResult<()> {
        if tags.is_empty() {
            return Ok(());
        }
        let client = self.autoscaling(role, &target.region).await?;
        let pace = self.pace("autoscaling", &role.account, &target.region);
        let tags: Vec<aws_sdk_autoscaling::types::Tag> = tags
            .iter()
            .map(|t| {
                let tag = aws_sdk_autoscaling::types::Tag::builder()
                    .resource_id(&t.asg)
                    .resource_type("auto-scaling-group")
                    .key(&t.key);
                if restore {
                    tag.value(&t.value)
                        .propagate_at_launch(t.propagate_at_launch)
                        .build()
                } else {
                    tag.build()
                }
            })
            .collect();
        let what = if restore {
            "restoring Cluster Autoscaler tags"
        } else {
            "removing Cluster Autoscaler tags"
        };
        paced(&pace, || async {
            let sent = if restore {
                client
                    .create_or_update_tags()
                    .set_tags(Some(tags.clone()))
                    .send()
                    .await
                    .map(|_| ())
                    .map_err(|e| classify(&format!("{what} of {}", target.display_name()), e))
            } else {
                client
                    .delete_tags()
                    .set_tags(Some(tags.clone()))
                    .send()
                    .await
                    .map(|_| ())
                    .map_err(|e| classify(&format!("{what} of {}", target.display_name()), e))
            };
            sent
        })
        .await
    }

    /// SuspendProcesses / ResumeProcesses with exactly `processes` (both are idempotent).
    async fn change_processes(
        &self,
        role: &SpokeRole,
        target: &Target,
        processes: Processes,
        suspend: bool,
    ) -> PortResult<()> {
        if target.kind != TargetKind::Asg || processes.is_empty() {
            return Ok(());
        }
        let client = self.autoscaling(role, &target.region).await?;
        let pace = self.pace("autoscaling", &role.account, &target.region);
        let names: Vec<String> = processes.names().into_iter().map(String::from).collect();
        paced(&pace, || async {
            let what = if suspend { "suspending" } else { "resuming" };
            let result = if suspend {
                client
                    .suspend_processes()
                    .auto_scaling_group_name(&target.name)
                    .set_scaling_processes(Some(names.clone()))
                    .send()
                    .await
                    .map(|_| ())
                    .map_err(|e| classify(&format!("{what} processes of ASG {}", target.name), e))
            } else {
                client
                    .resume_processes()
                    .auto_scaling_group_name(&target.name)
                    .set_scaling_processes(Some(names.clone()))
                    .send()
                    .await
                    .map(|_| ())
                    .map_err(|e| classify(&format!("{what} processes of ASG {}", target.name), e))
            };
            result
        })
        .await
    }

    async fn read_live_state(&self, role: &SpokeRole, target: &Target) -> PortResult<LiveState> {
        match target.kind {
            TargetKind::Asg => {
                let client = self.autoscaling(role, &target.region).await?;
                let pace = self.pace("autoscaling", &role.account, &target.region);
                let out = paced(&pace, || async {
                    client
                        .describe_auto_scaling_groups()
                        .auto_scaling_group_names(&target.name)
                        .send()
                        .await
                        .map_err(|e| classify(&format!("describing ASG {}", target.name), e))
                })
                .await?;
                let group = out
                    .auto_scaling_groups
                    .unwrap_or_default()
                    .into_iter()
                    .next()
                    .ok_or_else(|| {
                        PortError::new(
                            ErrorKind::NotFound,
                            format!("ASG {} no longer exists", target.name),
                        )
                    })?;
                Ok(LiveState {
                    sizes: Sizes::new(
                        group.min_size.unwrap_or_default(),
                        group.max_size.unwrap_or_default(),
                        group.desired_capacity.unwrap_or_default(),
                    ),
                    busy: false,
                    suspended: Processes::from_names(
                        group
                            .suspended_processes()
                            .iter()
                            .filter_map(|p| p.process_name()),
                    ),
                })
            }
            TargetKind::Nodegroup => {
                let client = self.eks(role, &target.region).await?;
                let pace = self.pace("eks", &role.account, &target.region);
                let cluster = cluster_of(target)?;
                let out = paced(&pace, || async {
                    client
                        .describe_nodegroup()
                        .cluster_name(cluster)
                        .nodegroup_name(&target.name)
                        .send()
                        .await
                        .map_err(|e| {
                            classify(
                                &format!("describing node group {}", target.display_name()),
                                e,
                            )
                        })
                })
                .await?;
                let ng = out.nodegroup.ok_or_else(|| {
                    PortError::new(
                        ErrorKind::NotFound,
                        format!("node group {} no longer exists", target.display_name()),
                    )
                })?;
                let scaling = ng.scaling_config.unwrap_or_else(|| {
                    aws_sdk_eks::types::NodegroupScalingConfig::builder().build()
                });
                // EKS applies config updates asynchronously; while one is in flight (or the group
                // is being created) a new update is rejected, so the worker retries later.
                let busy = matches!(
                    ng.status,
                    Some(aws_sdk_eks::types::NodegroupStatus::Updating)
                        | Some(aws_sdk_eks::types::NodegroupStatus::Creating)
                );
                Ok(LiveState {
                    sizes: Sizes::new(
                        scaling.min_size.unwrap_or_default(),
                        scaling.max_size.unwrap_or_default(),
                        scaling.desired_size.unwrap_or_default(),
                    ),
                    busy,
                    suspended: Processes::NONE,
                })
            }
        }
    }

    async fn update_sizes(
        &self,
        role: &SpokeRole,
        target: &Target,
        sizes: Sizes,
    ) -> PortResult<Option<String>> {
        match target.kind {
            TargetKind::Asg => {
                let client = self.autoscaling(role, &target.region).await?;
                let pace = self.pace("autoscaling", &role.account, &target.region);
                paced(&pace, || async {
                    client
                        .update_auto_scaling_group()
                        .auto_scaling_group_name(&target.name)
                        .min_size(sizes.min)
                        .max_size(sizes.max)
                        .desired_capacity(sizes.desired)
                        .send()
                        .await
                        .map(|_| None)
                        .map_err(|e| classify(&format!("updating ASG {}", target.name), e))
                })
                .await
            }
            TargetKind::Nodegroup => {
                let client = self.eks(role, &target.region).await?;
                let pace = self.pace("eks", &role.account, &target.region);
                let cluster = cluster_of(target)?;
                let scaling = aws_sdk_eks::types::NodegroupScalingConfig::builder()
                    .min_size(sizes.min)
                    .max_size(sizes.max)
                    .desired_size(sizes.desired)
                    .build();
                paced(&pace, || async {
                    client
                        .update_nodegroup_config()
                        .cluster_name(cluster)
                        .nodegroup_name(&target.name)
                        .scaling_config(scaling.clone())
                        .send()
                        .await
                        .map(|out| out.update.and_then(|u| u.id))
                        .map_err(|e| {
                            classify(&format!("updating node group {}", target.display_name()), e)
                        })
                })
                .await
            }
        }
    }

    /// DescribeUpdate says how an EKS update ended. Where the service does not answer it (the
    /// emulator does not implement it), the node group itself says: UPDATING is in progress,
    /// ACTIVE at the requested sizes is done, anything else failed.
    async fn read_update_state(
        &self,
        role: &SpokeRole,
        target: &Target,
        update_id: &str,
        expected: Sizes,
    ) -> PortResult<UpdateState> {
        let client = self.eks(role, &target.region).await?;
        let pace = self.pace("eks", &role.account, &target.region);
        match described_update(&client, &pace, target, update_id).await {
            Ok(Some(state)) => Ok(state),
            Err(e) if e.kind == ErrorKind::ExpiredCredentials => Err(e),
            Ok(None) | Err(_) => {
                let live = self.read_live_state(role, target).await?;
                Ok(if live.busy {
                    UpdateState::InProgress
                } else if live.sizes == expected {
                    UpdateState::Done
                } else {
                    UpdateState::Failed(format!(
                        "the node group is at {} after the update, not {expected}",
                        live.sizes
                    ))
                })
            }
        }
    }
}

/// How DescribeUpdate says an update of the node group stands; `None` if it answered without one.
async fn described_update(
    client: &aws_sdk_eks::Client,
    pace: &Pace,
    target: &Target,
    update_id: &str,
) -> PortResult<Option<UpdateState>> {
    let cluster = cluster_of(target)?;
    let out = paced(pace, || async {
        client
            .describe_update()
            .name(cluster)
            .nodegroup_name(&target.name)
            .update_id(update_id)
            .send()
            .await
            .map_err(|e| classify(&format!("describing update {update_id}"), e))
    })
    .await?;
    Ok(out.update.as_ref().map(update_state_of))
}

/// An EKS update's status as curfew reads it: only Successful is done.
fn update_state_of(update: &aws_sdk_eks::types::Update) -> UpdateState {
    use aws_sdk_eks::types::UpdateStatus;
    match update.status() {
        Some(UpdateStatus::Successful) => UpdateState::Done,
        Some(UpdateStatus::InProgress) | None => UpdateState::InProgress,
        Some(other) => {
            let errors: Vec<String> = update
                .errors()
                .iter()
                .map(|e| {
                    format!(
                        "{}: {}",
                        e.error_code().map(|c| c.as_str()).unwrap_or("error"),
                        e.error_message().unwrap_or("no message")
                    )
                })
                .collect();
            UpdateState::Failed(format!(
                "{} ({})",
                other.as_str(),
                if errors.is_empty() {
                    "no error reported".to_string()
                } else {
                    errors.join("; ")
                }
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_sts::operation::assume_role::AssumeRoleOutput;
    use aws_smithy_mocks::{mock, mock_client};
    use curfew_core::clock::SystemClock;

    #[tokio::test]
    async fn the_last_asg_activity_reads_the_newest_one_with_its_time_and_cause() {
        use aws_sdk_autoscaling::operation::describe_scaling_activities::DescribeScalingActivitiesOutput;
        use aws_sdk_autoscaling::types::Activity;
        let newest = mock!(aws_sdk_autoscaling::Client::describe_scaling_activities)
            .match_requests(|r| {
                r.auto_scaling_group_name() == Some("dev-web") && r.max_records() == Some(1)
            })
            .then_output(|| {
                DescribeScalingActivitiesOutput::builder()
                    .activities(
                        Activity::builder()
                            .activity_id("a-1")
                            .auto_scaling_group_name("dev-web")
                            .cause("a user request update of AutoScalingGroup constraints to min: 1, max: 5, desired: 3")
                            .start_time(aws_smithy_types::DateTime::from_secs(1_799_000_000))
                            .status_code(aws_sdk_autoscaling::types::ScalingActivityStatusCode::Successful)
                            .build(),
                    )
                    .build()
            });
        let client = mock_client!(aws_sdk_autoscaling, [&newest]);
        assert_eq!(
            last_asg_activity(&client, &Pace::new(), "dev-web").await.unwrap().as_deref(),
            Some("at 2027-01-03T18:13:20Z: a user request update of AutoScalingGroup constraints to min: 1, max: 5, desired: 3")
        );
        let none = mock!(aws_sdk_autoscaling::Client::describe_scaling_activities)
            .then_output(|| DescribeScalingActivitiesOutput::builder().build());
        let client = mock_client!(aws_sdk_autoscaling, [&none]);
        assert_eq!(
            last_asg_activity(&client, &Pace::new(), "dev-web")
                .await
                .unwrap(),
            None
        );
    }

    #[tokio::test]
    async fn discovery_reads_an_asgs_instance_types_from_its_overrides_else_its_instances() {
        use aws_sdk_autoscaling::operation::describe_auto_scaling_groups::DescribeAutoScalingGroupsOutput;
        use aws_sdk_autoscaling::types::{
            AutoScalingGroup, Instance, LaunchTemplate, LaunchTemplateOverrides,
            MixedInstancesPolicy, TagDescription,
        };
        let group = |name: &str| AutoScalingGroup::builder().auto_scaling_group_name(name);
        let instance = |id: &str, kind: &str| {
            Instance::builder()
                .instance_id(id)
                .instance_type(kind)
                .build()
        };
        let described = mock!(aws_sdk_autoscaling::Client::describe_auto_scaling_groups)
            .then_output(move || {
                DescribeAutoScalingGroupsOutput::builder()
                    .auto_scaling_groups(
                        group("mixed")
                            .mixed_instances_policy(
                                MixedInstancesPolicy::builder()
                                    .launch_template(
                                        LaunchTemplate::builder()
                                            .overrides(
                                                LaunchTemplateOverrides::builder()
                                                    .instance_type("m5a.large")
                                                    .build(),
                                            )
                                            .overrides(
                                                LaunchTemplateOverrides::builder()
                                                    .instance_type("m5.large")
                                                    .build(),
                                            )
                                            .build(),
                                    )
                                    .build(),
                            )
                            // The overrides say what it launches; a leftover instance does not.
                            .instances(instance("i-0", "t2.nano"))
                            .build(),
                    )
                    .auto_scaling_groups(
                        group("running")
                            .instances(instance("i-1", "t3.small"))
                            .instances(instance("i-2", "t3.micro"))
                            .instances(instance("i-3", "t3.small"))
                            .build(),
                    )
                    .auto_scaling_groups(group("at-zero").build())
                    .auto_scaling_groups(
                        group("eks-workers")
                            .tags(
                                TagDescription::builder()
                                    .key(NODEGROUP_TAG)
                                    .value("w")
                                    .build(),
                            )
                            .instances(instance("i-4", "m5.large"))
                            .build(),
                    )
                    .build()
            });
        let client = mock_client!(aws_sdk_autoscaling, [&described]);

        let found = listed_asgs(client).await.unwrap();

        let types: Vec<(&str, Vec<&str>)> = found
            .iter()
            .map(|t| {
                let types = t.instance_types.iter().map(String::as_str).collect();
                (t.name.as_str(), types)
            })
            .collect();
        assert_eq!(
            types,
            [
                ("mixed", vec!["m5.large", "m5a.large"]),
                ("running", vec!["t3.micro", "t3.small"]),
                ("at-zero", vec![]),
            ]
        );
    }

    #[tokio::test]
    async fn discovery_reads_a_node_groups_instance_types_from_describe_nodegroup() {
        use aws_sdk_eks::operation::describe_cluster::DescribeClusterOutput;
        use aws_sdk_eks::operation::describe_nodegroup::DescribeNodegroupOutput;
        use aws_sdk_eks::operation::list_clusters::ListClustersOutput;
        use aws_sdk_eks::operation::list_nodegroups::ListNodegroupsOutput;
        use aws_sdk_eks::types::{Cluster, Nodegroup};
        let clusters = mock!(aws_sdk_eks::Client::list_clusters)
            .then_output(|| ListClustersOutput::builder().clusters("dev").build());
        let cluster = mock!(aws_sdk_eks::Client::describe_cluster).then_output(|| {
            DescribeClusterOutput::builder()
                .cluster(Cluster::builder().name("dev").tags("env", "dev").build())
                .build()
        });
        let names = mock!(aws_sdk_eks::Client::list_nodegroups).then_output(|| {
            ListNodegroupsOutput::builder()
                .nodegroups("general")
                .nodegroups("templated")
                .build()
        });
        let general = mock!(aws_sdk_eks::Client::describe_nodegroup)
            .match_requests(|r| r.nodegroup_name() == Some("general"))
            .then_output(|| {
                DescribeNodegroupOutput::builder()
                    .nodegroup(
                        Nodegroup::builder()
                            .nodegroup_name("general")
                            .instance_types("m5.xlarge")
                            .instance_types("m5.large")
                            .tags("pool", "general")
                            .build(),
                    )
                    .build()
            });
        // A node group whose launch template names the type: DescribeNodegroup says none.
        let templated = mock!(aws_sdk_eks::Client::describe_nodegroup)
            .match_requests(|r| r.nodegroup_name() == Some("templated"))
            .then_output(|| {
                DescribeNodegroupOutput::builder()
                    .nodegroup(Nodegroup::builder().nodegroup_name("templated").build())
                    .build()
            });
        // Node groups are described concurrently: any order of requests.
        let client = mock_client!(
            aws_sdk_eks,
            aws_smithy_mocks::RuleMode::MatchAny,
            [&clusters, &cluster, &names, &general, &templated]
        );

        let found: Vec<Target> =
            nodegroup_pages(fixed(client), Arc::default(), "111111111111", "eu-west-1")
                .try_concat()
                .await
                .unwrap();

        assert_eq!(found.len(), 2);
        assert_eq!(found[0].name, "general");
        assert_eq!(found[0].instance_types, ["m5.large", "m5.xlarge"]);
        assert_eq!(found[0].tag("env"), Some("dev"));
        assert_eq!(found[1].name, "templated");
        assert!(found[1].instance_types.is_empty());
    }

    /// Discovers three clusters of more node groups than can be described at once, EKS
    /// answering the first `throttled` DescribeNodegroup requests with a throttling error, and
    /// checks every node group is listed once, in order, with its tags and its cluster's, a
    /// cluster a page. Returns the DescribeNodegroup requests made.
    async fn discover_three_clusters(throttled: usize) -> usize {
        use aws_sdk_eks::operation::describe_cluster::DescribeClusterOutput;
        use aws_sdk_eks::operation::describe_nodegroup::{
            DescribeNodegroupError, DescribeNodegroupOutput,
        };
        use aws_sdk_eks::operation::list_clusters::ListClustersOutput;
        use aws_sdk_eks::operation::list_nodegroups::ListNodegroupsOutput;
        use aws_sdk_eks::types::{Cluster, Nodegroup};
        use aws_smithy_mocks::MockResponse;
        use std::sync::atomic::{AtomicUsize, Ordering};
        const PER_CLUSTER: usize = EKS_DESCRIBE_CEILING + 3;
        let clusters = mock!(aws_sdk_eks::Client::list_clusters).then_output(|| {
            ListClustersOutput::builder()
                .clusters("a")
                .clusters("b")
                .clusters("c")
                .build()
        });
        let cluster = mock!(aws_sdk_eks::Client::describe_cluster).then_compute_output(|r| {
            let name = r.name().unwrap_or_default();
            DescribeClusterOutput::builder()
                .cluster(Cluster::builder().name(name).tags("cluster", name).build())
                .build()
        });
        let names = mock!(aws_sdk_eks::Client::list_nodegroups).then_compute_output(|r| {
            let cluster = r.cluster_name().unwrap_or_default().to_string();
            ListNodegroupsOutput::builder()
                .set_nodegroups(Some(
                    (0..PER_CLUSTER).map(|i| format!("{cluster}-{i}")).collect(),
                ))
                .build()
        });
        let answered = AtomicUsize::new(0);
        let described =
            mock!(aws_sdk_eks::Client::describe_nodegroup).then_compute_response(move |r| {
                if answered.fetch_add(1, Ordering::SeqCst) < throttled {
                    return MockResponse::Error(DescribeNodegroupError::generic(
                        aws_smithy_types::error::ErrorMetadata::builder()
                            .code("ThrottlingException")
                            .message("Rate exceeded")
                            .build(),
                    ));
                }
                MockResponse::Output(
                    DescribeNodegroupOutput::builder()
                        .nodegroup(
                            Nodegroup::builder()
                                .nodegroup_name(r.nodegroup_name().unwrap_or_default())
                                .tags("in", r.cluster_name().unwrap_or_default())
                                .build(),
                        )
                        .build(),
                )
            });
        // Each throttle reaches discovery's own retry (the mock cannot answer the SDK's).
        let client = mock_client!(
            aws_sdk_eks,
            aws_smithy_mocks::RuleMode::MatchAny,
            [&clusters, &cluster, &names, &described],
            |conf| conf.retry_config(aws_smithy_types::retry::RetryConfig::disabled())
        );

        let pages: Vec<Vec<Target>> =
            nodegroup_pages(fixed(client), Arc::default(), "111111111111", "eu-west-1")
                .try_collect()
                .await
                .unwrap();

        assert!(
            pages.iter().all(|page| page.len() == 1),
            "a page a node group, each as it is described"
        );
        let found = pages.concat();
        let expected: Vec<String> = ["a", "b", "c"]
            .iter()
            .flat_map(|c| (0..PER_CLUSTER).map(move |i| format!("{c}-{i}")))
            .collect();
        let listed: Vec<&str> = found.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(listed, expected);
        assert_eq!(cluster.num_calls(), 3);
        for target in &found {
            let cluster = target.cluster.as_deref().unwrap();
            assert!(target.name.starts_with(cluster));
            assert_eq!(target.tag("in"), Some(cluster), "{}", target.name);
            assert_eq!(
                target.cluster_tags.get("cluster").map(String::as_str),
                Some(cluster)
            );
        }
        described.num_calls()
    }

    #[tokio::test]
    async fn discovery_describes_every_node_group_of_every_cluster_once_in_listing_order() {
        assert_eq!(
            discover_three_clusters(0).await,
            3 * (EKS_DESCRIBE_CEILING + 3)
        );
    }

    #[tokio::test]
    async fn every_cluster_is_listed_before_the_first_node_group_is_described() {
        use aws_sdk_eks::operation::describe_cluster::DescribeClusterOutput;
        use aws_sdk_eks::operation::describe_nodegroup::DescribeNodegroupOutput;
        use aws_sdk_eks::operation::list_clusters::ListClustersOutput;
        use aws_sdk_eks::operation::list_nodegroups::ListNodegroupsOutput;
        use aws_sdk_eks::types::{Cluster, Nodegroup};
        // More clusters than are listed at once: even so, no node group is described before the
        // last cluster is listed (see `nodegroup_pages` for why).
        const CLUSTERS: usize = EKS_DESCRIBE_CEILING + 6;
        let asked = Arc::new(Mutex::new(Vec::<String>::new()));
        let log = |asked: &Arc<Mutex<Vec<String>>>, what: String| {
            asked.lock().unwrap().push(what);
        };
        let clusters = mock!(aws_sdk_eks::Client::list_clusters).then_output(|| {
            ListClustersOutput::builder()
                .set_clusters(Some((0..CLUSTERS).map(|i| format!("c{i}")).collect()))
                .build()
        });
        let seen = asked.clone();
        let cluster = mock!(aws_sdk_eks::Client::describe_cluster).then_compute_output(move |r| {
            log(
                &seen,
                format!("DescribeCluster {}", r.name().unwrap_or_default()),
            );
            DescribeClusterOutput::builder()
                .cluster(
                    Cluster::builder()
                        .name(r.name().unwrap_or_default())
                        .build(),
                )
                .build()
        });
        let names = mock!(aws_sdk_eks::Client::list_nodegroups)
            .then_output(|| ListNodegroupsOutput::builder().nodegroups("ng").build());
        let seen = asked.clone();
        let described =
            mock!(aws_sdk_eks::Client::describe_nodegroup).then_compute_output(move |r| {
                let cluster = r.cluster_name().unwrap_or_default();
                log(&seen, format!("DescribeNodegroup {cluster}"));
                DescribeNodegroupOutput::builder()
                    .nodegroup(Nodegroup::builder().nodegroup_name("ng").build())
                    .build()
            });
        let client = mock_client!(
            aws_sdk_eks,
            aws_smithy_mocks::RuleMode::MatchAny,
            [&clusters, &cluster, &names, &described]
        );

        let pages: Vec<Vec<Target>> =
            nodegroup_pages(fixed(client), Arc::default(), "111111111111", "eu-west-1")
                .try_collect()
                .await
                .unwrap();

        assert_eq!(pages.len(), CLUSTERS, "a page a node group");
        let asked = asked.lock().unwrap().clone();
        let first_describe = asked
            .iter()
            .position(|a| a.starts_with("DescribeNodegroup"))
            .unwrap();
        let last_cluster = asked
            .iter()
            .rposition(|a| a.starts_with("DescribeCluster"))
            .unwrap();
        assert!(last_cluster < first_describe, "{asked:?}");
    }

    #[tokio::test]
    async fn throttled_node_group_describes_are_retried_and_the_listing_keeps_its_order() {
        // More throttles than requests are in flight at first: the limit halves, the throttled
        // requests are retried, and every node group is described once it is answered.
        let throttled = EKS_DESCRIBE_CONCURRENCY + 8;
        assert_eq!(
            discover_three_clusters(throttled).await,
            3 * (EKS_DESCRIBE_CEILING + 3) + throttled
        );
    }

    #[test]
    fn spoke_clients_retry_in_the_partition_of_their_service_account_and_region() {
        use aws_sdk_autoscaling::config::retry::RetryPartition;
        let spokes = spokes_with_sts(aws_sdk_sts::Client::from_conf(
            aws_sdk_sts::Config::builder()
                .behavior_version(aws_config::BehaviorVersion::latest())
                .build(),
        ));
        let creds = || Credentials::new("a", "b", None, None, "test");
        let partition = |client: &aws_sdk_autoscaling::Client| {
            client.config().retry_partition().cloned().unwrap()
        };
        let asg = spokes.autoscaling_with(creds(), "111111111111", "eu-west-1");
        let eks = spokes.eks_with(creds(), "111111111111", "eu-west-1");

        assert_eq!(
            partition(&asg),
            RetryPartition::new("curfew-autoscaling-111111111111-eu-west-1")
        );
        assert_eq!(
            eks.config().retry_partition().cloned().unwrap(),
            RetryPartition::new("curfew-eks-111111111111-eu-west-1")
        );
        for (account, region) in [("222222222222", "eu-west-1"), ("111111111111", "us-east-1")] {
            assert_ne!(
                partition(&spokes.autoscaling_with(creds(), account, region)),
                partition(&asg)
            );
        }
    }

    #[tokio::test]
    async fn discovery_asks_for_the_largest_page_of_auto_scaling_groups() {
        use aws_sdk_autoscaling::operation::describe_auto_scaling_groups::DescribeAutoScalingGroupsOutput;
        let described = mock!(aws_sdk_autoscaling::Client::describe_auto_scaling_groups)
            .match_requests(|r| r.max_records() == Some(ASG_PAGE))
            .then_output(|| DescribeAutoScalingGroupsOutput::builder().build());
        let client = mock_client!(aws_sdk_autoscaling, [&described]);

        let found = listed_asgs(client).await.unwrap();

        assert!(found.is_empty());
        assert_eq!(described.num_calls(), 1);
    }

    #[tokio::test]
    async fn assume_role_sends_the_external_id_and_a_session_name() {
        let assume = mock!(aws_sdk_sts::Client::assume_role)
            .match_requests(|r| {
                r.role_arn() == Some("arn:aws:iam::111111111111:role/curfew-spoke")
                    && r.external_id() == Some("ext-1")
                    && r.role_session_name() == Some("curfew")
            })
            .then_output(|| {
                AssumeRoleOutput::builder()
                    .credentials(
                        aws_sdk_sts::types::Credentials::builder()
                            .access_key_id("AKIA")
                            .secret_access_key("secret")
                            .session_token("token")
                            .expiration(aws_smithy_types::DateTime::from_secs(4_000_000_000))
                            .build()
                            .unwrap(),
                    )
                    .build()
            });
        let sts = mock_client!(aws_sdk_sts, [&assume]);
        let sdk = aws_config::SdkConfig::builder()
            .behavior_version(aws_config::BehaviorVersion::latest())
            .region(Region::new("eu-west-1"))
            .build();
        let mut spokes = AwsSpokes::new(sdk, Arc::new(SystemClock));
        spokes.sts = sts;
        let role = SpokeRole {
            account: "111111111111".into(),
            role_arn: "arn:aws:iam::111111111111:role/curfew-spoke".into(),
            external_id: Some("ext-1".into()),
        };
        spokes.credentials(&role).await.unwrap();
        spokes.credentials(&role).await.unwrap();
        assert_eq!(
            assume.num_calls(),
            1,
            "the second lookup is served by the session cache"
        );
        assert_eq!(spokes.assume_role_calls(), 1);
    }

    fn spokes_with_sts(sts: aws_sdk_sts::Client) -> AwsSpokes {
        let sdk = aws_config::SdkConfig::builder()
            .behavior_version(aws_config::BehaviorVersion::latest())
            .region(Region::new("eu-west-1"))
            .build();
        let mut spokes = AwsSpokes::new(sdk, Arc::new(SystemClock));
        spokes.sts = sts;
        spokes
    }

    fn spoke_role() -> SpokeRole {
        SpokeRole {
            account: "111111111111".into(),
            role_arn: "arn:aws:iam::111111111111:role/curfew-spoke".into(),
            external_id: None,
        }
    }

    fn assumed() -> AssumeRoleOutput {
        AssumeRoleOutput::builder()
            .credentials(
                aws_sdk_sts::types::Credentials::builder()
                    .access_key_id("AKIA")
                    .secret_access_key("secret")
                    .session_token("token")
                    .expiration(aws_smithy_types::DateTime::from_secs(4_000_000_000))
                    .build()
                    .unwrap(),
            )
            .build()
    }

    #[tokio::test]
    async fn an_expired_session_is_dropped_and_the_call_made_once_more_with_a_fresh_one() {
        let assume = mock!(aws_sdk_sts::Client::assume_role)
            .sequence()
            .output(assumed)
            .times(3)
            .build();
        let spokes = spokes_with_sts(mock_client!(aws_sdk_sts, [&assume]));
        let role = spoke_role();
        let calls = std::sync::atomic::AtomicUsize::new(0);
        let answer = spokes
            .fresh_on_expiry(&role, || async {
                spokes.credentials(&role).await?;
                if calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0 {
                    return Err(PortError::new(
                        crate::error::kind_of_code(Some("ExpiredToken")),
                        "ExpiredToken: The security token included in the request is expired",
                    ));
                }
                Ok("described")
            })
            .await;
        assert_eq!(answer.unwrap(), "described");
        assert_eq!(assume.num_calls(), 2, "a fresh session was assumed");

        // Expired again with the fresh session: reported, not retried forever.
        let again = spokes
            .fresh_on_expiry(&role, || async {
                spokes.credentials(&role).await?;
                calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                Err::<(), _>(PortError::new(ErrorKind::ExpiredCredentials, "expired"))
            })
            .await;
        assert_eq!(again.unwrap_err().kind, ErrorKind::ExpiredCredentials);
        assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 4);
        assert_eq!(assume.num_calls(), 3);
    }

    #[tokio::test]
    async fn a_clusters_endpoint_and_ca_are_read_from_describe_cluster() {
        use aws_sdk_eks::operation::describe_cluster::DescribeClusterOutput;
        use aws_sdk_eks::types::{Certificate, Cluster, ClusterStatus};
        let described = mock!(aws_sdk_eks::Client::describe_cluster)
            .match_requests(|r| r.name() == Some("dev"))
            .then_output(|| {
                DescribeClusterOutput::builder()
                    .cluster(
                        Cluster::builder()
                            .name("dev")
                            .status(ClusterStatus::Active)
                            .endpoint("https://ABC123.gr7.eu-west-1.eks.amazonaws.com")
                            .certificate_authority(
                                Certificate::builder().data("LS0tLS1CRUdJTg==").build(),
                            )
                            .build(),
                    )
                    .build()
            });
        let client = mock_client!(aws_sdk_eks, [&described]);

        let (endpoint, ca) = described_endpoint(&client, "dev").await.unwrap();

        assert_eq!(endpoint, "https://ABC123.gr7.eu-west-1.eks.amazonaws.com");
        assert_eq!(ca, "LS0tLS1CRUdJTg==");
        assert_eq!(described.num_calls(), 1);
    }

    #[tokio::test]
    async fn a_cluster_still_being_created_has_no_endpoint_yet_and_is_in_use() {
        use aws_sdk_eks::operation::describe_cluster::DescribeClusterOutput;
        use aws_sdk_eks::types::{Cluster, ClusterStatus};
        let creating = mock!(aws_sdk_eks::Client::describe_cluster).then_output(|| {
            DescribeClusterOutput::builder()
                .cluster(
                    Cluster::builder()
                        .name("dev")
                        .status(ClusterStatus::Creating)
                        .build(),
                )
                .build()
        });
        let client = mock_client!(aws_sdk_eks, [&creating]);

        let err = described_endpoint(&client, "dev").await.unwrap_err();

        assert_eq!(err.kind, ErrorKind::InUse);
        assert!(err.message.contains("CREATING"), "{}", err.message);
    }

    #[tokio::test]
    async fn a_missing_cluster_is_not_found() {
        use aws_sdk_eks::operation::describe_cluster::DescribeClusterError;
        use aws_sdk_eks::types::error::ResourceNotFoundException;
        let missing = mock!(aws_sdk_eks::Client::describe_cluster).then_error(|| {
            DescribeClusterError::ResourceNotFoundException(
                ResourceNotFoundException::builder()
                    .message("No cluster found for name: dev.")
                    .meta(
                        aws_smithy_types::error::ErrorMetadata::builder()
                            .code("ResourceNotFoundException")
                            .build(),
                    )
                    .build(),
            )
        });
        let client = mock_client!(aws_sdk_eks, [&missing]);

        let err = described_endpoint(&client, "dev").await.unwrap_err();

        assert_eq!(err.kind, ErrorKind::NotFound, "{err}");
    }

    #[tokio::test]
    async fn a_failed_eks_update_is_reported_with_its_errors() {
        use aws_sdk_eks::operation::describe_update::DescribeUpdateOutput;
        use aws_sdk_eks::types::{ErrorCode, ErrorDetail, Update, UpdateStatus};
        let failed = mock!(aws_sdk_eks::Client::describe_update)
            .match_requests(|r| {
                r.name() == Some("dev")
                    && r.nodegroup_name() == Some("workers")
                    && r.update_id() == Some("u-1")
            })
            .then_output(|| {
                DescribeUpdateOutput::builder()
                    .update(
                        Update::builder()
                            .id("u-1")
                            .status(UpdateStatus::Failed)
                            .errors(
                                ErrorDetail::builder()
                                    .error_code(ErrorCode::NodeCreationFailure)
                                    .error_message("could not launch instances")
                                    .build(),
                            )
                            .build(),
                    )
                    .build()
            });
        let running = mock!(aws_sdk_eks::Client::describe_update).then_output(|| {
            DescribeUpdateOutput::builder()
                .update(
                    Update::builder()
                        .id("u-1")
                        .status(UpdateStatus::InProgress)
                        .build(),
                )
                .build()
        });
        let client = mock_client!(
            aws_sdk_eks,
            aws_smithy_mocks::RuleMode::Sequential,
            [&failed, &running]
        );
        let target = Target {
            account: "111111111111".into(),
            region: "eu-west-1".into(),
            kind: TargetKind::Nodegroup,
            cluster: Some("dev".into()),
            name: "workers".into(),
            tags: Default::default(),
            cluster_tags: Default::default(),
            instance_types: Vec::new(),
        };
        let Some(UpdateState::Failed(reason)) =
            described_update(&client, &Pace::new(), &target, "u-1")
                .await
                .unwrap()
        else {
            panic!("a failed update reads as failed");
        };
        assert!(
            reason.contains("Failed") && reason.contains("NodeCreationFailure"),
            "{reason}"
        );
        assert_eq!(
            described_update(&client, &Pace::new(), &target, "u-1")
                .await
                .unwrap(),
            Some(UpdateState::InProgress)
        );
    }

    #[tokio::test]
    async fn an_asg_update_sets_min_max_and_desired_together() {
        let spoke = AutoScalingSpoke::answering();
        let (spokes, role) = spokes_reaching(&spoke);

        let update_id = spokes
            .set_sizes(&role, &asg_in("eu-west-1", "web"), Sizes::new(0, 0, 0))
            .await
            .unwrap();

        assert_eq!(update_id, None, "an ASG update is synchronous");
        let sent = spoke.bodies();
        assert_eq!(sent.len(), 1, "{sent:?}");
        for field in [
            "Action=UpdateAutoScalingGroup",
            "AutoScalingGroupName=web",
            "MinSize=0",
            "MaxSize=0",
            "DesiredCapacity=0",
        ] {
            assert!(
                sent[0].split('&').any(|f| f == field),
                "{field} in {}",
                sent[0]
            );
        }
    }

    #[tokio::test]
    async fn each_assume_roles_outcome_is_recorded_for_its_account_once_per_assume() {
        use aws_sdk_sts::operation::assume_role::AssumeRoleError;
        use curfew_core::fakes::MemoryStore;
        use curfew_core::health::{ContactOutcome, HealthStore};
        let assume = mock!(aws_sdk_sts::Client::assume_role)
            .sequence()
            .error(|| {
                AssumeRoleError::generic(
                    aws_smithy_types::error::ErrorMetadata::builder()
                        .code("AccessDenied")
                        .message("not authorized to perform: sts:AssumeRole")
                        .build(),
                )
            })
            .output(assumed)
            .build();
        let store = Arc::new(MemoryStore::new());
        let spokes = spokes_with_sts(mock_client!(aws_sdk_sts, [&assume])).recording_contacts(
            Arc::new(ContactRecorder::new(store.clone(), Arc::new(SystemClock))),
        );
        let role = spoke_role();

        let denied = spokes.credentials(&role).await.unwrap_err();
        assert_eq!(denied.kind, ErrorKind::AccessDenied);
        let contacts = store.account_contacts().await.unwrap();
        assert_eq!(contacts.len(), 1);
        assert_eq!(
            (contacts[0].account.as_str(), contacts[0].outcome),
            ("111111111111", ContactOutcome::Denied)
        );
        assert!(contacts[0]
            .error
            .as_deref()
            .is_some_and(|e| e.contains("AccessDenied")));

        spokes.credentials(&role).await.unwrap();
        let reachable = store.account_contacts().await.unwrap();
        assert_eq!(reachable[0].outcome, ContactOutcome::Reachable);
        // Served by the session cache: no AssumeRole, so nothing recorded again.
        spokes.credentials(&role).await.unwrap();
        assert_eq!(store.account_contacts().await.unwrap(), reachable);
        assert_eq!(assume.num_calls(), 2);
    }

    /// A spoke's Auto Scaling as the SDK reaches it over HTTP: it keeps each request's body
    /// and answers an `UpdateAutoScalingGroup`, or (refusing) refuses every request with
    /// `Throttling`, as it does when the account's rate is spent.
    #[derive(Clone, Debug, Default)]
    struct AutoScalingSpoke {
        refusing: bool,
        bodies: Arc<Mutex<Vec<String>>>,
    }

    impl AutoScalingSpoke {
        fn answering() -> Self {
            AutoScalingSpoke::default()
        }

        fn refusing() -> Self {
            AutoScalingSpoke {
                refusing: true,
                ..AutoScalingSpoke::default()
            }
        }

        /// The bodies of the requests it received (form-encoded Auto Scaling queries).
        fn bodies(&self) -> Vec<String> {
            self.bodies.lock().unwrap().clone()
        }
    }

    impl aws_smithy_runtime_api::client::http::HttpConnector for AutoScalingSpoke {
        fn call(
            &self,
            request: aws_smithy_runtime_api::client::orchestrator::HttpRequest,
        ) -> aws_smithy_runtime_api::client::http::HttpConnectorFuture {
            let body = request.body().bytes().unwrap_or_default();
            self.bodies
                .lock()
                .unwrap()
                .push(String::from_utf8_lossy(body).into_owned());
            let (status, body) = if self.refusing {
                (
                    400,
                    "<ErrorResponse><Error><Type>Sender</Type><Code>Throttling</Code>\
                     <Message>Rate exceeded</Message></Error><RequestId>r</RequestId>\
                     </ErrorResponse>",
                )
            } else {
                (
                    200,
                    "<UpdateAutoScalingGroupResponse><ResponseMetadata><RequestId>r</RequestId>\
                     </ResponseMetadata></UpdateAutoScalingGroupResponse>",
                )
            };
            aws_smithy_runtime_api::client::http::HttpConnectorFuture::ready(Ok(
                aws_smithy_runtime_api::client::orchestrator::HttpResponse::new(
                    status.try_into().expect("a valid status"),
                    aws_smithy_types::body::SdkBody::from(body),
                ),
            ))
        }
    }

    impl aws_smithy_runtime_api::client::http::HttpClient for AutoScalingSpoke {
        fn http_connector(
            &self,
            _settings: &aws_smithy_runtime_api::client::http::HttpConnectorSettings,
            _components: &aws_smithy_runtime_api::client::runtime_components::RuntimeComponents,
        ) -> aws_smithy_runtime_api::client::http::SharedHttpConnector {
            aws_smithy_runtime_api::client::http::SharedHttpConnector::new(self.clone())
        }
    }

    /// An adapter whose spoke calls reach `spoke` (STS mocked to assume any role), and the
    /// role it assumes.
    fn spokes_reaching(spoke: &AutoScalingSpoke) -> (AwsSpokes, SpokeRole) {
        let assume = mock!(aws_sdk_sts::Client::assume_role).then_output(assumed);
        let sdk = aws_config::SdkConfig::builder()
            .behavior_version(aws_config::BehaviorVersion::latest())
            .region(Region::new("eu-west-1"))
            .http_client(spoke.clone())
            .retry_config(crate::config::sdk_retry_config())
            .build();
        let mut spokes = AwsSpokes::new(sdk, Arc::new(SystemClock));
        spokes.sts = mock_client!(aws_sdk_sts, [&assume]);
        (spokes, spoke_role())
    }

    fn asg_in(region: &str, name: &str) -> Target {
        Target {
            account: spoke_role().account,
            region: region.into(),
            kind: TargetKind::Asg,
            cluster: None,
            name: name.into(),
            tags: Default::default(),
            cluster_tags: Default::default(),
            instance_types: Vec::new(),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn an_account_regions_refused_auto_scaling_calls_pace_its_later_ones_and_no_others() {
        let spoke = AutoScalingSpoke::refusing();
        let (spokes, role) = spokes_reaching(&spoke);
        let asg = asg_in("eu-west-1", "web");

        let refused = spokes
            .set_sizes(&role, &asg, Sizes::new(0, 0, 0))
            .await
            .unwrap_err();

        assert_eq!(refused.kind, ErrorKind::Throttled, "{refused}");
        assert!(spoke.bodies().len() >= 3);
        let pace = spokes.pace("autoscaling", &role.account, "eu-west-1");
        assert!(pace.falls() > 0, "persisting refusals pace the calls");
        assert!(pace.rate().is_some());
        for (service, region) in [("eks", "eu-west-1"), ("autoscaling", "us-east-1")] {
            let other = spokes.pace(service, &role.account, region);
            assert_eq!(other.falls(), 0, "{service} in {region} is not paced");
        }
    }

    /// A listing client of `client` alone, as a test's mock makes it.
    fn fixed<C: Clone + Send + Sync + 'static>(client: C) -> ListingClient<'static, C> {
        ListingClient::new(move |_| {
            let client = client.clone();
            Box::pin(async move { Ok(client) })
        })
    }

    /// Every ASG `client` lists, its pages in order.
    async fn listed_asgs(client: aws_sdk_autoscaling::Client) -> PortResult<Vec<Target>> {
        asg_pages(fixed(client), Arc::default(), "111111111111", "eu-west-1")
            .try_concat()
            .await
    }

    /// A spoke as the SDK reaches it over HTTP, listing `pages` of ASGs (by name) in pages
    /// chained by `NextToken=page-<n>`, and no EKS clusters. It answers the requests for a page
    /// with the error codes `refusals` holds for it first, one a request, and keeps the number
    /// of the page each DescribeAutoScalingGroups asked for.
    #[derive(Clone, Debug, Default)]
    struct ListingSpoke {
        pages: Vec<Vec<&'static str>>,
        refusals: Arc<Mutex<HashMap<usize, Vec<&'static str>>>>,
        asked: Arc<Mutex<Vec<usize>>>,
    }

    impl ListingSpoke {
        fn of(pages: Vec<Vec<&'static str>>) -> Self {
            ListingSpoke {
                pages,
                ..ListingSpoke::default()
            }
        }

        /// The spoke answers the first request for page `page` with error `code`.
        fn refusing_once(self, page: usize, code: &'static str) -> Self {
            self.refusals
                .lock()
                .unwrap()
                .entry(page)
                .or_default()
                .push(code);
            self
        }

        /// The pages DescribeAutoScalingGroups asked for, in the order asked.
        fn asked(&self) -> Vec<usize> {
            self.asked.lock().unwrap().clone()
        }

        fn answer(
            &self,
            request: &aws_smithy_runtime_api::client::orchestrator::HttpRequest,
        ) -> (u16, String) {
            if request.uri().contains("eks.") {
                return (200, r#"{"clusters":[]}"#.to_string());
            }
            let body = String::from_utf8_lossy(request.body().bytes().unwrap_or_default());
            assert!(body.contains("Action=DescribeAutoScalingGroups"), "{body}");
            let page = body
                .split('&')
                .find_map(|f| f.strip_prefix("NextToken=page-"))
                .map_or(0, |n| n.parse().unwrap());
            self.asked.lock().unwrap().push(page);
            if let Some(code) = self
                .refusals
                .lock()
                .unwrap()
                .get_mut(&page)
                .and_then(|codes| (!codes.is_empty()).then(|| codes.remove(0)))
            {
                let error = format!(
                    "<ErrorResponse><Error><Type>Sender</Type><Code>{code}</Code>\
                     <Message>refused</Message></Error><RequestId>r</RequestId></ErrorResponse>"
                );
                return (400, error);
            }
            let groups: String = self.pages[page]
                .iter()
                .map(|name| {
                    format!("<member><AutoScalingGroupName>{name}</AutoScalingGroupName></member>")
                })
                .collect();
            let next = if page + 1 < self.pages.len() {
                format!("<NextToken>page-{}</NextToken>", page + 1)
            } else {
                String::new()
            };
            (
                200,
                format!(
                    "<DescribeAutoScalingGroupsResponse><DescribeAutoScalingGroupsResult>\
                     <AutoScalingGroups>{groups}</AutoScalingGroups>{next}\
                     </DescribeAutoScalingGroupsResult><ResponseMetadata><RequestId>r\
                     </RequestId></ResponseMetadata></DescribeAutoScalingGroupsResponse>"
                ),
            )
        }
    }

    impl aws_smithy_runtime_api::client::http::HttpConnector for ListingSpoke {
        fn call(
            &self,
            request: aws_smithy_runtime_api::client::orchestrator::HttpRequest,
        ) -> aws_smithy_runtime_api::client::http::HttpConnectorFuture {
            let (status, body) = self.answer(&request);
            aws_smithy_runtime_api::client::http::HttpConnectorFuture::ready(Ok(
                aws_smithy_runtime_api::client::orchestrator::HttpResponse::new(
                    status.try_into().expect("a valid status"),
                    aws_smithy_types::body::SdkBody::from(body),
                ),
            ))
        }
    }

    impl aws_smithy_runtime_api::client::http::HttpClient for ListingSpoke {
        fn http_connector(
            &self,
            _settings: &aws_smithy_runtime_api::client::http::HttpConnectorSettings,
            _components: &aws_smithy_runtime_api::client::runtime_components::RuntimeComponents,
        ) -> aws_smithy_runtime_api::client::http::SharedHttpConnector {
            aws_smithy_runtime_api::client::http::SharedHttpConnector::new(self.clone())
        }
    }

    /// An adapter whose spoke calls reach `spoke`, with no retry of the SDK's own (a refusal
    /// reaches discovery's), and the AssumeRole rule it assumes its role with.
    fn spokes_listing(spoke: &ListingSpoke) -> (AwsSpokes, aws_smithy_mocks::Rule) {
        let assume = mock!(aws_sdk_sts::Client::assume_role)
            .sequence()
            .output(assumed)
            .times(4)
            .build();
        let sdk = aws_config::SdkConfig::builder()
            .behavior_version(aws_config::BehaviorVersion::latest())
            .region(Region::new("eu-west-1"))
            .http_client(spoke.clone())
            .retry_config(aws_smithy_types::retry::RetryConfig::disabled())
            .build();
        let mut spokes = AwsSpokes::new(sdk, Arc::new(SystemClock));
        spokes.sts = mock_client!(aws_sdk_sts, [&assume]);
        (spokes, assume)
    }

    fn names(targets: &[Target]) -> Vec<&str> {
        targets.iter().map(|t| t.name.as_str()).collect()
    }

    #[tokio::test]
    async fn each_page_of_auto_scaling_groups_is_yielded_before_the_next_is_asked_for() {
        let spoke = ListingSpoke::of(vec![vec!["a", "b"], vec!["c"]]);
        let (spokes, _) = spokes_listing(&spoke);
        let role = spoke_role();

        let mut pages = spokes.discover_pages(&role, "eu-west-1");
        let first = pages.next().await.unwrap().unwrap();
        assert_eq!(names(&first), ["a", "b"]);
        assert_eq!(spoke.asked(), [0], "the second page is not asked for yet");
        let second = pages.next().await.unwrap().unwrap();
        assert_eq!(names(&second), ["c"]);
        assert!(pages.next().await.is_none());
        assert_eq!(spoke.asked(), [0, 1]);
    }

    #[tokio::test]
    async fn discovery_collects_every_page_of_targets_once() {
        let spoke = ListingSpoke::of(vec![vec!["a", "b"], vec!["c", "d"], vec!["e"]]);
        let (spokes, _) = spokes_listing(&spoke);

        let found = spokes.discover(&spoke_role(), "eu-west-1").await.unwrap();

        assert_eq!(names(&found), ["a", "b", "c", "d", "e"]);
        assert_eq!(spoke.asked(), [0, 1, 2]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_throttled_page_of_auto_scaling_groups_is_asked_for_again_alone() {
        let spoke =
            ListingSpoke::of(vec![vec!["a", "b"], vec!["c"]]).refusing_once(1, "Throttling");
        let (spokes, _) = spokes_listing(&spoke);

        let found = spokes.discover(&spoke_role(), "eu-west-1").await.unwrap();

        assert_eq!(names(&found), ["a", "b", "c"]);
        assert_eq!(
            spoke.asked(),
            [0, 1, 1],
            "the first page is not asked for again"
        );
    }

    #[tokio::test]
    async fn a_session_expiring_mid_listing_is_assumed_again_and_the_refused_page_asked_again() {
        let spoke =
            ListingSpoke::of(vec![vec!["a", "b"], vec!["c"]]).refusing_once(1, "ExpiredToken");
        let (spokes, assume) = spokes_listing(&spoke);
        let role = spoke_role();

        let pages: Vec<Vec<Target>> = spokes
            .discover_pages(&role, "eu-west-1")
            .try_collect()
            .await
            .unwrap();

        let pages: Vec<Vec<&str>> = pages.iter().map(|page| names(page)).collect();
        assert_eq!(pages, [vec!["a", "b"], vec!["c"]], "no page comes twice");
        assert_eq!(spoke.asked(), [0, 1, 1]);
        assert_eq!(assume.num_calls(), 2, "a fresh session was assumed");
    }

    #[tokio::test]
    async fn a_page_refused_again_with_a_fresh_session_ends_the_listing_with_the_error() {
        let spoke = ListingSpoke::of(vec![vec!["a"], vec!["b"], vec!["c"]])
            .refusing_once(1, "ExpiredToken")
            .refusing_once(1, "ExpiredToken");
        let (spokes, assume) = spokes_listing(&spoke);
        let role = spoke_role();

        let pages: Vec<PortResult<Vec<Target>>> =
            spokes.discover_pages(&role, "eu-west-1").collect().await;

        assert_eq!(pages.len(), 2, "{pages:?}");
        assert_eq!(names(pages[0].as_ref().unwrap()), ["a"]);
        let refused = pages[1].as_ref().unwrap_err();
        assert_eq!(refused.kind, ErrorKind::ExpiredCredentials, "{refused}");
        assert_eq!(spoke.asked(), [0, 1, 1], "the third page is not asked for");
        assert_eq!(assume.num_calls(), 2);
    }

    #[tokio::test]
    async fn requests_refused_with_the_same_expired_session_make_one_fresh_client() {
        use std::sync::atomic::{AtomicU64, Ordering};
        let made = AtomicU64::new(0);
        let refreshed = AtomicU64::new(0);
        let listing = ListingClient::new(|fresh| {
            if fresh {
                refreshed.fetch_add(1, Ordering::SeqCst);
            }
            let client = made.fetch_add(1, Ordering::SeqCst);
            Box::pin(async move { Ok(client) })
        });
        // The first client's session has expired; the fresh one's has not.
        let describe = |client: u64| async move {
            tokio::task::yield_now().await;
            if client == 0 {
                Err(PortError::new(
                    ErrorKind::ExpiredCredentials,
                    "ExpiredToken",
                ))
            } else {
                Ok(client)
            }
        };

        let answers = futures::future::join_all((0..8).map(|_| listing.request(describe))).await;

        assert!(
            answers.iter().all(|a| a.as_ref().ok() == Some(&1)),
            "{answers:?}"
        );
        assert_eq!(made.load(Ordering::SeqCst), 2);
        assert_eq!(refreshed.load(Ordering::SeqCst), 1);
    }
}
