//! The simulation (issue 9): the real router and worker over the in-memory ports, with every
//! call taking the time its AWS counterpart takes ([`Latency`]), spoke calls made through an STS
//! session cache per Lambda execution environment, paced by per-account-region token buckets
//! and throttled at a set rate if asked ([`SlowSpokes`]), and queues worked the way SQS event
//! source mappings work them, fair-queue receives included ([`event_source`]), on tokio's
//! clock. Run on a paused clock (a `current_thread` runtime with `start_paused`), time is
//! virtual: a 100,000-target wave takes seconds of real time, and its makespan is what it would
//! be with those latencies.
//!
//! `curfew-sim` puts each makespan against its lower bound: the first task's arrival plus the
//! larger of the workers' busy time over the concurrency cap ([`concurrency_bound`]) and the
//! busiest account-region's calls over its rate ([`SlowSpokes::rate_bound`]).

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_autoscaling::config::retry::RetryPartition;
use aws_smithy_async::time::TimeSource;
use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::{HttpRequest, HttpResponse};
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_runtime_api::http::StatusCode;
use aws_smithy_types::body::SdkBody;
use curfew_aws::config::sdk_retry_config;
use curfew_aws::error::{backoff, classify, retrying_with};
use curfew_aws::pacing::{InFlight, Pace};
use curfew_aws::spokes::{eks_describes_in_flight, ASG_PAGE, EKS_DESCRIBE_CEILING};
use curfew_core::clock::Clock;
use curfew_core::fakes::MemoryQueue;
use curfew_core::ports::{PortError, PortResult, Spokes};
use curfew_core::service::BatchOutcome;
use curfew_core::session::{Session, SessionCache};
use curfew_core::target::{Target, TargetKind};
use futures::future::BoxFuture;
use futures::stream::{self, BoxStream, StreamExt, TryStreamExt};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use tokio::time::Instant;

use crate::around::{AroundCall, AroundSpokes, InnerCall};

/// How long each kind of call takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Latency {
    /// A spoke call (Auto Scaling, EKS, through the cached session).
    pub spoke: Duration,
    /// A state-table request (DynamoDB).
    pub state: Duration,
    /// One SendMessageBatch call (SQS).
    pub queue: Duration,
    /// One STS AssumeRole call (a session cache miss).
    pub sts: Duration,
}

impl Default for Latency {
    /// Issue 9's defaults: 50 ms per spoke call, 10 ms per DynamoDB or SQS request; 100 ms per
    /// AssumeRole (our assumption: it signs and issues credentials, a heavier call).
    fn default() -> Self {
        Latency {
            spoke: Duration::from_millis(50),
            state: Duration::from_millis(10),
            queue: Duration::from_millis(10),
            sts: Duration::from_millis(100),
        }
    }
}

/// How long a message a handler left for later stays invisible before it is received again
/// (the task queue's visibility timeout is the worker's; the simulation uses a short one so a
/// retried message does not dominate the makespan it is measuring).
pub const RETRY_AFTER: Duration = Duration::from_secs(30);

/// What a simulated run models: the latencies, the spoke's rate limit and throttling if any,
/// and how the task queue hands out messages.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Simulation {
    /// Per call.
    pub latency: Latency,
    /// Spoke calls per account and region (`None`: unlimited).
    pub spoke_limit: Option<RateLimit>,
    /// The fraction of spoke calls answered with a throttling error (0: none), retried the way
    /// the AWS adapter retries them (see [`SlowSpokes`]).
    pub throttled: f64,
    /// A token bucket of spoke calls per account and region that answers a call finding it
    /// empty with a throttling error, as AWS APIs throttle (`None`: none). Where
    /// [`Self::spoke_limit`] makes a call wait for its token, this one refuses it, and the
    /// caller's retries and pacing decide how fast it goes.
    pub spoke_refusals: Option<RateLimit>,
    /// Receive the task queue as a standard queue without tenants (every message sampled
    /// alike) instead of as the fair queue curfew's task messages make it (their account is
    /// their `MessageGroupId`): the "before" of the fairness measurement.
    pub unfair: bool,
    /// Targets per task message (the router's `chunk_targets`; `None`: its default, 100).
    pub chunk_targets: Option<usize>,
}

/// The router function's timeout in the hub stack (`infra/lib/hub-stack.ts`).
pub const ROUTER_TIMEOUT: Duration = Duration::from_secs(300);

/// The worker function's timeout in the hub stack (`infra/lib/hub-stack.ts`).
pub const WORKER_TIMEOUT: Duration = Duration::from_secs(120);

/// The seed of the receives' sampling.
const SAMPLING_SEED: u64 = 9;

/// The seed of the injected throttling and of curfew's own retry jitter.
const FAULT_SEED: u64 = 17;

/// The seed of the SDK's standard retry jitter (its thread-local `fastrand`), set when a
/// simulated fleet is seeded.
pub const RETRY_JITTER_SEED: u64 = 23;

/// How long an idle poller waits before receiving again (SQS long polling answers as soon as a
/// message arrives; this is the granularity of that wait here).
const POLL: Duration = Duration::from_millis(5);

/// A token bucket of spoke calls per account and region: `burst` calls at once, then `rate`
/// a second. The spoke's throttling, as a client that paces its retries by the bucket sees it:
/// a call waits for its token instead of failing.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RateLimit {
    /// Tokens added per second.
    pub rate: f64,
    /// The bucket's size.
    pub burst: f64,
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// A Lambda execution environment: the function and the poller slot it serves.
pub type Environment = (&'static str, usize);

tokio::task_local! {
    /// The execution environment a handler runs in ([`event_source`] sets it): each keeps its
    /// own STS session cache, as each worker process does in AWS.
    static ENVIRONMENT: Environment;
}

/// The execution environment the calling task runs in (`("outside", 0)` outside a handler):
/// what a process of the hub keeps for its life is kept per environment.
pub fn environment() -> Environment {
    ENVIRONMENT.try_with(|e| *e).unwrap_or(("outside", 0))
}

/// What the spokes saw in a wave: calls, throttles and the STS calls behind them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SpokeTraffic {
    /// AssumeRole calls (session cache misses, one cache per execution environment).
    pub sts_calls: u64,
    /// Those the worker's environments made (the rest: the router's, listing targets live).
    pub worker_sts_calls: u64,
    /// Distinct accounts assumed into.
    pub sts_accounts: usize,
    /// Spoke call attempts answered with a throttling error.
    pub throttled: u64,
    /// Environments' paces of an account and region that fell at least once (see
    /// [`curfew_aws::pacing::Pace`]): where throttling persisted.
    pub paced: usize,
}

/// Spoke calls that each take `latency` before reaching `inner`, paced by a [`RateLimit`] per
/// account and region when one is set, counted per account and region, and made through an
/// STS session cache per execution environment (an AssumeRole per account the first time an
/// environment calls it).
///
/// With [`Simulation::throttled`], that fraction of call attempts is answered with a throttling
/// error (and with [`Simulation::spoke_refusals`], every attempt over the rate), and retried as
/// the AWS adapter retries: a real SDK client makes the attempts
/// ([`curfew_aws::config::sdk_retry_config`], its requests answered by [`SpokeEndpoint`] on the
/// virtual clock) inside curfew's jittered backoff ([`curfew_aws::error::retrying_with`] and
/// [`curfew_aws::error::backoff`], the real ones, that jitter seeded from the run's faults).
pub struct SlowSpokes {
    spoke: Arc<Spoke>,
    clock: Arc<dyn Clock>,
    sessions: Mutex<HashMap<Environment, Arc<SessionCache<()>>>>,
    /// Each environment's SDK client of each account and region (see [`SpokeEndpoint`]).
    clients: Mutex<HashMap<ClientKey, aws_sdk_autoscaling::Client>>,
    /// Each environment's pace of each account and region's calls about targets.
    paces: Mutex<HashMap<ClientKey, Arc<Pace>>>,
    /// This simulation's and its wave's number, in the clients' retry partitions: the SDK
    /// keeps a partition's retry quota for the life of the process, and each
    /// wave's environments are new ones.
    run: u64,
    wave: AtomicUsize,
}

/// The spoke's side of every call: its latency, its rate limits and throttling, and what it
/// saw.
#[derive(Debug)]
struct Spoke {
    latency: Latency,
    limit: Option<RateLimit>,
    throttled: f64,
    refusals: Option<RateLimit>,
    buckets: Mutex<HashMap<(String, String), Bucket>>,
    refusal_buckets: Mutex<HashMap<(String, String), Bucket>>,
    /// Calls the refusing bucket let through, per account and region.
    let_through: Mutex<HashMap<(String, String), u64>>,
    calls: Mutex<HashMap<(String, String), u64>>,
    faults: Mutex<StdRng>,
    traffic: Mutex<(SpokeTraffic, HashSet<String>)>,
}

/// An environment's client of one account and region.
type ClientKey = (Environment, String, String);

/// Simulations made in this process (each numbers its clients' retry partitions).
static RUNS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

impl SlowSpokes {
    /// Spoke calls as `sim` models them, around `inner`'s; `clock` is the hub's (session
    /// expiry).
    pub fn new(
        inner: Arc<dyn Spokes>,
        sim: &Simulation,
        clock: Arc<dyn Clock>,
    ) -> AroundSpokes<SlowSpokes> {
        let slow = SlowSpokes {
            spoke: Arc::new(Spoke {
                latency: sim.latency,
                limit: sim.spoke_limit,
                throttled: sim.throttled,
                refusals: sim.spoke_refusals,
                buckets: Mutex::new(HashMap::new()),
                refusal_buckets: Mutex::new(HashMap::new()),
                let_through: Mutex::new(HashMap::new()),
                calls: Mutex::new(HashMap::new()),
                faults: Mutex::new(StdRng::seed_from_u64(FAULT_SEED)),
                traffic: Mutex::new((SpokeTraffic::default(), HashSet::new())),
            }),
            clock,
            sessions: Mutex::new(HashMap::new()),
            clients: Mutex::new(HashMap::new()),
            paces: Mutex::new(HashMap::new()),
            run: RUNS.fetch_add(1, Ordering::Relaxed),
            wave: AtomicUsize::new(0),
        };
        AroundSpokes::new(inner, slow)
    }

    /// The calling environment's session for `account`, assumed if it has none.
    async fn session(&self, account: &str) {
        let environment = environment();
        let cache = self
            .sessions
            .lock()
            .expect("not poisoned")
            .entry(environment)
            .or_insert_with(|| {
                Arc::new(SessionCache::new(
                    self.clock.clone(),
                    chrono::Duration::minutes(5),
                ))
            })
            .clone();
        let assumed = cache
            .get_or_assume(account, || async {
                {
                    let mut traffic = self.spoke.traffic.lock().expect("not poisoned");
                    traffic.0.sts_calls += 1;
                    traffic.0.worker_sts_calls += u64::from(environment.0 == "worker");
                    traffic.1.insert(account.to_string());
                }
                tokio::time::sleep(self.spoke.latency.sts).await;
                Ok::<_, std::convert::Infallible>(Session {
                    value: (),
                    expires_at: self.clock.now() + chrono::Duration::hours(1),
                })
            })
            .await;
        let Ok(()) = assumed;
    }

    /// One call as the AWS adapter makes it: through an SDK client of the calling environment
    /// that retries as the adapter's do ([`sdk_retry_config`]), in a retry partition of its own
    /// per account and region (the adapter's are per service too), its requests answered by the
    /// simulated spoke ([`SpokeEndpoint`]); `call` once the spoke answered. The SDK's attempts,
    /// backoff and retry quota are the real ones.
    async fn sdk_call<'a, T>(
        &'a self,
        account: &'a str,
        region: &'a str,
        call: &'a InnerCall<'a, T>,
    ) -> PortResult<T> {
        self.client(account, region)
            .describe_account_limits()
            .send()
            .await
            .map_err(|e| classify("calling the simulated spoke", e))?;
        call().await
    }

    /// The calling environment's client of `account` and `region`.
    fn client(&self, account: &str, region: &str) -> aws_sdk_autoscaling::Client {
        let environment = environment();
        let key = (environment, account.to_string(), region.to_string());
        let wave = self.wave.load(Ordering::Relaxed);
        self.clients
            .lock()
            .expect("not poisoned")
            .entry(key)
            .or_insert_with(|| {
                let endpoint = SpokeEndpoint {
                    spoke: self.spoke.clone(),
                    account: account.to_string(),
                    region: region.to_string(),
                };
                let partition = format!(
                    "sim{}-{wave}-{}{}-{account}-{region}",
                    self.run, environment.0, environment.1
                );
                let conf = aws_sdk_autoscaling::Config::builder()
                    .behavior_version(aws_sdk_autoscaling::config::BehaviorVersion::latest())
                    .region(aws_sdk_autoscaling::config::Region::new(region.to_string()))
                    .credentials_provider(aws_sdk_autoscaling::config::Credentials::new(
                        "simulated",
                        "simulated",
                        None,
                        None,
                        "simulation",
                    ))
                    .http_client(endpoint)
                    .time_source(VirtualTime::new())
                    .retry_config(sdk_retry_config())
                    .retry_partition(RetryPartition::new(partition))
                    .stalled_stream_protection(
                        aws_sdk_autoscaling::config::StalledStreamProtectionConfig::disabled(),
                    )
                    .build();
                aws_sdk_autoscaling::Client::from_conf(conf)
            })
            .clone()
    }

    /// Forgets the calls counted so far and the environments' sessions (a new wave: the next
    /// one comes hours later, after the credentials and the environments have expired).
    pub fn reset_counts(&self) {
        self.spoke.calls.lock().expect("not poisoned").clear();
        self.clients.lock().expect("not poisoned").clear();
        self.paces.lock().expect("not poisoned").clear();
        self.wave.fetch_add(1, Ordering::Relaxed);
        self.spoke.let_through.lock().expect("not poisoned").clear();
        self.sessions.lock().expect("not poisoned").clear();
        *self.spoke.traffic.lock().expect("not poisoned") =
            (SpokeTraffic::default(), HashSet::new());
    }

    /// What the spokes saw since the last reset.
    pub fn traffic(&self) -> SpokeTraffic {
        let paced = self
            .paces
            .lock()
            .expect("not poisoned")
            .values()
            .filter(|pace| pace.falls() > 0)
            .count();
        let traffic = self.spoke.traffic.lock().expect("not poisoned");
        SpokeTraffic {
            sts_accounts: traffic.1.len(),
            paced,
            ..traffic.0.clone()
        }
    }

    /// The lower bound the rate limits put on the calls counted since the last reset: the
    /// busiest account and region cannot make its calls faster than its bucket allows
    /// (`(calls - burst) / rate`), counting every call against a bucket calls wait on and the
    /// calls let through against one that refuses. Zero without a limit.
    pub fn rate_bound(&self) -> Duration {
        let bound = |calls: &Mutex<HashMap<(String, String), u64>>, limit: RateLimit| {
            let busiest = calls
                .lock()
                .expect("not poisoned")
                .values()
                .copied()
                .max()
                .unwrap_or(0) as f64;
            Duration::from_secs_f64(((busiest - limit.burst).max(0.0)) / limit.rate)
        };
        let waited = self.spoke.limit.map(|l| bound(&self.spoke.calls, l));
        let refused = self
            .spoke
            .refusals
            .map(|l| bound(&self.spoke.let_through, l));
        waited.max(refused).unwrap_or(Duration::ZERO)
    }

    /// One spoke request that returns nothing: its time, its token and its throttling.
    /// Each attempt waits for its place among `in_flight`'s, if given, as the adapter's
    /// describe requests do.
    /// One request of a listing: at its turn of the environment's pace of the account-region,
    /// as the adapter's listing requests are (the pace its calls about targets follow).
    async fn request(
        &self,
        account: &str,
        region: &str,
        in_flight: Option<&InFlight>,
    ) -> PortResult<()> {
        let nothing = || -> BoxFuture<'_, PortResult<()>> { Box::pin(async { Ok(()) }) };
        let pace = self.pace(account, region);
        self.paced(account, region, &nothing, in_flight, Some(pace))
            .await
    }

    /// `n` requests one after the other.
    async fn requests(
        &self,
        account: &str,
        region: &str,
        n: usize,
        in_flight: Option<&InFlight>,
    ) -> PortResult<()> {
        for _ in 0..n {
            self.request(account, region, in_flight).await?;
        }
        Ok(())
    }

    /// A spoke call through the environment's session, retried as the adapter retries; each
    /// attempt at its turn of `pace`, if given (as the adapter's calls about a target), and
    /// in its place among `in_flight`'s, if given (as its describe requests).
    async fn paced<'a, T: Send + 'a>(
        &'a self,
        account: &'a str,
        region: &'a str,
        call: &'a InnerCall<'a, T>,
        in_flight: Option<&'a InFlight>,
        pace: Option<Arc<Pace>>,
    ) -> PortResult<T> {
        self.session(account).await;
        // curfew's own backoff, as the adapter builds it, with its jitter drawn from the
        // run's seeded faults so a throttled run repeats exactly.
        let seed = self
            .spoke
            .faults
            .lock()
            .expect("not poisoned")
            .random::<u64>();
        let pace = pace.as_deref();
        retrying_with(backoff().with_jitter_seed(seed), || async move {
            // A place in flight first, then the pace's turn: the adapter's order (`Describes`).
            let send = || async move {
                match pace {
                    Some(pace) => pace.request(|| self.sdk_call(account, region, call)).await,
                    None => self.sdk_call(account, region, call).await,
                }
            };
            match in_flight {
                Some(places) => places.request(send).await,
                None => send().await,
            }
        })
        .await
    }

    /// The calling environment's pace of `account` and `region` (the adapter keeps one per
    /// process, service, account and region).
    fn pace(&self, account: &str, region: &str) -> Arc<Pace> {
        let environment = environment();
        self.paces
            .lock()
            .expect("not poisoned")
            .entry((environment, account.to_string(), region.to_string()))
            .or_default()
            .clone()
    }
}

/// A spoke call through the environment's session, retried as the adapter retries.
#[async_trait]
impl AroundCall for SlowSpokes {
    /// The discovery's requests beyond the one its call took (the first ASG page), made the
    /// way the adapter makes them ([`SlowSpokes::discovered_pages`]).
    async fn discovered(&self, account: &str, region: &str, found: &[Target]) -> PortResult<()> {
        self.discovered_pages(account, region, found.to_vec())
            .try_collect::<Vec<_>>()
            .await?;
        Ok(())
    }

    /// The listing streamed as the adapter streams it (see [`DiscoveryRequests`] for its
    /// requests): DescribeAutoScalingGroups one page after the other (the first came with the
    /// call), each page yielded when it is read; alongside, ListClusters page after page, then
    /// every cluster's DescribeCluster and ListNodegroups pages, then the DescribeNodegroup
    /// requests, all under one pacer of requests in flight, each node group yielded once
    /// described.
    fn discovered_pages<'a>(
        &'a self,
        account: &'a str,
        region: &'a str,
        found: Vec<Target>,
    ) -> BoxStream<'a, PortResult<Vec<Target>>> {
        let (asgs, nodegroups): (Vec<Target>, Vec<Target>) =
            found.into_iter().partition(|t| t.kind == TargetKind::Asg);
        let asg_pages: Vec<Vec<Target>> = if asgs.is_empty() {
            vec![Vec::new()]
        } else {
            asgs.chunks(ASG_PAGE as usize)
                .map(<[Target]>::to_vec)
                .collect()
        };
        let asgs =
            stream::iter(asg_pages.into_iter().enumerate()).then(move |(i, page)| async move {
                if i > 0 {
                    self.request(account, region, None).await?;
                }
                Ok(page)
            });
        let mut clusters: Vec<Vec<Target>> = Vec::new();
        let mut place: HashMap<String, usize> = HashMap::new();
        for nodegroup in nodegroups {
            let cluster = nodegroup.cluster.clone().unwrap_or_default();
            let at = *place.entry(cluster).or_insert_with(|| {
                clusters.push(Vec::new());
                clusters.len() - 1
            });
            clusters[at].push(nodegroup);
        }
        let cluster_pages = clusters.len().div_ceil(100).max(1);
        let in_flight = Arc::new(eks_describes_in_flight());
        // Each cluster described, listed and its node groups described in one future, as the
        // adapter does (a shared buffer of describes would stop polling clusters that hold
        // places in flight).
        let listing: Vec<_> = clusters
            .into_iter()
            .map(|nodegroups| {
                let in_flight = in_flight.clone();
                async move {
                    let pages = nodegroups.len().div_ceil(100).max(1);
                    self.requests(account, region, 1 + pages, Some(&in_flight))
                        .await?;
                    Ok::<_, PortError>(nodegroups)
                }
            })
            .collect();
        let eks = stream::once(async move {
            self.requests(account, region, cluster_pages, None).await?;
            let listed: Vec<Vec<Target>> = stream::iter(listing)
                .buffered(EKS_DESCRIBE_CEILING)
                .try_collect()
                .await?;
            let describes: Vec<_> = listed
                .into_iter()
                .flatten()
                .map(|nodegroup| {
                    let in_flight = in_flight.clone();
                    async move {
                        self.request(account, region, Some(&in_flight)).await?;
                        Ok::<_, PortError>(vec![nodegroup])
                    }
                })
                .collect();
            Ok::<_, PortError>(stream::iter(describes).buffered(EKS_DESCRIBE_CEILING))
        })
        .try_flatten();
        Box::pin(stream::select(asgs, eks))
    }

    async fn around<'a, T: Send + 'a>(
        &'a self,
        account: &'a str,
        region: &'a str,
        call: &'a InnerCall<'a, T>,
    ) -> PortResult<T> {
        let pace = self.pace(account, region);
        self.paced(account, region, call, None, Some(pace)).await
    }
}

impl Spoke {
    async fn wait(&self, account: &str, region: &str) {
        let shard = (account.to_string(), region.to_string());
        *self
            .calls
            .lock()
            .expect("not poisoned")
            .entry(shard.clone())
            .or_default() += 1;
        if let Some(limit) = self.limit {
            // Each call takes a token, going into debt when none is left: a call's wait is the
            // time the bucket needs to pay its debt back, so calls are served in turn at the
            // bucket's rate with one sleep each.
            let wait = {
                let now = Instant::now();
                let mut buckets = self.buckets.lock().expect("not poisoned");
                let bucket = buckets.entry(shard).or_insert(Bucket {
                    tokens: limit.burst,
                    at: now,
                });
                let refill = (now - bucket.at).as_secs_f64() * limit.rate;
                bucket.tokens = (bucket.tokens + refill).min(limit.burst) - 1.0;
                bucket.at = now;
                (-bucket.tokens).max(0.0) / limit.rate
            };
            if wait > 0.0 {
                tokio::time::sleep(Duration::from_secs_f64(wait)).await;
            }
        }
        tokio::time::sleep(self.latency.spoke).await;
    }

    /// Whether the spoke refuses an attempt arriving now ([`Simulation::spoke_refusals`]): it
    /// takes a token if one is left, and is refused if none is.
    fn refused(&self, account: &str, region: &str) -> bool {
        let Some(limit) = self.refusals else {
            return false;
        };
        let now = Instant::now();
        let mut buckets = self.refusal_buckets.lock().expect("not poisoned");
        let bucket = buckets
            .entry((account.to_string(), region.to_string()))
            .or_insert(Bucket {
                tokens: limit.burst,
                at: now,
            });
        bucket.tokens =
            (bucket.tokens + (now - bucket.at).as_secs_f64() * limit.rate).min(limit.burst);
        bucket.at = now;
        if bucket.tokens < 1.0 {
            return true;
        }
        bucket.tokens -= 1.0;
        *self
            .let_through
            .lock()
            .expect("not poisoned")
            .entry((account.to_string(), region.to_string()))
            .or_default() += 1;
        false
    }

    /// Whether this attempt is one of the injected throttles ([`Simulation::throttled`]).
    fn injected_throttle(&self) -> bool {
        self.throttled > 0.0
            && self.faults.lock().expect("not poisoned").random::<f64>() < self.throttled
    }
}

/// The spoke as an SDK client reaches it: each request takes its token and its latency, then
/// is answered, with a throttling error (`Throttling`, as Auto Scaling answers) when it is one
/// of the injected throttles or the spoke refuses it, else with an empty result. No request
/// leaves the process.
#[derive(Clone, Debug)]
struct SpokeEndpoint {
    spoke: Arc<Spoke>,
    account: String,
    region: String,
}

impl HttpConnector for SpokeEndpoint {
    fn call(&self, _request: HttpRequest) -> HttpConnectorFuture {
        let this = self.clone();
        HttpConnectorFuture::new(async move {
            this.spoke.wait(&this.account, &this.region).await;
            let throttled =
                this.spoke.injected_throttle() || this.spoke.refused(&this.account, &this.region);
            let (status, body) = if throttled {
                this.spoke.traffic.lock().expect("not poisoned").0.throttled += 1;
                (
                    400,
                    "<ErrorResponse><Error><Type>Sender</Type><Code>Throttling</Code>\
                     <Message>Rate exceeded</Message></Error><RequestId>sim</RequestId>\
                     </ErrorResponse>",
                )
            } else {
                (
                    200,
                    "<DescribeAccountLimitsResponse><DescribeAccountLimitsResult>\
                     </DescribeAccountLimitsResult><ResponseMetadata><RequestId>sim</RequestId>\
                     </ResponseMetadata></DescribeAccountLimitsResponse>",
                )
            };
            let status = StatusCode::try_from(status).expect("a valid status");
            Ok(HttpResponse::new(status, SdkBody::from(body)))
        })
    }
}

impl HttpClient for SpokeEndpoint {
    fn http_connector(
        &self,
        _settings: &HttpConnectorSettings,
        _components: &RuntimeComponents,
    ) -> SharedHttpConnector {
        SharedHttpConnector::new(self.clone())
    }
}

/// The SDK's clock on tokio's: on a paused clock the SDK's retry timing runs in virtual time
/// with everything else.
#[derive(Debug)]
struct VirtualTime {
    at_start: std::time::SystemTime,
    start: Instant,
}

impl VirtualTime {
    fn new() -> Self {
        VirtualTime {
            at_start: std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000),
            start: Instant::now(),
        }
    }
}

impl TimeSource for VirtualTime {
    fn now(&self) -> std::time::SystemTime {
        self.at_start + self.start.elapsed()
    }
}

/// The spoke requests the AWS adapter (`curfew_aws::spokes`) makes to discover one account and
/// region that holds `found`: DescribeAutoScalingGroups pages of [`ASG_PAGE`] one after the
/// other; beside them, ListClusters pages of 100, then each cluster's DescribeCluster and
/// ListNodegroups pages (100 node groups a page), then one DescribeNodegroup per node group,
/// as many in flight as [`eks_describes_in_flight`] allows (the simulation makes a cluster's
/// pages one request each, where the adapter holds one place for them all; clusters of over
/// 100 node groups are past EKS's default quota of 30). Clusters without node groups are not in
/// `found`, and are not counted.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DiscoveryRequests {
    /// DescribeAutoScalingGroups pages (at least one).
    pub asg_pages: usize,
    /// ListClusters pages (at least one).
    pub cluster_pages: usize,
    /// ListNodegroups pages of each cluster.
    pub nodegroup_pages: Vec<usize>,
    /// DescribeNodegroup requests.
    pub nodegroups: usize,
}

impl DiscoveryRequests {
    /// The requests that list `found`.
    pub fn of(found: &[Target]) -> DiscoveryRequests {
        let pages = |n: usize, per: usize| n.div_ceil(per).max(1);
        let asgs = found.iter().filter(|t| t.kind == TargetKind::Asg).count();
        let mut clusters: HashMap<&str, usize> = HashMap::new();
        for target in found.iter().filter(|t| t.kind == TargetKind::Nodegroup) {
            *clusters
                .entry(target.cluster.as_deref().unwrap_or_default())
                .or_default() += 1;
        }
        DiscoveryRequests {
            asg_pages: pages(asgs, ASG_PAGE as usize),
            cluster_pages: pages(clusters.len(), 100),
            nodegroup_pages: clusters.values().map(|&n| pages(n, 100)).collect(),
            nodegroups: clusters.values().sum(),
        }
    }

    /// Every request.
    pub fn total(&self) -> usize {
        self.asg_pages
            + self.cluster_pages
            + self.nodegroup_pages.iter().map(|p| 1 + p).sum::<usize>()
            + self.nodegroups
    }
}

/// What working a queue as an event source mapping took.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Sourced {
    /// Handler invocations (receives of up to a batch of messages).
    pub invocations: usize,
    /// The sum of every invocation's duration: the work the pollers shared.
    pub busy: Duration,
    /// The longest invocation (what a function timeout must cover).
    pub longest: Duration,
    /// Invocations longer than the function's timeout ([`Source::timeout`]): Lambda would have
    /// stopped each, and its messages would have come back after their visibility timeout. The
    /// simulation lets them run on, so this counts what would not have fitted.
    pub over_timeout: usize,
    /// When the first message was received, from the start of the source.
    pub first_receive: Option<Duration>,
    /// Causes of messages rejected as unfixable (they would go to the DLQ).
    pub rejected: Vec<String>,
    /// Messages the handler finished (not reported failed): the event source mapping deletes
    /// them from the queue.
    pub deleted: usize,
    /// Invocations that finished at least one message: the event source mapping deletes a
    /// batch's finished messages with one DeleteMessageBatch call.
    pub delete_batches: usize,
}

/// How an event source mapping works a queue.
#[derive(Clone, Copy, Debug)]
pub struct Source<'a> {
    /// The function it invokes (each poller slot is one of its execution environments).
    pub lambda: &'static str,
    /// Its maximum concurrency.
    pub concurrency: usize,
    /// Messages one invocation receives at most (the mapping's batch size: ten for the
    /// router, one chunk for the worker).
    pub batch: usize,
    /// Receive as a fair queue (see [`Backlog`]).
    pub fair: bool,
    /// The function's timeout (the hub stack's: [`ROUTER_TIMEOUT`], [`WORKER_TIMEOUT`]).
    pub timeout: Duration,
    /// Set once nothing more will be sent to the queue (`None`: everything is already there).
    /// Until then an empty queue only means the producer has not sent the rest yet.
    pub upstream_done: Option<&'a AtomicBool>,
}

/// A queued message: its tenant (if it was sent as one) and its body.
type Message = (Option<String>, String);

/// A tenant holding this many messages in flight, and more than a tenth of all of them, is a
/// noisy neighbour (AWS's documented thresholds for fair queues' concurrency share).
const NOISY_IN_FLIGHT: usize = 30;

/// The messages a queue holds, received the way SQS receives them: a standard queue samples
/// its messages (seeded, so a run is repeatable); a fair one
/// (<https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/sqs-fair-queues.html>)
/// also favours quiet tenants whenever a noisy one (more than a tenth of the messages in flight
/// and at least [`NOISY_IN_FLIGHT`] of them) holds messages back. Only the concurrency share is
/// modelled, not the processing-time share; when only noisy tenants are left, they are sampled
/// alike. A message without a tenant is its own tenant, never noisy.
struct Backlog {
    queued: Vec<Message>,
    queued_by_tenant: HashMap<String, usize>,
    in_flight: HashMap<String, usize>,
    total_in_flight: usize,
    sampler: StdRng,
}

impl Backlog {
    fn new() -> Self {
        Backlog {
            queued: Vec::new(),
            queued_by_tenant: HashMap::new(),
            in_flight: HashMap::new(),
            total_in_flight: 0,
            sampler: StdRng::seed_from_u64(SAMPLING_SEED),
        }
    }

    fn add(&mut self, messages: Vec<Message>) {
        for (tenant, body) in messages {
            if let Some(t) = &tenant {
                *self.queued_by_tenant.entry(t.clone()).or_default() += 1;
            }
            self.queued.push((tenant, body));
        }
    }

    fn is_idle(&self) -> bool {
        self.queued.is_empty() && self.total_in_flight == 0
    }

    /// Up to `n` messages, now in flight.
    fn receive(&mut self, n: usize, fair: bool) -> Vec<Message> {
        let noisy: HashSet<String> = if fair {
            self.in_flight
                .iter()
                .filter(|(_, &k)| k >= NOISY_IN_FLIGHT && k * 10 > self.total_in_flight)
                .map(|(t, _)| t.clone())
                .collect()
        } else {
            HashSet::new()
        };
        let is_noisy = |m: &Message| m.0.as_ref().is_some_and(|t| noisy.contains(t));
        let mut quiet = self.queued.len()
            - noisy
                .iter()
                .map(|t| self.queued_by_tenant.get(t).copied().unwrap_or(0))
                .sum::<usize>();
        let mut taken = Vec::new();
        while taken.len() < n && !self.queued.is_empty() {
            let mut i = self.sampler.random_range(0..self.queued.len());
            if quiet > 0 && is_noisy(&self.queued[i]) {
                // Rejection sampling keeps the pick uniform over the quiet tenants' messages;
                // a scan finds one when they are too rare for it.
                i = (0..64)
                    .map(|_| self.sampler.random_range(0..self.queued.len()))
                    .find(|&j| !is_noisy(&self.queued[j]))
                    .or_else(|| self.queued.iter().position(|m| !is_noisy(m)))
                    .expect("a quiet message is queued");
            }
            let message = self.queued.swap_remove(i);
            if !is_noisy(&message) {
                quiet -= 1;
            }
            if let Some(t) = &message.0 {
                *self
                    .queued_by_tenant
                    .get_mut(t)
                    .expect("counted when queued") -= 1;
                *self.in_flight.entry(t.clone()).or_default() += 1;
            }
            self.total_in_flight += 1;
            taken.push(message);
        }
        taken
    }

    /// `tenants`' messages are no longer in flight (deleted, or back to wait for a retry).
    fn settle(&mut self, tenants: &[Option<String>]) {
        for tenant in tenants {
            if let Some(t) = tenant {
                let k = self.in_flight.get_mut(t).expect("in flight");
                *k -= 1;
                if *k == 0 {
                    self.in_flight.remove(t);
                }
            }
            self.total_in_flight -= 1;
        }
    }
}

/// Works `queue` the way an SQS event source mapping does: `source.concurrency` pollers (each
/// one execution environment of `source.lambda`), each receiving up to `source.batch` messages
/// whenever it is free and handing them to `handler`; failed messages come back after [`RETRY_AFTER`],
/// rejected ones are dropped (reported). Returns once nothing more will be sent, the queue is
/// empty, nothing is in flight and nothing waits to come back.
pub async fn event_source<F, Fut>(queue: &MemoryQueue, source: Source<'_>, handler: F) -> Sourced
where
    F: Fn(Vec<(String, String)>) -> Fut,
    Fut: std::future::Future<Output = (Vec<(String, String)>, BatchOutcome)>,
{
    let backlog = Mutex::new(Backlog::new());
    let delayed: Mutex<VecDeque<(Instant, Vec<Message>)>> = Mutex::new(VecDeque::new());
    let sourced = Mutex::new(Sourced::default());
    let received = AtomicUsize::new(0);
    let began = Instant::now();
    let poller = |slot: usize| {
        let (backlog, delayed, sourced, received, handler) =
            (&backlog, &delayed, &sourced, &received, &handler);
        async move {
            loop {
                // Read before looking at the queue: a producer that finishes after this read
                // has sent everything by then, so the next round sees it.
                let upstream_done = source
                    .upstream_done
                    .is_none_or(|done| done.load(Ordering::SeqCst));
                let now = Instant::now();
                let batch = {
                    let mut backlog = backlog.lock().expect("not poisoned");
                    backlog.add(queue.take_all_with_tenants());
                    let mut waiting = delayed.lock().expect("not poisoned");
                    while waiting.front().is_some_and(|(at, _)| *at <= now) {
                        backlog.add(waiting.pop_front().expect("checked").1);
                    }
                    let batch = backlog.receive(source.batch, source.fair);
                    if batch.is_empty() && backlog.is_idle() && waiting.is_empty() && upstream_done
                    {
                        return;
                    }
                    batch
                };
                if batch.is_empty() {
                    tokio::time::sleep(POLL).await;
                    continue;
                }
                let n = received.fetch_add(1, Ordering::SeqCst);
                let tenants: Vec<Option<String>> = batch.iter().map(|(t, _)| t.clone()).collect();
                let messages: Vec<(String, String)> = batch
                    .into_iter()
                    .enumerate()
                    .map(|(i, (_, body))| (format!("{n}-{i}"), body))
                    .collect();
                let started = Instant::now();
                let (messages, outcome) = ENVIRONMENT
                    .scope((source.lambda, slot), handler(messages))
                    .await;
                let took = started.elapsed();
                let deleted = messages
                    .iter()
                    .filter(|(id, _)| !outcome.failed.contains(id))
                    .count();
                let retry: Vec<Message> = messages
                    .into_iter()
                    .zip(&tenants)
                    .filter(|((id, _), _)| {
                        outcome.failed.contains(id)
                            && !outcome.rejected.iter().any(|(r, _)| r == id)
                    })
                    .map(|((_, body), tenant)| (tenant.clone(), body))
                    .collect();
                backlog.lock().expect("not poisoned").settle(&tenants);
                if !retry.is_empty() {
                    delayed
                        .lock()
                        .expect("not poisoned")
                        .push_back((Instant::now() + RETRY_AFTER, retry));
                }
                let mut s = sourced.lock().expect("not poisoned");
                s.invocations += 1;
                s.busy += took;
                s.longest = s.longest.max(took);
                s.over_timeout += usize::from(took > source.timeout);
                s.first_receive = Some(
                    s.first_receive
                        .unwrap_or(started - began)
                        .min(started - began),
                );
                s.deleted += deleted;
                s.delete_batches += usize::from(deleted > 0);
                s.rejected
                    .extend(outcome.rejected.into_iter().map(|(_, cause)| cause));
            }
        }
    };
    futures::future::join_all((0..source.concurrency.max(1)).map(poller)).await;
    sourced.into_inner().expect("not poisoned")
}

/// The makespan of work that kept `concurrency` pollers `busy` in total cannot be shorter than
/// `busy / concurrency`; the ratio of a makespan to this bound says how much of the pool sat
/// idle (1.0: none).
pub fn concurrency_bound(busy: Duration, concurrency: usize) -> Duration {
    busy / concurrency.max(1) as u32
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use curfew_aws::spokes::EKS_DESCRIBE_CONCURRENCY;
    use curfew_core::account::SpokeRole;
    use curfew_core::clock::ManualClock;
    use curfew_core::fakes::FakeSpokes;
    use curfew_core::ports::Spokes;

    use super::*;
    use crate::scale::{awake_sizes, seeded_target};

    /// `n` targets of one account and region as the fleets seed them: seven ASGs in ten, node
    /// groups three to a cluster.
    fn account_region(n: usize) -> Vec<Target> {
        (0..n)
            .map(|i| seeded_target("111111111111", "eu-west-1", i))
            .collect()
    }

    #[test]
    fn a_listing_is_counted_in_the_pages_and_describes_the_adapter_asks_for() {
        let requests = DiscoveryRequests::of(&account_region(1_000));
        // 700 ASGs in pages of 100; 300 node groups in 100 clusters of three.
        assert_eq!(requests.asg_pages, 7);
        assert_eq!(requests.cluster_pages, 1);
        assert_eq!(requests.nodegroup_pages, vec![1; 100]);
        assert_eq!(requests.nodegroups, 300);
        assert_eq!(requests.total(), 7 + 1 + 200 + 300);
        // An empty account and region still asks once for each kind.
        assert_eq!(DiscoveryRequests::of(&[]).total(), 2);
    }

    /// One after the other, the listing's 5,000-odd spoke requests would take 250 s at 50 ms
    /// each, past the worker's 120 s timeout. Made the way the adapter makes them, it takes
    /// what its longest chain of requests takes.
    /// Lists live, under `sim`, an account and region at EKS's default quotas: 3,000 node
    /// groups (here 1,000 clusters of three) with 7,000 ASGs beside them. Returns what was
    /// listed, the virtual time it took and the spokes' traffic.
    async fn list_large_account_region(sim: &Simulation) -> (Vec<Target>, Duration, SpokeTraffic) {
        let spokes = Arc::new(FakeSpokes::new());
        let found = account_region(10_000);
        for (i, target) in found.iter().enumerate() {
            spokes.add(target.clone(), awake_sizes(target.kind, i));
        }
        let clock = Arc::new(ManualClock::new(
            chrono::TimeZone::with_ymd_and_hms(&chrono::Utc, 2027, 1, 4, 18, 0, 0).unwrap(),
        ));
        let slow = SlowSpokes::new(spokes, sim, clock);
        let role = SpokeRole {
            account: "111111111111".into(),
            role_arn: "arn:aws:iam::111111111111:role/curfew-spoke".into(),
            external_id: None,
        };

        let started = Instant::now();
        let listed = slow.discover(&role, "eu-west-1").await.unwrap();
        let took = started.elapsed();

        assert_eq!(listed.len(), found.len());
        (found, took, slow.around().traffic())
    }

    #[tokio::test(start_paused = true)]
    async fn listing_a_large_account_region_live_fits_well_inside_the_workers_timeout() {
        let (found, took, _) = list_large_account_region(&Simulation::default()).await;
        let requests = DiscoveryRequests::of(&found);
        let spoke = Latency::default().spoke;
        // EKS's chain: the cluster pages, then rounds of clusters, then of node groups, `at`
        // requests in flight.
        let eks_chain = |at: usize| {
            let rounds = |n: usize| n.div_ceil(at) as u32;
            spoke
                * (requests.cluster_pages as u32
                    + 2 * rounds(requests.nodegroup_pages.len())
                    + rounds(requests.nodegroups))
        };
        let (fastest, first_limit) = (
            eks_chain(EKS_DESCRIBE_CEILING),
            eks_chain(EKS_DESCRIBE_CONCURRENCY),
        );
        assert!(took >= fastest, "{took:?} < {fastest:?}");
        // The limit grew while EKS answered: faster than at the first limit throughout.
        assert!(took < first_limit, "{took:?} >= {first_limit:?}");
        assert!(took < Duration::from_secs(30), "{took:?}");
        assert!(spoke * requests.total() as u32 > Duration::from_secs(120));
    }

    /// The spoke refuses what it gets over 100 requests a second (a bucket of 100) with a
    /// throttling error, as AWS APIs do. At 50 ms a request, 5 in flight reach that rate. The
    /// listing completes at the rate whatever it keeps in flight, but a fixed number spends the
    /// account's API on refusals it shares with the owner's own tools: measured with the
    /// constants pinned, 2,571 of 5,080 requests' attempts throttled at a fixed 16 and 9,127
    /// at a fixed 64, where the pacing draws 972 (and the same 50.4 s).
    #[tokio::test(start_paused = true)]
    async fn a_listing_the_spoke_throttles_slows_to_the_spokes_rate_and_completes() {
        let (rate, burst) = (100.0, 100.0);
        let sim = Simulation {
            spoke_refusals: Some(RateLimit { rate, burst }),
            ..Simulation::default()
        };
        let (found, took, traffic) = list_large_account_region(&sim).await;

        let requests = DiscoveryRequests::of(&found).total() as f64;
        let at_rate = Duration::from_secs_f64((requests - burst) / rate);
        assert!(took >= at_rate, "{took:?} < {at_rate:?}");
        assert!(
            took < at_rate.mul_f64(1.5),
            "{took:?}: {at_rate:?} at the rate"
        );
        assert!(
            (traffic.throttled as f64) < requests * 0.25,
            "{} of {requests} requests throttled",
            traffic.throttled
        );
    }
}
