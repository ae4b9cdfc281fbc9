//! The three handlers' logic, over ports: the poller's tick, the router's fan-out and the
//! worker's per-target step. The Lambda mains and the CLI's local dispatcher call these, so
//! production and local mode run the same code.

pub mod dlq;
mod drift;
pub mod endings;
mod hold;
pub mod invocation;
mod notify;
pub mod poller;
pub mod router;
pub mod worker;

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use futures::StreamExt;
use tracing::Instrument;

use chrono::Duration;

use crate::chunk::{AccountPlan, TaskBody, TaskChunk};
use crate::clock::Clock;
use crate::cluster::ClusterApi;
use crate::operation::{TaskMessage, TaskStatus};
use crate::ports::{ErrorKind, Queue, Spokes, StateStore};
use crate::trail::AuditSigner;
use worker::TaskStep;

/// Receives of a task message before SQS moves it to the dead-letter queue, unless configured
/// otherwise (the hub stack's and local mode's `maxReceiveCount`).
pub const DEFAULT_MAX_RECEIVES: u32 = 5;

/// Tunables, read from the environment by the Lambda mains.
#[derive(Clone, Debug)]
pub struct Settings {
    /// How far back the poller fires missed schedule times (older ones are skipped, logged).
    pub catchup: Duration,
    /// How long a worker's lease on a target lasts if it is never released (a crash).
    pub lease_ttl: Duration,
    /// Accounts discovered at once by one router invocation.
    pub discovery_concurrency: usize,
    /// How old a cached inventory may be before a cached-discovery operation lists the
    /// account and region live again (so new groups are found without asking).
    pub inventory_ttl: Duration,
    /// The task queue's `maxReceiveCount`: on a message's receive number `task_max_receives`
    /// the worker gives up a task it would otherwise leave for a retry (DEAD_LETTERED), since
    /// SQS moves the message to the dead-letter queue instead of delivering it again.
    pub task_max_receives: u32,
    /// How often the poller checks the targets curfew holds asleep for drift (one drift-check
    /// operation per interval); zero: never.
    pub drift_interval: Duration,
    /// How often the poller starts a pass of each enforced window schedule in its asleep
    /// time; zero: never.
    pub enforce_interval: Duration,
    /// Who the audit trail names as the actor of the handlers' changes, and the key that signs
    /// its chain heads.
    pub audit: AuditSigner,
    /// How long a task may wait on a node group that stays UPDATING before a `stuck_updating`
    /// notice tells a person; zero: never.
    pub stuck_updating: Duration,
    /// Targets the router puts in one task message at most (1 to
    /// [`crate::chunk::MAX_CHUNK_TARGETS`]): fewer spreads an account over more worker
    /// invocations, at one AssumeRole each.
    pub chunk_targets: usize,
    /// Chunks in one part of a long listing (see `router::ShardPlanning`): a shard listing more
    /// than `part_chunks * chunk_targets` targets is planned and sent a part at a time while
    /// it is listed, so its work starts before its listing ends.
    pub part_chunks: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            catchup: Duration::minutes(60),
            lease_ttl: Duration::minutes(15),
            discovery_concurrency: 16,
            inventory_ttl: Duration::minutes(15),
            task_max_receives: DEFAULT_MAX_RECEIVES,
            drift_interval: Duration::zero(),
            enforce_interval: Duration::minutes(1),
            audit: AuditSigner::default(),
            stuck_updating: Duration::minutes(30),
            chunk_targets: crate::chunk::MAX_CHUNK_TARGETS,
            part_chunks: crate::chunk::PART_CHUNKS,
        }
    }
}

/// Everything the handlers use, built once per process.
#[derive(Clone)]
pub struct Hub {
    /// The state table.
    pub store: Arc<dyn StateStore>,
    /// Operations and shards to fan out.
    pub router_queue: Arc<dyn Queue>,
    /// One message per target.
    pub task_queue: Arc<dyn Queue>,
    /// Spoke accounts, through their roles.
    pub spokes: Arc<dyn Spokes>,
    /// The Kubernetes APIs of clusters that opt into a cluster-wide hold mode.
    pub clusters: Arc<dyn ClusterApi>,
    /// Now.
    pub clock: Arc<dyn Clock>,
    /// Tunables.
    pub settings: Settings,
    /// Where notices for people go (`Notices::none()` when no topic is configured).
    pub notices: crate::notice::Notices,
}

/// Serializes a message for a queue. Our message types always serialize.
pub(crate) fn to_body<T: serde::Serialize>(message: &T) -> String {
    serde_json::to_string(message).expect("queue messages serialize to JSON")
}

/// One received task message, as the worker needs it from an SQS record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivery {
    /// The message id (what a partial batch failure names).
    pub message_id: String,
    /// The body: a [`crate::chunk::TaskChunk`], an [`AccountPlan`] (or one target's
    /// [`TaskMessage`]) in JSON.
    pub body: String,
    /// How many times the queue has handed the message out, this time included (SQS's
    /// `ApproximateReceiveCount`; 1 on the first receive).
    pub receive_count: u32,
    /// The X-Ray trace header the sender's invocation gave the message (SQS's
    /// `AWSTraceHeader`), if it was traced: the worker's log lines for the task carry it.
    pub trace_header: Option<String>,
}

impl Delivery {
    /// A message on its first receive.
    pub fn first(message_id: impl Into<String>, body: impl Into<String>) -> Self {
        Delivery {
            message_id: message_id.into(),
            body: body.into(),
            receive_count: 1,
            trace_header: None,
        }
    }
}

/// What became of a batch of queue messages.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BatchOutcome {
    /// Message ids to leave on the queue (retried later, and after N receives sent to the DLQ).
    pub failed: Vec<String>,
    /// Message ids with a problem retrying cannot fix (malformed body, unknown task), with the
    /// cause naming the field. They are also in `failed`, so they end in the DLQ for a human.
    pub rejected: Vec<(String, String)>,
    /// Message ids whose task is dead-lettered: given up on the message's last receive (now or
    /// earlier). They are also in `failed`, so SQS moves them to the DLQ, where
    /// [`dlq::redrive`] finds them.
    pub dead_lettered: Vec<String>,
}

/// What became of one target's task (or of a message that names none) in a batch.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Verdict {
    /// Its task is final: delete the message once its operation is settled.
    Done,
    /// Leave it on the queue for another receive.
    Retry,
    /// Its task is given up: leave the message for the dead-letter queue, settle the operation.
    DeadLettered,
    /// Unfixable (malformed body, unknown task): leave it for the dead-letter queue.
    Rejected(String),
    /// Not done, but sent on in a message of its own (what was left of an account plan's
    /// first chunk, or of a chunk the invocation ran out of time for): nothing more for this
    /// message to do.
    HandedOn,
    /// Not done because the invocation is running out of time: it was not started, or one of
    /// its calls could not start in time ([`ErrorKind::OutOfTime`]). Sent on with the rest of
    /// its message's such targets ([`send_on_late`]) where it can be, else [`Verdict::Retry`].
    OutOfTime,
}

/// A target's operation (none for a message that names no target) and what became of it.
type TargetVerdict = (Option<String>, Verdict);

/// Targets one worker invocation works at once. A chunk holds up to a hundred targets of one
/// account ([`crate::chunk`]); ten at a time keeps one account's API calls from bursting and a
/// full chunk well inside the worker's timeout.
pub const TARGETS_AT_ONCE: usize = 10;

/// Task messages the worker's event source hands one invocation: one chunk, so the
/// invocations of a wave stay about the same size and the last one to finish is short (with
/// ten chunks an invocation could hold a thousand targets).
pub const TASK_BATCH_SIZE: usize = 1;

/// Works a batch of task messages: every target of every chunk ([`crate::chunk`]), up to
/// [`TARGETS_AT_ONCE`] at a time. An account plan ([`AccountPlan`]) is planned first
/// ([`router::plan_chunks`]): its chunks but the first are sent on, and the first is worked
/// here as a chunk on its first receive; what is left of it goes on as a chunk message of its
/// own, and the plan's message is done (retried only if planning or sending failed).
///
/// A message is deleted only when every one of its targets' tasks is final; otherwise it is
/// reported failed and comes back whole (its finished targets then find their tasks final and
/// change nothing). A target on its message's last receive
/// (`receive_count >= settings.task_max_receives`) that would be left for a retry — its task
/// not done yet, or an error — gives its task up ([`worker::give_up`]: DEAD_LETTERED, counted
/// once) and the message is still reported failed, so SQS moves it to the dead-letter queue;
/// the operation then settles instead of waiting forever. A message with a dead-lettered task
/// is reported failed too, so every message of a given-up task gathers in the dead-letter queue
/// for `curfew dlq redrive`.
pub async fn worker_batch(hub: &Hub, deliveries: &[Delivery]) -> BatchOutcome {
    worker_batch_until(hub, deliveries, None).await
}

/// How long before its invocation's deadline the worker stops starting targets: a target's
/// work (its spoke and state calls, retries included) fits in it, so the function is not cut
/// off mid-target with the target's lease held until it expires.
pub const DEADLINE_MARGIN: std::time::Duration = std::time::Duration::from_secs(30);

/// How long before its invocation's deadline the worker's calls about targets must have
/// started ([`calls_start_by`]): a call's answer and the task's record after it fit in it.
pub const CALL_MARGIN: std::time::Duration = std::time::Duration::from_secs(10);

tokio::task_local! {
    /// The latest start of a call about a target in this invocation ([`calls_start_by`]).
    static CALLS_START_BY: tokio::time::Instant;
}

/// The latest time a call about a target may start in the worker invocation this runs in
/// (its deadline less [`CALL_MARGIN`]); `None` outside an invocation with a deadline.
///
/// [`DEADLINE_MARGIN`] assumes a target started in time finishes in time. A spoke that
/// refuses calls over its rate makes an adapter pace its calls (`curfew_aws::pacing`), and ten
/// targets waiting their turns at a slow pace can outlast any margin. An adapter whose call
/// would wait past this time fails it at once instead ([`ErrorKind::OutOfTime`]): the target's
/// task goes back to the queue with its lease released and its mark kept, where the function's
/// timeout would have cut it off mid-change with its lease held until it expires.
pub fn calls_start_by() -> Option<tokio::time::Instant> {
    CALLS_START_BY.try_with(|by| *by).ok()
}

/// Runs `work` with its calls about targets to start by `by` ([`calls_start_by`]).
pub async fn calls_starting_by<F: std::future::Future>(
    by: tokio::time::Instant,
    work: F,
) -> F::Output {
    CALLS_START_BY.scope(by, work).await
}

/// [`worker_batch`] in an invocation that must end by `deadline` (the Lambda's): once less than
/// [`DEADLINE_MARGIN`] is left, no more targets are started, and calls about targets start by
/// [`calls_start_by`]. The targets left for lack of time go on in a new message, received at
/// once ([`send_on_late`]), where a failed message would wait out its visibility timeout.
///
/// The deadline is on tokio's clock (the system's, unless paused): the simulation runs
/// invocations on virtual time.
pub async fn worker_batch_until(
    hub: &Hub,
    deliveries: &[Delivery],
    deadline: Option<tokio::time::Instant>,
) -> BatchOutcome {
    match deadline {
        Some(deadline) => {
            let by = deadline.checked_sub(CALL_MARGIN).unwrap_or(deadline);
            calls_starting_by(by, work_batch(hub, deliveries, Some(deadline))).await
        }
        None => work_batch(hub, deliveries, None).await,
    }
}

async fn work_batch(
    hub: &Hub,
    deliveries: &[Delivery],
    deadline: Option<tokio::time::Instant>,
) -> BatchOutcome {
    let cutoff = deadline.map(|d| d.checked_sub(DEADLINE_MARGIN).unwrap_or(d));
    let parsed: Vec<(&Delivery, Result<TaskBody, String>)> = deliveries
        .iter()
        .map(|delivery| (delivery, crate::chunk::read_body(&delivery.body)))
        .collect();
    // Account plans first: each lists its account and writes its tasks, and its first chunk
    // joins this batch's work, in the environment that assumed the account's role to list it.
    let plans: Vec<_> = parsed
        .iter()
        .enumerate()
        .filter_map(|(index, (delivery, body))| match body {
            Ok(TaskBody::Plan(plan)) => Some(plan_inline(hub, index, delivery, plan)),
            _ => None,
        })
        .collect();
    let mut planned: HashMap<usize, Result<Option<TaskChunk>, Verdict>> =
        futures::future::join_all(plans).await.into_iter().collect();
    // A plan's first chunk was sent by no one: its targets are on their first receive.
    let fresh: Vec<Delivery> = deliveries
        .iter()
        .map(|d| Delivery {
            receive_count: 1,
            ..d.clone()
        })
        .collect();
    let mut handing_on: HashMap<usize, TaskChunk> = HashMap::new();
    let mut per_message: Vec<(&String, Vec<TargetVerdict>)> = Vec::new();
    let mut work = Vec::new();
    for (index, (delivery, body)) in parsed.into_iter().enumerate() {
        let id = &delivery.message_id;
        match body {
            Ok(TaskBody::Targets(messages)) => {
                per_message.push((id, Vec::new()));
                work.extend(messages.into_iter().map(|m| (index, delivery, m)));
            }
            Ok(TaskBody::Plan(_)) => match planned.remove(&index).expect("every plan planned") {
                Ok(Some(first)) => {
                    per_message.push((id, Vec::new()));
                    handing_on.insert(index, first.clone());
                    work.extend(
                        first
                            .into_tasks()
                            .into_iter()
                            .map(|m| (index, &fresh[index], m)),
                    );
                }
                Ok(None) => per_message.push((id, Vec::new())),
                Err(verdict) => per_message.push((id, vec![(None, verdict)])),
            },
            Err(cause) => per_message.push((id, vec![(None, Verdict::Rejected(cause))])),
        }
    }
    // Stops consult the overrides: read them once for the batch, not once per target. If the
    // read fails, each stop reads them itself (and retries through the queue if that fails).
    let any_stop = work
        .iter()
        .any(|(_, _, m)| m.action == crate::decision::Action::Stop);
    let overrides = if any_stop {
        hub.store.active_overrides(hub.clock.now()).await.ok()
    } else {
        None
    };
    let overrides = overrides.as_deref();
    // The futures are made up front, not by a closure inside the stream, so the batch's
    // future stays `Send` for the console's spawned dispatcher.
    let jobs: Vec<_> = work
        .into_iter()
        .map(|(index, delivery, message)| {
            work_one(hub, index, delivery, message, overrides, cutoff)
        })
        .collect();
    // The tasks' ends are held and written together once every target is worked (one
    // counter write per operation and transaction instead of one per task).
    // With a deadline, what is held by the time calls must start by is written then.
    let write_by = deadline.map(|d| d.checked_sub(CALL_MARGIN).unwrap_or(d));
    let (worked, written): (Vec<Worked>, _) = endings::work_then_write(
        hub,
        futures::stream::iter(jobs)
            .buffer_unordered(TARGETS_AT_ONCE)
            .collect(),
        write_by,
    )
    .await;
    let mut open: HashMap<usize, BTreeSet<String>> = HashMap::new();
    let mut late: HashMap<usize, Vec<TaskMessage>> = HashMap::new();
    for Worked {
        index,
        message,
        mut verdict,
    } in worked
    {
        let target = message.target.key();
        if verdict == Verdict::Done {
            if let Some(Err(e)) = written.get(&(message.op_id.clone(), target.clone())) {
                // A plan's first chunk was worked as on its first receive.
                let delivery = if handing_on.contains_key(&index) {
                    &fresh[index]
                } else {
                    &deliveries[index]
                };
                verdict = unwritten(hub, delivery, &message, e).await;
            }
        }
        if verdict != Verdict::Done {
            open.entry(index).or_default().insert(target);
        }
        per_message[index]
            .1
            .push((Some(message.op_id.clone()), verdict.clone()));
        if verdict == Verdict::OutOfTime {
            late.entry(index).or_default().push(message);
        }
    }
    // A plan's first chunk goes on whole (its late targets with it); a chunk's late targets go
    // on by themselves.
    late.retain(|index, _| !handing_on.contains_key(index));
    hand_on(hub, handing_on, &open, &mut per_message).await;
    send_on_late(hub, late, &mut per_message).await;
    for (_, verdicts) in per_message.iter_mut() {
        for (_, verdict) in verdicts.iter_mut() {
            if *verdict == Verdict::OutOfTime {
                *verdict = Verdict::Retry;
            }
        }
    }
    // Settle each operation once per batch rather than once per task (two reads each). If that
    // fails, its finished messages stay on the queue: their redelivery settles it.
    let settling: BTreeSet<&str> = per_message
        .iter()
        .flat_map(|(_, verdicts)| verdicts)
        .filter(|(_, v)| matches!(v, Verdict::Done | Verdict::DeadLettered))
        .filter_map(|(op, _)| op.as_deref())
        .collect();
    let mut unsettled = BTreeSet::new();
    for op_id in settling {
        if let Err(e) = notify::settle(hub, op_id).await {
            tracing::warn!(op_id, error = %e, "settling the operation failed; will be retried");
            unsettled.insert(op_id.to_string());
        }
    }
    let mut outcome = BatchOutcome::default();
    for (id, verdicts) in &per_message {
        let retry = verdicts.iter().any(|(op, v)| {
            *v == Verdict::Retry
                || (*v == Verdict::Done && op.as_ref().is_some_and(|op| unsettled.contains(op)))
        });
        let rejected: Vec<&str> = verdicts
            .iter()
            .filter_map(|(_, v)| match v {
                Verdict::Rejected(cause) => Some(cause.as_str()),
                _ => None,
            })
            .collect();
        let dead_lettered = verdicts.iter().any(|(_, v)| *v == Verdict::DeadLettered);
        if retry || dead_lettered || !rejected.is_empty() {
            outcome.failed.push((*id).clone());
        }
        if dead_lettered {
            outcome.dead_lettered.push((*id).clone());
        }
        // A message with a target still to retry is not given up on for another's sake.
        if !retry && !rejected.is_empty() {
            let cause = rejected.join("; ");
            tracing::error!(message_id = %id, %cause, "message rejected");
            outcome.rejected.push(((*id).clone(), cause));
        }
    }
    outcome
}

/// One target of a batch, worked.
struct Worked {
    /// Its message's index in the batch.
    index: usize,
    /// Its task (sent on if the invocation ran out of time for it: [`Verdict::OutOfTime`]).
    message: TaskMessage,
    /// What its message should do about it (`Done` with its end held: once that is written).
    verdict: Verdict,
}

/// Works one target of the batch's message `index`.
async fn work_one(
    hub: &Hub,
    index: usize,
    delivery: &Delivery,
    message: TaskMessage,
    overrides: Option<&[crate::ports::Override]>,
    cutoff: Option<tokio::time::Instant>,
) -> Worked {
    let verdict = target_verdict(hub, delivery, &message, overrides, cutoff).await;
    Worked {
        index,
        message,
        verdict,
    }
}

/// The verdict on a target whose task's end was held and then not written (`e`): retried, or
/// rejected for an error retrying will not mend, and given up on its message's last receive,
/// as a target whose own write failed is.
async fn unwritten(
    hub: &Hub,
    delivery: &Delivery,
    message: &TaskMessage,
    e: &crate::ports::PortError,
) -> Verdict {
    let verdict = if e.kind.is_retryable() {
        tracing::warn!(message_id = %delivery.message_id, op_id = %message.op_id,
                       target = %message.target.key(), error = %e,
                       "writing the task's end failed; will be retried");
        Verdict::Retry
    } else {
        Verdict::Rejected(e.to_string())
    };
    if delivery.receive_count >= hub.settings.task_max_receives {
        last_receive(hub, message, delivery, &e.to_string(), verdict).await
    } else {
        verdict
    }
}

/// A chunk's message whose targets are done but for those the invocation ran out of time for
/// (`late`, by message index) need not wait out its visibility timeout (the worker's timeout
/// times six in the hub stack) to be received again: those targets go on as a chunk message of
/// their own, received at once, and become [`Verdict::HandedOn`]. A message with a target to
/// retry for another reason (a throttled call, a lease another delivery holds) comes back as
/// it would have, late targets and all, counting its receives toward the dead-letter queue;
/// so does one whose send fails. Sending on twice (a crash after the send) is a duplicate
/// delivery, which every handler is safe to take: the targets done find their tasks final.
async fn send_on_late(
    hub: &Hub,
    late: HashMap<usize, Vec<TaskMessage>>,
    per_message: &mut [(&String, Vec<TargetVerdict>)],
) {
    for (index, tasks) in late {
        let verdicts = &mut per_message[index].1;
        if verdicts.iter().any(|(_, v)| *v == Verdict::Retry) {
            continue;
        }
        let Some(rest) = TaskChunk::of_tasks(tasks) else {
            continue;
        };
        let sent = send_rest_on(hub, &rest, verdicts, |v| *v == Verdict::OutOfTime).await;
        match sent {
            Ok(()) => tracing::info!(op_id = %rest.op_id, account = %rest.role.account,
                                     targets = rest.targets.len(),
                                     "out of time: the targets left are sent on in a message of their own"),
            Err(e) => tracing::warn!(op_id = %rest.op_id, account = %rest.role.account, error = %e,
                                     "sending on the targets left for lack of time failed; their message will be retried"),
        }
    }
}

/// Sends `rest` on as a chunk message of its own; once it is sent, the `verdicts` that `sent_on`
/// picks become [`Verdict::HandedOn`]. A failed send changes no verdict.
async fn send_rest_on(
    hub: &Hub,
    rest: &TaskChunk,
    verdicts: &mut [TargetVerdict],
    sent_on: impl Fn(&Verdict) -> bool,
) -> crate::ports::PortResult<()> {
    hub.task_queue
        .send_as(&rest.role.account, &[to_body(rest)])
        .await?;
    for (_, verdict) in verdicts.iter_mut() {
        if sent_on(verdict) {
            *verdict = Verdict::HandedOn;
        }
    }
    Ok(())
}

/// A plan's message is not retried for its first chunk's sake (that would plan again and send
/// the other chunks twice): what is left of each plan's first chunk (`handing_on`, by message
/// index; `open`: the targets not done) goes on as a chunk message of its own, and its targets'
/// verdicts become [`Verdict::HandedOn`]. If that send fails they stay as they are, and the
/// plan comes back.
async fn hand_on(
    hub: &Hub,
    handing_on: HashMap<usize, TaskChunk>,
    open: &HashMap<usize, BTreeSet<String>>,
    per_message: &mut [(&String, Vec<TargetVerdict>)],
) {
    for (index, mut rest) in handing_on {
        let Some(left) = open.get(&index) else {
            continue;
        };
        rest.targets.retain(|t| left.contains(&t.key()));
        let verdicts = &mut per_message[index].1;
        if let Err(e) = send_rest_on(hub, &rest, verdicts, |v| *v != Verdict::Done).await {
            tracing::warn!(op_id = %rest.op_id, account = %rest.role.account, error = %e,
                           "sending on the rest of a planned chunk failed; the plan will be retried")
        }
    }
}

/// Plans the account of the batch's message `index` ([`router::plan_chunks`]), sends every
/// chunk but the first on, and returns the first for this batch to work (`None`: nothing to
/// work, the operation settled). A failure is the message's verdict: retried (throttled
/// listing, a queue or table fault) or rejected (the operation does not exist).
async fn plan_inline(
    hub: &Hub,
    index: usize,
    delivery: &Delivery,
    plan: &AccountPlan,
) -> (usize, Result<Option<TaskChunk>, Verdict>) {
    let span = tracing::info_span!("account", op_id = %plan.op_id, account = %plan.account(),
                                   message_id = %delivery.message_id,
                                   trace = delivery.trace_header.as_deref());
    let planned = async {
        let mut chunks = router::plan_chunks(hub, &plan.op_id, &plan.shards)
            .await?
            .into_iter();
        let Some(first) = chunks.next() else {
            notify::settle(hub, &plan.op_id).await?;
            return Ok(None);
        };
        let rest: Vec<String> = chunks.map(|chunk| to_body(&chunk)).collect();
        if !rest.is_empty() {
            hub.task_queue.send_as(&first.role.account, &rest).await?;
        }
        Ok(Some(first))
    }
    .instrument(span)
    .await;
    let verdict = planned.map_err(|e: crate::ports::PortError| {
        if e.kind.is_retryable() {
            tracing::warn!(message_id = %delivery.message_id, op_id = %plan.op_id,
                           account = %plan.account(), error = %e,
                           "planning the account failed; will be retried");
            Verdict::Retry
        } else {
            Verdict::Rejected(format!("planning account {}: {e}", plan.account()))
        }
    });
    (index, verdict)
}

async fn target_verdict(
    hub: &Hub,
    delivery: &Delivery,
    message: &TaskMessage,
    overrides: Option<&[crate::ports::Override]>,
    cutoff: Option<tokio::time::Instant>,
) -> Verdict {
    // Every log line of a task's work carries its operation, account, region and target
    // (the task's id is the operation and the target together).
    let span = tracing::info_span!("task", op_id = %message.op_id, account = %message.target.account,
                                   region = %message.target.region, target = %message.target.key(),
                                   message_id = %delivery.message_id,
                                   trace = delivery.trace_header.as_deref());
    async move {
        let id = &delivery.message_id;
        // On its message's last receive a target out of time is given up as any other retry
        // would be, so that its task is final when the message reaches the dead-letter queue.
        let last = delivery.receive_count >= hub.settings.task_max_receives;
        let out_of_time = cutoff.is_some_and(|cutoff| tokio::time::Instant::now() >= cutoff);
        if out_of_time && !last {
            return Verdict::OutOfTime;
        }
        let worked = if out_of_time {
            Ok(TaskStep::RetryLater(
                "the worker's invocation was about to time out before this target".to_string(),
            ))
        } else {
            let first = delivery.receive_count <= 1;
            worker::work_received(hub, message, overrides, first).await
        };
        let (verdict, why) = match worked {
            Ok(TaskStep::Finished(TaskStatus::DeadLettered)) => return Verdict::DeadLettered,
            Ok(TaskStep::Finished(_)) => return Verdict::Done,
            Err(e) if e.kind == ErrorKind::OutOfTime && !last => {
                tracing::info!(message_id = %id, error = %e, "out of time for this target; it will be sent on");
                return Verdict::OutOfTime;
            }
            Ok(TaskStep::RetryLater(why)) => {
                tracing::info!(message_id = %id, op_id = %message.op_id, target = %message.target.key(), %why, "task will be retried");
                (Verdict::Retry, why)
            }
            Err(e) if e.kind.is_retryable() => {
                tracing::warn!(message_id = %id, error = %e, "task failed; will be retried");
                (Verdict::Retry, e.to_string())
            }
            Err(e) => (Verdict::Rejected(e.to_string()), e.to_string()),
        };
        if last {
            last_receive(hub, message, delivery, &why, verdict).await
        } else {
            verdict
        }
    }
    .instrument(span)
    .await
}

/// The message's last receive would leave its task open: give the task up. If another delivery
/// finished it meanwhile, the message is done; if another delivery of the operation is working
/// on it, or giving up failed, the message keeps `verdict` (it goes to the dead-letter queue
/// all the same, and `curfew dlq redrive` brings it back).
async fn last_receive(
    hub: &Hub,
    message: &TaskMessage,
    delivery: &Delivery,
    why: &str,
    verdict: Verdict,
) -> Verdict {
    match worker::give_up(hub, message, delivery.receive_count, why).await {
        Ok(TaskStep::Finished(TaskStatus::DeadLettered)) => Verdict::DeadLettered,
        Ok(TaskStep::Finished(_)) => Verdict::Done,
        Ok(TaskStep::RetryLater(held)) => {
            tracing::warn!(message_id = %delivery.message_id, op_id = %message.op_id,
                           target = %message.target.key(), %held,
                           "last receive: the task is left open for the delivery working on it");
            verdict
        }
        Err(e) => {
            tracing::error!(message_id = %delivery.message_id, op_id = %message.op_id,
                            target = %message.target.key(), error = %e,
                            "last receive: giving the task up failed; it stays open until `curfew dlq redrive`");
            verdict
        }
    }
}

/// Works a batch of router messages `(message id, body)` concurrently.
pub async fn router_batch(hub: &Hub, messages: &[(String, String)]) -> BatchOutcome {
    let results = futures::future::join_all(messages.iter().map(|(id, body)| async move {
        let message: crate::operation::RouterMessage = match serde_json::from_str(body) {
            Ok(m) => m,
            Err(e) => return (id, Err(format!("malformed router message: {e}"))),
        };
        match router::handle(hub, &message).await {
            Ok(()) => (id, Ok(true)),
            Err(e) if e.kind.is_retryable() => {
                tracing::warn!(message_id = %id, error = %e, "router message failed; will be retried");
                (id, Ok(false))
            }
            Err(e) => (id, Err(e.to_string())),
        }
    }))
    .await;
    collect(results)
}

fn collect(results: Vec<(&String, Result<bool, String>)>) -> BatchOutcome {
    let mut outcome = BatchOutcome::default();
    for (id, result) in results {
        match result {
            Ok(true) => {}
            Ok(false) => outcome.failed.push(id.clone()),
            Err(cause) => {
                tracing::error!(message_id = %id, %cause, "message rejected");
                outcome.failed.push(id.clone());
                outcome.rejected.push((id.clone(), cause));
            }
        }
    }
    outcome
}
