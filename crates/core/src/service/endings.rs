//! A delivery's task ends, written together.
//!
//! Finishing a task alone is one transaction of its final state and its count on a counter
//! stripe (and, for a change, the change's record and its chain's head): the count's write
//! costs as much as the task's. Inside a worker batch ([`work_then_write`]) the worker instead
//! holds each task's end, and the target's lease with it, until the batch's targets are worked;
//! then [`write_ends`] writes them all ([`crate::ports::OperationStore::finish_tasks`]), each
//! operation counted once a transaction, and releases the leases. The changes they made are
//! recorded in a chain of the delivery's own ([`trail::delivery_chain`]), one record listing
//! the changes of each write ([`writes`]), not in each target's chain.
//!
//! Crash safety is the same as one task at a time: each task is final, counted and recorded in
//! one atomic write, conditioned on its not being final yet, and its lease (with the mark of its
//! change in flight) is released only after that. A crash before the write leaves every task
//! open with its mark, and the redelivery finishes what the mark says was begun.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tracing::info;

use super::worker::count_finished;
use super::Hub;
use crate::operation::{TaskMessage, TaskOutcome};
use crate::ports::{
    EndsWrite, ErrorKind, LeaseToken, PortError, PortResult, RecordedFinish, TaskEnd,
    MAX_WRITE_ITEMS,
};
use crate::trail::{self, AuditEntry, ChainHead, Link, Linker};

tokio::task_local! {
    /// The ends held in the worker batch this runs in ([`work_then_write`]).
    static HELD: Held;
}

/// Task ends held for one write, and what became of those an early write took.
#[derive(Clone, Default)]
struct Held(Arc<Mutex<HeldState>>);

#[derive(Default)]
struct HeldState {
    ends: Vec<Ending>,
    /// Tasks whose ends were written before their targets' work returned (at the time for
    /// calls to start, [`work_then_write`]): true if the task is final.
    written_early: HashMap<(String, String), bool>,
}

impl Held {
    fn lock(&self) -> std::sync::MutexGuard<'_, HeldState> {
        self.0.lock().expect("not poisoned")
    }

    /// Writes the ends held now ([`write_ends`]).
    async fn write(&self, hub: &Hub) -> HashMap<(String, String), Written> {
        let ends = std::mem::take(&mut self.lock().ends);
        let written = write_ends(hub, ends).await;
        let mut state = self.lock();
        for (key, result) in &written {
            state.written_early.insert(key.clone(), result.is_ok());
        }
        written
    }
}

/// A task's end, held.
struct Ending {
    msg: TaskMessage,
    outcome: TaskOutcome,
    /// The record of the change it made, if any.
    entry: Option<AuditEntry>,
    /// The target's lease, released once the end is written.
    lease: Option<LeaseToken>,
    /// The task's span (operation, account, region, target, message, trace), for the lines
    /// and metrics of its end.
    span: tracing::Span,
}

/// What became of a held end: `Ok(true)` if the write finished the task, `Ok(false)` if it
/// was final already.
pub(super) type Written = PortResult<bool>;

/// Runs `work` (a batch's targets) with the task ends it reaches held ([`hold`]) instead of
/// written, then writes them ([`write_ends`]) and returns what became of each, by operation
/// and target key. With `write_by` (the time calls about targets must start by, some seconds
/// before the invocation's deadline), the ends held by then are written then, while targets
/// still in flight go on: a function timeout that cuts the invocation off loses only their
/// ends, not every end of the chunk with its lease held until it expires.
pub(super) async fn work_then_write<F: std::future::Future>(
    hub: &Hub,
    work: F,
    write_by: Option<tokio::time::Instant>,
) -> (F::Output, HashMap<(String, String), Written>) {
    let held = Held::default();
    let work = HELD.scope(held.clone(), work);
    tokio::pin!(work);
    let mut written = HashMap::new();
    let output = match write_by {
        None => work.await,
        Some(at) => tokio::select! {
            // Polled in order, not at random: a run repeats exactly (the simulation's).
            biased;
            output = &mut work => output,
            () = tokio::time::sleep_until(at) => {
                written.extend(held.write(hub).await);
                work.await
            }
        },
    };
    written.extend(held.write(hub).await);
    (output, written)
}

/// Holds the end of `msg`'s task, if the caller runs inside [`work_then_write`]: true if held.
pub(super) fn hold(msg: &TaskMessage, outcome: &TaskOutcome, entry: Option<AuditEntry>) -> bool {
    HELD.try_with(|held| {
        held.lock().ends.push(Ending {
            msg: msg.clone(),
            outcome: outcome.clone(),
            entry,
            lease: None,
            span: tracing::Span::current(),
        });
    })
    .is_ok()
}

/// What to do with a lease whose task's end was reached ([`keep_lease`]).
pub(super) enum LeaseAfterEnd {
    /// Kept for release after the held end is written.
    Kept,
    /// Release it now, clearing its mark of the change in flight if `finished`: no end of
    /// the task is held, or an early write already took it (`finished` if that made it final).
    Release { finished: bool },
}

/// Keeps `lease` for release after the write of `msg`'s held end.
pub(super) fn keep_lease(msg: &TaskMessage, lease: &LeaseToken) -> LeaseAfterEnd {
    HELD.try_with(|held| {
        let mut state = held.lock();
        // A scan of the batch's held ends for each of its targets: compared without building
        // a key per end, which made it a hundred allocations per target in a full chunk.
        if let Some(end) = state.ends.iter_mut().find(|e| {
            e.lease.is_none() && e.msg.target.same_key(&msg.target) && e.msg.op_id == msg.op_id
        }) {
            end.lease = Some(lease.clone());
            return LeaseAfterEnd::Kept;
        }
        let finished = state
            .written_early
            .get(&(msg.op_id.clone(), msg.target.key()))
            .copied()
            .unwrap_or(true);
        LeaseAfterEnd::Release { finished }
    })
    .unwrap_or(LeaseAfterEnd::Release { finished: true })
}

/// Writes the held ends ([`crate::ports::OperationStore::finish_tasks`]), their changes linked
/// in one chain of the delivery's own ([`trail::delivery_chain`]) so they share one head
/// instead of each moving its target's (2 write units a change in a transaction, and a read of
/// that head); then releases each kept lease, clearing its mark of the change in flight only
/// if the task is final. The chain is new, so the first write reads no head; an end found
/// final already whose change was in a record leaves that record out, and the changes of that
/// record and of the records after it are linked again after the head as written. Returns what
/// became of each task, by operation and target key.
async fn write_ends(hub: &Hub, held: Vec<Ending>) -> HashMap<(String, String), Written> {
    let now = hub.clock.now();
    let mut results: Vec<Option<Written>> = (0..held.len()).map(|_| None).collect();
    // Two copies of one message in a batch may both reach a task's end without its lease (a
    // superseded task's): one write finishes the task, and the copy takes its result.
    let mut first_of: HashMap<(String, String), usize> = HashMap::new();
    let mut copies: Vec<(usize, usize)> = Vec::new();
    let mut pending: Vec<usize> = Vec::new();
    for (i, end) in held.iter().enumerate() {
        match first_of.entry((end.msg.op_id.clone(), end.msg.target.key())) {
            std::collections::hash_map::Entry::Occupied(first) => copies.push((i, *first.get())),
            std::collections::hash_map::Entry::Vacant(slot) => {
                slot.insert(i);
                pending.push(i);
            }
        }
    }
    let chain = held
        .iter()
        .find(|end| end.entry.is_some())
        .map(|end| trail::delivery_chain(&end.msg.target.key(), now));
    for attempt in 0..trail::APPEND_ATTEMPTS {
        let head = match (&chain, attempt) {
            (Some(chain), 1..) => match hub.store.audit_head(chain).await {
                Ok(head) => head,
                Err(e) => {
                    for &i in &pending {
                        results[i] = Some(Err(PortError::new(e.kind, e.message.clone())));
                    }
                    pending.clear();
                    break;
                }
            },
            _ => None,
        };
        let writes = linked(hub, &held, &pending, chain.as_deref(), head);
        let which = std::mem::take(&mut pending);
        match hub.store.finish_tasks(&writes, now).await {
            Ok(finished) => {
                for (i, result) in which.into_iter().zip(finished) {
                    match result {
                        RecordedFinish::Finished => results[i] = Some(Ok(true)),
                        RecordedFinish::AlreadyFinal => results[i] = Some(Ok(false)),
                        RecordedFinish::HeadMoved => pending.push(i),
                    }
                }
            }
            Err(e) => {
                for i in which {
                    results[i] = Some(Err(PortError::new(e.kind, e.message.clone())));
                }
            }
        }
        if pending.is_empty() {
            break;
        }
    }
    for (copy, first) in copies {
        // Final already, as far as the copy goes: only the write finished it.
        results[copy] = match &results[first] {
            Some(Ok(_)) => Some(Ok(false)),
            Some(Err(e)) => Some(Err(PortError::new(e.kind, e.message.clone()))),
            None => None,
        };
    }
    let releases = held.iter().zip(&results).map(|(end, result)| async move {
        let Some(lease) = &end.lease else {
            return Ok(());
        };
        let finished = matches!(result, Some(Ok(_)));
        hub.store
            .release_lease(&end.msg.target.key(), lease, finished)
            .await
    });
    let released = futures::future::join_all(releases).await;
    let mut written = HashMap::new();
    for ((end, result), release) in held.iter().zip(results).zip(released) {
        let key = end.msg.target.key();
        let result = match (result, release) {
            (None, _) => Err(appends_lost(chain.as_deref().unwrap_or_default())),
            (Some(Ok(_)), Err(e)) => Err(e),
            (Some(result), _) => result,
        };
        if let Ok(true) = result {
            end.span.in_scope(|| {
                info!(op_id = %end.msg.op_id, target = %key, status = %end.outcome.status,
                      reason = end.outcome.reason.as_deref().unwrap_or(""), "task finished");
                count_finished(&end.msg, end.outcome.status);
            });
        }
        written
            .entry((end.msg.op_id.clone(), key))
            .or_insert(result);
    }
    written
}

/// The ends `pending` (indexes into `held`) as written now ([`writes`]): their changes linked
/// in `chain`, the first record after `head` (`None`: the chain is new).
fn linked(
    hub: &Hub,
    held: &[Ending],
    pending: &[usize],
    chain: Option<&str>,
    head: Option<ChainHead>,
) -> Vec<EndsWrite> {
    let linker = chain.map(|chain| Linker::after(head, chain, hub.settings.audit.key.as_ref()));
    let ends = pending.iter().map(|&i| {
        let end = &held[i];
        let task_end = TaskEnd {
            op_id: end.msg.op_id.clone(),
            target: end.msg.target.clone(),
            outcome: end.outcome.clone(),
            recorded: false,
        };
        // The task names the change: its operation and target.
        let change = end.entry.clone().map(|entry| {
            let key_of_change = trail::task_name(&end.msg.op_id, &end.msg.target.key());
            (key_of_change, entry)
        });
        (task_end, change)
    });
    writes(ends, linker)
}

/// `ends`, in order, each with the change it made (named by its key), in writes of as many
/// ends as one atomic write holds ([`EndsWrite::items`], [`MAX_WRITE_ITEMS`]), each with one
/// record of its ends' changes linked next by `linker` (`None`: none is recorded). One record
/// of a write's changes bills some 0.11 KB a change where a record each was an item of its
/// own, billed at least 1 KB, twice, in a transaction (docs/PERFORMANCE.md).
pub fn writes(
    ends: impl IntoIterator<Item = (TaskEnd, Option<(String, AuditEntry)>)>,
    mut linker: Option<Linker<'_>>,
) -> Vec<EndsWrite> {
    let mut writes = Vec::new();
    let mut group = Group::default();
    for (mut end, change) in ends {
        let change = change.filter(|_| linker.is_some());
        end.recorded = change.is_some();
        let recorded = end.recorded || !group.entries.is_empty();
        group.ends.push(end);
        if group.ends.len() > 1 && EndsWrite::items(&group.ends, recorded) > MAX_WRITE_ITEMS {
            let last = group.ends.pop().expect("just pushed");
            writes.push(std::mem::take(&mut group).write(linker.as_mut()));
            group.ends.push(last);
        }
        if let Some((key_of_change, entry)) = change {
            group.entries.push(entry);
            group.last_key = key_of_change;
        }
    }
    if !group.ends.is_empty() {
        writes.push(group.write(linker.as_mut()));
    }
    writes
}

/// The ends of one write being formed, and their changes.
#[derive(Default)]
struct Group {
    ends: Vec<TaskEnd>,
    entries: Vec<AuditEntry>,
    /// The last change's key, which the chain's head keeps.
    last_key: String,
}

impl Group {
    /// The write, with the record of its changes linked next by `linker`.
    fn write(self, linker: Option<&mut Linker<'_>>) -> EndsWrite {
        let record = linker
            .filter(|_| !self.entries.is_empty())
            .map(|linker| linker.link_all(&self.last_key, &self.entries));
        EndsWrite {
            ends: self.ends,
            record,
        }
    }
}

/// The error of a task whose change lost [`trail::APPEND_ATTEMPTS`] appends in a row to others
/// moving `chain`'s head (a drift check's, say): retried through the queue.
pub(super) fn appends_lost(chain: &str) -> PortError {
    PortError::new(
        ErrorKind::Throttled,
        format!(
            "audit chain {chain}: {} appends in a row lost to others; try again",
            trail::APPEND_ATTEMPTS
        ),
    )
}

/// The record of the change `entry` after its chain's head as it is now, or `None` when
/// there is none to append: no change, or a delivery of an earlier version appended it before
/// finishing the task (its mark says so), and the task only needs finishing.
pub(super) async fn link_for(
    hub: &Hub,
    msg: &TaskMessage,
    entry: Option<&AuditEntry>,
) -> PortResult<Option<(Link, u64)>> {
    let Some(entry) = entry else {
        return Ok(None);
    };
    let chain = trail::target_chain(&msg.target.key());
    let head = hub.store.audit_head(&chain).await?;
    let appended = head.as_ref().is_some_and(|h| h.last_key == msg.op_id)
        || hub.store.change_recorded(&chain, &msg.op_id).await?;
    if appended {
        return Ok(None);
    }
    let link = Link::after(
        head.as_ref(),
        &chain,
        &msg.op_id,
        entry,
        hub.settings.audit.key.as_ref(),
    );
    let expected = head.map_or(0, |h| h.seq);
    Ok(Some((link, expected)))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use chrono::{TimeZone, Utc};

    use super::*;
    use crate::account::SpokeRole;
    use crate::clock::ManualClock;
    use crate::decision::Action;
    use crate::operation::{OpSource, Operation, Shard, Task, TaskStatus};
    use crate::ports::OperationStore;
    use crate::selector::Selector;
    use crate::target::Target;

    #[tokio::test(start_paused = true)]
    async fn the_ends_held_when_calls_must_start_are_written_then_though_a_target_still_hangs() {
        let now = Utc.with_ymd_and_hms(2027, 1, 4, 18, 0, 0).unwrap();
        let (hub, store, ..) = crate::fakes::hub(Arc::new(ManualClock::new(now)));
        let op = Operation::pending(
            "op-1".into(),
            Action::Stop,
            Selector::parse("kind=asg").unwrap(),
            OpSource::Manual,
            now,
        );
        store.create_operation(&op).await.unwrap();
        let target =
            |name: &str| Target::from_key(&format!("111111111111#eu-west-1#asg#{name}")).unwrap();
        let shard = Shard {
            account: "111111111111".into(),
            region: "eu-west-1".into(),
        };
        let tasks = [
            Task::pending("op-1", target("done"), now),
            Task::pending("op-1", target("hung"), now),
        ];
        store
            .plan_shard("op-1", &shard, 0, &tasks, None)
            .await
            .unwrap();
        let done = TaskMessage {
            op_id: "op-1".into(),
            op_created_at: now,
            action: Action::Stop,
            target: target("done"),
            role: SpokeRole {
                account: "111111111111".into(),
                role_arn: "arn:aws:iam::111111111111:role/curfew-spoke".into(),
                external_id: None,
            },
            dry_run: false,
            default_start: None,
            hold: None,
            check: false,
            enforce: false,
        };
        let skipped = TaskOutcome {
            status: TaskStatus::Skipped,
            reason: Some("already stopped".into()),
            before: None,
            after: None,
            steps: Default::default(),
        };
        // One target's end is reached at once; another target's work hangs past the deadline.
        let work = async {
            assert!(hold(&done, &skipped, None));
            tokio::time::sleep(Duration::from_secs(600)).await;
        };
        let write_by = tokio::time::Instant::now() + Duration::from_secs(110);
        let deadline = Duration::from_secs(120);
        let cut_off =
            tokio::time::timeout(deadline, work_then_write(&hub, work, Some(write_by))).await;
        assert!(
            cut_off.is_err(),
            "the invocation was cut off at its deadline"
        );
        let task = store
            .get_task("op-1", &done.target.key())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            task.status,
            TaskStatus::Skipped,
            "written before the deadline"
        );
        let hung = store.get_task("op-1", &target("hung").key()).await.unwrap();
        assert_eq!(hung, None, "never written: still only listed, PENDING");
    }
}
