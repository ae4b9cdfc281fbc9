//! What the DynamoDB adapter (`curfew-aws`, `src/dynamo/`) sends for each state-store port call,
//! as one table ([`TABLE`]): requests per DynamoDB API, items read and written, and the request
//! units DynamoDB on-demand bills for them. [`super::CountingStore`] applies the table to every
//! call it observes, with what the call handled ([`Seen`]) taken from its arguments and its
//! result, so a wave over the in-memory fakes reports the DynamoDB traffic the real adapter
//! would make for the same calls.
//!
//! The capacity rules (DynamoDB developer guide, "Read/write capacity mode" and "Managing
//! capacity for transactions"):
//! - a strongly consistent read of up to 4 KB is 1 read request unit (RRU), an eventually
//!   consistent one half a unit; GetItem and each key of a BatchGetItem are billed per item,
//!   found or not; a Query is billed on the summed size of the items it reads, rounded up to
//!   4 KB (at least one read);
//! - a write of up to 1 KB is 1 write request unit (WRU), whether its condition holds or not;
//!   each item of a TransactWriteItems is 2 WRU;
//! - a write that adds, changes or removes an item's entry in a global secondary index is
//!   billed on the index too: 1 WRU per entry written, 2 when an index key attribute changes
//!   (the old entry is deleted and a new one put).
//!
//! Assumptions, kept here and named in docs/PERFORMANCE.md: every item but the inventory
//! cache's buckets is at most 1 KB (a task item is a few hundred bytes; no such item carries
//! more than a target's tags), so a write is 1 WRU and a Query of n items reads ceil(n / 4)
//! units and one 1 MB page per 1,024 items; a bucket holds some 8 KB of targets and is billed
//! on its size (the counting store measures the item the adapter writes); a ConditionCheck in a transaction is billed like its other items (2 WRU); a call that
//! failed is counted as sending its first request only.

use super::StoreCall;

/// A DynamoDB API the adapter calls.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DynamoApi {
    /// GetItem.
    GetItem,
    /// BatchGetItem (up to 100 keys).
    BatchGetItem,
    /// Query (one request per 1 MB page).
    Query,
    /// PutItem.
    PutItem,
    /// UpdateItem.
    UpdateItem,
    /// DeleteItem.
    DeleteItem,
    /// TransactWriteItems.
    TransactWriteItems,
    /// BatchWriteItem (up to 25 items).
    BatchWriteItem,
}

impl DynamoApi {
    /// Every API, in declaration order.
    pub const ALL: [DynamoApi; 8] = [
        DynamoApi::GetItem,
        DynamoApi::BatchGetItem,
        DynamoApi::Query,
        DynamoApi::PutItem,
        DynamoApi::UpdateItem,
        DynamoApi::DeleteItem,
        DynamoApi::TransactWriteItems,
        DynamoApi::BatchWriteItem,
    ];

    /// The API's name, as AWS spells it.
    pub fn name(self) -> &'static str {
        match self {
            DynamoApi::GetItem => "GetItem",
            DynamoApi::BatchGetItem => "BatchGetItem",
            DynamoApi::Query => "Query",
            DynamoApi::PutItem => "PutItem",
            DynamoApi::UpdateItem => "UpdateItem",
            DynamoApi::DeleteItem => "DeleteItem",
            DynamoApi::TransactWriteItems => "TransactWriteItems",
            DynamoApi::BatchWriteItem => "BatchWriteItem",
        }
    }
}

/// Counter stripes a running operation's counts are summed from (`STRIPES` in the adapter's
/// `dynamo/operations.rs`; private there, so repeated here).
pub const STRIPES: u64 = 32;

/// The size assumed of every item but the inventory cache's buckets (module docs).
const ITEM_BYTES: u64 = 1024;

/// A Query page: at most 1 MB read.
const PAGE_BYTES: u64 = 1024 * 1024;

/// A read request unit: a strongly consistent read of up to 4 KB.
const READ_UNIT_BYTES: u64 = 4 * 1024;

/// How consistent a read is: it sets its price.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Consistency {
    /// `ConsistentRead` (the adapter's table reads): a full unit per 4 KB.
    Strong,
    /// A global secondary index read (always eventually consistent): half a unit per 4 KB.
    Eventual,
}

/// What DynamoDB is asked for: requests per API, items read and written, request units.
/// Add two with [`DynamoUse::add`]; subtract with [`DynamoUse::since`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DynamoUse {
    requests: [u64; 8],
    /// Items read (an item returned by a Query, a key of a GetItem or BatchGetItem).
    pub items_read: u64,
    /// Items written in the table (puts, updates, deletes, transaction items and
    /// ConditionChecks).
    pub items_written: u64,
    /// Read request units, in halves (an eventually consistent read is half a unit).
    pub read_half_units: u64,
    /// Write request units, the index entries' included.
    pub write_units: u64,
    /// Of `write_units`: global secondary index entries written.
    pub index_writes: u64,
}

impl DynamoUse {
    /// Requests to `api`.
    pub fn requests(&self, api: DynamoApi) -> u64 {
        self.requests[api as usize]
    }

    /// Every request.
    pub fn total_requests(&self) -> u64 {
        self.requests.iter().sum()
    }

    /// Read request units.
    pub fn read_units(&self) -> f64 {
        self.read_half_units as f64 / 2.0
    }

    /// This and `other` together.
    pub fn add(&self, other: &DynamoUse) -> DynamoUse {
        let mut sum = *self;
        for (mine, theirs) in sum.requests.iter_mut().zip(other.requests) {
            *mine += theirs;
        }
        sum.items_read += other.items_read;
        sum.items_written += other.items_written;
        sum.read_half_units += other.read_half_units;
        sum.write_units += other.write_units;
        sum.index_writes += other.index_writes;
        sum
    }

    /// What was asked for after `earlier`.
    pub fn since(&self, earlier: &DynamoUse) -> DynamoUse {
        let mut diff = *self;
        for (mine, theirs) in diff.requests.iter_mut().zip(earlier.requests) {
            *mine -= theirs;
        }
        diff.items_read -= earlier.items_read;
        diff.items_written -= earlier.items_written;
        diff.read_half_units -= earlier.read_half_units;
        diff.write_units -= earlier.write_units;
        diff.index_writes -= earlier.index_writes;
        diff
    }

    /// The APIs asked at least once, with their request counts, in declaration order.
    pub fn nonzero(&self) -> Vec<(DynamoApi, u64)> {
        DynamoApi::ALL
            .iter()
            .map(|a| (*a, self.requests(*a)))
            .filter(|(_, n)| *n > 0)
            .collect()
    }

    /// The counters as one array (for [`super::CountingStore`]'s atomics), and back.
    pub(super) fn to_array(self) -> [u64; 13] {
        let r = self.requests;
        [
            r[0],
            r[1],
            r[2],
            r[3],
            r[4],
            r[5],
            r[6],
            r[7],
            self.items_read,
            self.items_written,
            self.read_half_units,
            self.write_units,
            self.index_writes,
        ]
    }

    pub(super) fn from_array(a: [u64; 13]) -> DynamoUse {
        let mut requests = [0; 8];
        requests.copy_from_slice(&a[..8]);
        DynamoUse {
            requests,
            items_read: a[8],
            items_written: a[9],
            read_half_units: a[10],
            write_units: a[11],
            index_writes: a[12],
        }
    }

    fn request(mut self, api: DynamoApi, n: u64) -> Self {
        self.requests[api as usize] += n;
        self
    }

    /// One consistent GetItem (1 RRU, found or not).
    fn get(self) -> Self {
        let mut u = self.request(DynamoApi::GetItem, 1);
        u.items_read += 1;
        u.read_half_units += 2;
        u
    }

    /// A consistent BatchGetItem of `keys` keys (each billed as a GetItem), 100 keys a call.
    fn batch_get(self, keys: u64) -> Self {
        let mut u = self.request(DynamoApi::BatchGetItem, keys.div_ceil(100).max(1));
        u.items_read += keys;
        u.read_half_units += 2 * keys;
        u
    }

    /// A Query (every page of it) reading `items` items of `bytes` bytes in all.
    fn query_sized(self, items: u64, bytes: u64, consistency: Consistency) -> Self {
        let pages = bytes.div_ceil(PAGE_BYTES).max(1);
        let mut u = self.request(DynamoApi::Query, pages);
        u.items_read += items;
        let units = bytes.div_ceil(READ_UNIT_BYTES).max(1);
        u.read_half_units += match consistency {
            Consistency::Strong => 2 * units,
            Consistency::Eventual => units,
        };
        u
    }

    /// A Query (every page of it) reading `items` items at the assumed 1 KB each.
    fn query(self, items: u64, consistency: Consistency) -> Self {
        self.query_sized(items, items * ITEM_BYTES, consistency)
    }

    fn write(self, api: DynamoApi) -> Self {
        let mut u = self.request(api, 1);
        u.items_written += 1;
        u.write_units += 1;
        u
    }

    /// One PutItem.
    fn put(self) -> Self {
        self.write(DynamoApi::PutItem)
    }

    /// `n` PutItems.
    fn puts(self, n: u64) -> Self {
        let mut u = self.request(DynamoApi::PutItem, n);
        u.items_written += n;
        u.write_units += n;
        u
    }

    /// One UpdateItem.
    fn update(self) -> Self {
        self.write(DynamoApi::UpdateItem)
    }

    /// One DeleteItem.
    fn delete(self) -> Self {
        self.write(DynamoApi::DeleteItem)
    }

    /// One TransactWriteItems of `items` items (2 WRU each).
    fn transact(self, items: u64) -> Self {
        let mut u = self.request(DynamoApi::TransactWriteItems, 1);
        u.items_written += items;
        u.write_units += 2 * items;
        u
    }

    /// One TransactWriteItems of `items` items billed on `units` 1 KB units in all (2 WRU
    /// each): for an item larger than 1 KB.
    fn transact_units(self, items: u64, units: u64) -> Self {
        let mut u = self.request(DynamoApi::TransactWriteItems, 1);
        u.items_written += items;
        u.write_units += 2 * units;
        u
    }

    /// `n` TransactWriteItems of `items` items in all.
    fn transacts(self, n: u64, items: u64) -> Self {
        let mut u = self.request(DynamoApi::TransactWriteItems, n);
        u.items_written += items;
        u.write_units += 2 * items;
        u
    }

    /// BatchWriteItem calls for `items` items, 25 a call.
    fn batch_write(self, items: u64) -> Self {
        let mut u = self.request(DynamoApi::BatchWriteItem, items.div_ceil(25));
        u.items_written += items;
        u.write_units += items;
        u
    }

    /// `n` write units more (items over 1 KB).
    fn units(mut self, n: u64) -> Self {
        self.write_units += n;
        self
    }

    /// `n` global secondary index entries written (1 WRU each).
    fn index(mut self, n: u64) -> Self {
        self.index_writes += n;
        self.write_units += n;
        self
    }
}

/// What one port call handled, read by the decorator from the call's arguments and its result.
/// A failed call is seen as [`Seen::default`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Seen {
    /// Items the call returned or was given (schedules, operations, tasks, baselines,
    /// overrides, inventory targets).
    pub items: u64,
    /// Operations among them still running (each read with its counter stripes).
    pub running: u64,
    /// Task partitions (account-regions) among the returned tasks.
    pub partitions: u64,
    /// Tasks among them not final (each one's lease item read to show a change in flight).
    pub open: u64,
    /// The call found what it looked for, or changed what it meant to (a `bool` or `Some`
    /// result; for a lease, `Acquired`).
    pub found: bool,
    /// Transactions written (`finish_tasks`).
    pub transactions: u64,
    /// Index entries written (`finish_tasks`: records, and heads a first record creates).
    pub index_entries: u64,
    /// `plan_shard`: the 1 KB write units of a shard marker that lists its targets, 0 when
    /// the adapter writes a task item per target instead.
    pub listed_units: u64,
    /// `finish_tasks`: the write units of transaction items over 1 KB beyond the 2 their item
    /// counts (the records' index entries).
    pub extra_units: u64,
    /// `put_inventory`: the items the cache held before (the adapter's Query reads them).
    pub cached: u64,
    /// `put_inventory`, `get_inventory`: the bytes of the cache's items the Query read (a
    /// bucket of the cache holds many targets, so its items are not the 1 KB items the other
    /// Queries are billed as).
    pub cached_bytes: u64,
    /// `put_inventory`: the cache's marker is deleted first (its layout changes).
    pub forgotten: bool,
    /// `acquire_lease`: a baseline was saved on the target's lease item before, which marks
    /// that no baseline item of the earlier layout is left.
    pub no_legacy: bool,
    /// `acquire_lease`: a take with neither a baseline nor that mark, the first of its
    /// execution environment in its account-region, asks gsi1 whether any baseline item of
    /// the earlier layout is left there.
    pub asks_earlier: bool,
}

/// The adapter's requests for one port call, given what it handled.
pub type Model = fn(&Seen) -> DynamoUse;

fn none() -> DynamoUse {
    DynamoUse::default()
}

/// Every port method with what the adapter sends for it, in [`StoreCall::ALL`]'s order. Each
/// entry names the adapter function it follows (`mod.rs`, `operations.rs`, `targets.rs`,
/// `dead_letters.rs` under `crates/aws/src/dynamo/`). Where the result cannot tell which path
/// the adapter took, the entry says which one it counts.
pub const TABLE: [(StoreCall, Model); 61] = [
    // mod.rs `put_account` -> `put`: one unconditional PutItem.
    (StoreCall::PutAccount, |_| none().put()),
    // mod.rs `get_account` -> `get`: one consistent GetItem.
    (StoreCall::GetAccount, |_| none().get()),
    // mod.rs `list_accounts` -> `query("ACCOUNTS", ..)`: the returned accounts.
    (StoreCall::ListAccounts, |s| {
        none().query(s.items, Consistency::Strong)
    }),
    // mod.rs `delete_account` -> `delete`: one conditional DeleteItem.
    (StoreCall::DeleteAccount, |_| none().delete()),
    // mod.rs `create_schedule` -> `put_new`: one conditional PutItem, and its gsi1 (due index)
    // entry when it is enabled with a next fire (`items`: 1 then, else 0).
    (StoreCall::CreateSchedule, |s| none().put().index(s.items)),
    // mod.rs `get_schedule` -> `get`.
    (StoreCall::GetSchedule, |_| none().get()),
    // mod.rs `list_schedules` -> `query("SCHEDULES", ..)`: valid and broken items alike.
    (StoreCall::ListSchedules, |s| {
        none().query(s.items, Consistency::Strong)
    }),
    // mod.rs `delete_schedule` -> `delete`; counted with a due-index entry removed (an
    // enabled schedule's; a disabled one has none, so this is an upper bound).
    (StoreCall::DeleteSchedule, |_| none().delete().index(1)),
    // mod.rs `set_schedule_enabled`: `get_schedule`, then (found) a whole-item `put` that
    // rewrites its due-index entry.
    (StoreCall::SetScheduleEnabled, |s| {
        if s.found {
            none().get().put().index(1)
        } else {
            none().get()
        }
    }),
    // mod.rs `due_schedules`: one Query on gsi1 (eventually consistent), whose projected items
    // are the schedules. The fake's index is never stale, so the Query's items are the due
    // schedules returned; against DynamoDB a stale index can return a few more.
    (StoreCall::DueSchedules, |s| {
        none().query(s.items, Consistency::Eventual)
    }),
    // mod.rs `advance_schedule`: one conditional UpdateItem that moves the gsi1 sort key (old
    // index entry deleted, new one put).
    (StoreCall::AdvanceSchedule, |_| none().update().index(2)),
    // mod.rs `enforced_schedules`: one Query on gsi2 (eventually consistent), whose projected
    // items are the enforced schedules.
    (StoreCall::EnforcedSchedules, |s| {
        none().query(s.items, Consistency::Eventual)
    }),
    // mod.rs `create_calendar` -> `put_new` (or `put`, replacing).
    (StoreCall::CreateCalendar, |_| none().put()),
    // mod.rs `get_calendar` -> `get`.
    (StoreCall::GetCalendar, |_| none().get()),
    // mod.rs `list_calendars` -> `query("CALENDARS", ..)`.
    (StoreCall::ListCalendars, |s| {
        none().query(s.items, Consistency::Strong)
    }),
    // mod.rs `delete_calendar` -> `delete`.
    (StoreCall::DeleteCalendar, |_| none().delete()),
    // operations.rs `create_operation` -> `put_new`, with its gsi2 (operations list) entry.
    (StoreCall::CreateOperation, |_| none().put().index(1)),
    // operations.rs `get_operation` -> `read_operation`: GetItem of the operation, and for a
    // running one `with_task_counts`' BatchGetItem of its 32 counter stripes.
    (StoreCall::GetOperation, |s| {
        none().get().batch_get(STRIPES * s.running)
    }),
    // operations.rs `list_operations_page`: one Query page on gsi2, then `with_task_counts`
    // for each running operation on it.
    (StoreCall::ListOperationsPage, |s| {
        let mut u = none().query(s.items, Consistency::Eventual);
        for _ in 0..s.running {
            u = u.batch_get(STRIPES);
        }
        u
    }),
    // operations.rs `fix_shards`: a conditional PutItem of the shard set, then a conditional
    // UpdateItem of the operation item (rewriting its gsi2 entry). Counted as the first
    // delivery; a redelivery also reads the stored set back (one more GetItem).
    (StoreCall::FixShards, |_| none().put().update().index(1)),
    // operations.rs `shard_planned` -> `get` of the shard marker.
    (StoreCall::ShardPlanned, |_| none().get()),
    // operations.rs `plan_shard`: one transaction of the shard marker's Put and the operation
    // item's Update (its gsi2 entry rewritten). The marker (`shard_marker`) lists the targets
    // while their keys fit, billed on its size (`listed_units`); a shard too large for that
    // first writes one conditional PutItem per task (`items`).
    (StoreCall::PlanShard, |s| {
        if s.listed_units > 0 {
            none().transact_units(2, s.listed_units + 1).index(1)
        } else {
            none().puts(s.items).transact(2).index(1)
        }
    }),
    // operations.rs `plan_part`: one transaction of the part's Put, the operation item's
    // Update (the part count; its gsi2 entry rewritten) and a ConditionCheck of the shard's
    // marker. The part lists its targets as a marker does (`listed_units`); one too large for
    // that first writes a conditional PutItem per task (`items`).
    (StoreCall::PlanPart, |s| {
        if s.listed_units > 0 {
            none().transact_units(3, s.listed_units + 2).index(1)
        } else {
            none().puts(s.items).transact(3).index(1)
        }
    }),
    // operations.rs `shard_parts`: a Query of the shard's part items, then one of its task
    // partition; counted as the tasks returned (a lower bound, like `unfinished_tasks`).
    (StoreCall::ShardParts, |s| {
        none()
            .query(s.items, Consistency::Strong)
            .query(s.items, Consistency::Strong)
    }),
    // operations.rs `unfinished_tasks` -> `query` of the shard's task partition, filtered
    // after reading: counted as the tasks returned, a lower bound (the partition's finished
    // tasks are read too).
    (StoreCall::UnfinishedTasks, |s| {
        none().get().query(s.items, Consistency::Strong)
    }),
    // operations.rs `list_tasks`: a Query of the operation's shard markers (one per task
    // partition seen), then a Query of each partition, then `show_changes_in_flight`: a
    // BatchGetItem of the lease items of up to 100 open tasks at a time.
    (StoreCall::ListTasks, |s| {
        let mut u = none().query(s.partitions, Consistency::Strong);
        let per_partition = s.items / s.partitions.max(1);
        for p in 0..s.partitions {
            let extra = u64::from(p < s.items % s.partitions.max(1));
            u = u.query(per_partition + extra, Consistency::Strong);
        }
        for batch in 0..s.open.div_ceil(100) {
            u = u.batch_get((s.open - batch * 100).min(100));
        }
        u
    }),
    // operations.rs `get_task` -> `get`.
    (StoreCall::GetTask, |_| none().get()),
    // operations.rs `mark_interrupted`: one conditional UpdateItem of the task.
    (StoreCall::MarkInterrupted, |_| none().update()),
    // operations.rs `finish_task` -> `transact`: the task's Update and its counter stripe's.
    (StoreCall::FinishTask, |_| none().transact(2)),
    // operations.rs `finish_task_recorded` -> trail.rs `finish_and_append`: one transaction
    // of the task, its counter stripe, the record and the head; the record's gsi2 entry when
    // it lands, and the head's gsi3 entry when it creates the head (`items` 1).
    (StoreCall::FinishTaskRecorded, |s| {
        none().transact(4).index(u64::from(s.found) + s.items)
    }),
    // finishing.rs `finish_ends`: its transactions (`transactions`) of `items` items in all,
    // each a task's final state, a change's record and head, an operation's counter stripe,
    // and the records' one index entry (`records_index`, billed on its size: `extra_units`
    // in the transaction, its units in gsi2); the heads' gsi3 entries when a record creates
    // its chain (`index_entries`). A try cancelled by a condition is counted as not sent.
    (StoreCall::FinishTasks, |s| {
        none()
            .transacts(s.transactions, s.items)
            .units(s.extra_units)
            .index(s.index_entries)
    }),
    // dead_letters.rs `dead_letter`: one transaction of the lease's ConditionCheck, the task's
    // Update and the stripe's.
    (StoreCall::DeadLetterTask, |_| none().transact(3)),
    // dead_letters.rs `reopen`: one transaction of the task, the stripe and the operation item
    // (its gsi2 entry rewritten).
    (StoreCall::ReopenTask, |_| none().transact(3).index(1)),
    // operations.rs `finalize_operation`: `read_operation` (GetItem, and the stripes'
    // BatchGetItem while running), then, when every task is final, a conditional UpdateItem
    // settling it (its gsi2 entry rewritten). `found` (a status returned) is counted as the
    // settling path, `running` as the read of a running operation; a lost race (another worker
    // settled it first: one more GetItem) is not told apart.
    (StoreCall::FinalizeOperation, |s| {
        let u = none().get().batch_get(STRIPES * s.running);
        if s.found {
            u.update().index(1)
        } else {
            u
        }
    }),
    // baselines.rs `read_baseline` -> `batch_get` of the lease item and the earlier layout's
    // baseline item (each key billed, found or not).
    (StoreCall::GetBaseline, |_| none().batch_get(2)),
    // baselines.rs `write_baseline`: one conditional UpdateItem of the lease item, which adds
    // its gsi3 (asleep index) entry; refused, a GetItem of the lease to say why.
    (StoreCall::SaveBaseline, |s| {
        if s.found {
            none().update().index(1)
        } else {
            none().update().get()
        }
    }),
    // baselines.rs `remove_baseline`: one conditional UpdateItem of the lease item, which
    // removes its gsi3 entry; refused, a GetItem of the lease and the fenced delete of a
    // baseline item of the earlier layout (ConditionCheck and Delete).
    (StoreCall::RetireBaseline, |s| {
        if s.found {
            none().update().index(1)
        } else {
            none().update().get().transact(2)
        }
    }),
    // baselines.rs `baselines_asleep`: a Query on gsi3 and one on gsi1 for baseline items of
    // the earlier layout (counted empty), both eventually consistent.
    (StoreCall::AsleepBaselines, |s| {
        none()
            .query(s.items, Consistency::Eventual)
            .query(0, Consistency::Eventual)
    }),
    // targets.rs `get_cluster_hold` -> `get`.
    (StoreCall::GetClusterHold, |_| none().get()),
    // targets.rs `put_cluster_hold` -> `fenced(Mark::Keep)`: ConditionCheck and Put.
    (StoreCall::PutClusterHold, |_| none().transact(2)),
    // targets.rs `acquire_lease`: one conditional UpdateItem returning the lease item as it
    // was; refused (`Held` or `Superseded`, not `found`), a GetItem of the lease to say why.
    // Taken with no baseline on the lease item (`items` 0), `baseline_taken` reads the earlier
    // layout's baseline item unless a baseline was saved on the lease item before
    // (`no_legacy`: its mark says none is left) or the account-region holds none: the take
    // that first meets it in an execution environment Queries gsi1 for one key (`asks_earlier`;
    // `EarlierBaselines` in `baselines.rs`), and the simulated fleets have none, so no take
    // reads that GetItem. A baseline returned (`items` 1) is counted as the lease item's.
    (StoreCall::AcquireLease, |s| {
        if !s.found {
            none().update().get()
        } else if s.asks_earlier {
            none().update().query(0, Consistency::Eventual)
        } else {
            none().update()
        }
    }),
    // targets.rs `mark_in_flight`: one conditional UpdateItem of the lease item.
    (StoreCall::MarkInFlight, |_| none().update()),
    // targets.rs `record_update`: one conditional UpdateItem of the lease item.
    (StoreCall::RecordUpdate, |_| none().update()),
    // targets.rs `change_in_flight` -> `get`: one consistent GetItem of the lease item.
    (StoreCall::ChangeInFlight, |_| none().get()),
    // targets.rs `release_lease`: one conditional UpdateItem.
    (StoreCall::ReleaseLease, |_| none().update()),
    // targets.rs `put_override` -> `put`.
    (StoreCall::PutOverride, |_| none().put()),
    // targets.rs `active_overrides` -> `query("OVERRIDES", "")`, filtered after reading:
    // counted as the active overrides returned, a lower bound (expired ones are read too).
    (StoreCall::ActiveOverrides, |s| {
        none().query(s.items, Consistency::Strong)
    }),
    // targets.rs `remove_override` -> `delete`.
    (StoreCall::RemoveOverride, |_| none().delete()),
    // targets.rs `put_inventory`: a Query of the partition (the cache's buckets before,
    // `cached` items of `cached_bytes`), a DeleteItem of the META marker if the layout changes
    // (`forgotten`), BatchWriteItem of the buckets new or changed and of deletes for buckets
    // left empty (`items`; a bucket over 1 KB bills its size, `extra_units`), and a PutItem of
    // the marker.
    (StoreCall::PutInventory, |s| {
        let forget = if s.forgotten { none().delete() } else { none() };
        forget
            .query_sized(s.cached, s.cached_bytes, Consistency::Strong)
            .batch_write(s.items)
            .units(s.extra_units)
            .put()
    }),
    // targets.rs `invalidate_inventory` -> `delete` of the META marker.
    (StoreCall::InvalidateInventory, |_| none().delete()),
    // targets.rs `get_inventory` -> `query` of the whole partition: the buckets holding the
    // targets returned (`items`, `cached_bytes`) and the META marker (`found`).
    (StoreCall::GetInventory, |s| {
        none().query_sized(
            s.items + u64::from(s.found),
            s.cached_bytes,
            Consistency::Strong,
        )
    }),
    // trail.rs `audit_head` -> `get` of the chain's HEAD item.
    (StoreCall::AuditHead, |_| none().get()),
    // trail.rs `append_audit`: a transaction of three Puts: the record with its gsi2 entry (by
    // day), the head, and the change's mark (in no index). The head's gsi3 entry holds keys
    // only, so it is written when the chain's first append creates the head (`items` 1) and
    // never again.
    (StoreCall::AppendAudit, |s| {
        none().transact(3).index(1 + s.items)
    }),
    // trail.rs `change_recorded` -> `get` of the change's mark.
    (StoreCall::ChangeRecorded, |_| none().get()),
    // trail.rs `audit_heads`: a gsi3 Query per bucket for the heads' keys, a consistent
    // BatchGetItem of the heads, and a gsi1 Query per bucket for heads of the earlier layout
    // (counted empty).
    (StoreCall::AuditHeads, |s| {
        let keys = none().query(s.items, Consistency::Eventual);
        let heads = if s.items > 0 {
            keys.batch_get(s.items)
        } else {
            keys
        };
        heads.query(0, Consistency::Eventual)
    }),
    // trail.rs `audit_chain` -> `query` of the chain's partition: the records returned.
    (StoreCall::AuditChain, |s| {
        none().query(s.items, Consistency::Strong)
    }),
    // trail.rs `audit_between`: gsi2 Queries per day and bucket: the records returned.
    (StoreCall::AuditBetween, |s| {
        none().query(s.items, Consistency::Eventual)
    }),
    // dynamo/health.rs `record_poller_tick` -> `put`: the heartbeat item, replaced each tick.
    (StoreCall::RecordPollerTick, |_| none().put()),
    // dynamo/health.rs `poller_tick` -> `get`.
    (StoreCall::PollerTick, |_| none().get()),
    // dynamo/health.rs `record_account_contact` -> `put`.
    (StoreCall::RecordAccountContact, |_| none().put()),
    // dynamo/health.rs `account_contacts` -> `query("HEALTH", "CONTACT#")`.
    (StoreCall::AccountContacts, |s| {
        none().query(s.items, Consistency::Strong)
    }),
];

/// What the adapter sends for `call` having handled `seen`.
pub fn dynamo_use(call: StoreCall, seen: &Seen) -> DynamoUse {
    (TABLE[call as usize].1)(seen)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_store_call_has_exactly_one_entry_in_its_own_slot() {
        assert_eq!(TABLE.len(), StoreCall::ALL.len());
        for (i, (call, _)) in TABLE.iter().enumerate() {
            assert_eq!(
                *call,
                StoreCall::ALL[i],
                "entry {i} maps {} where {} belongs",
                call.name(),
                StoreCall::ALL[i].name()
            );
        }
    }

    #[test]
    fn store_call_all_lists_every_method_of_the_ports() {
        // A method added to StoreCall after the last one gets the next discriminant: ALL (and
        // so TABLE, checked above) must then grow to cover it.
        assert_eq!(
            StoreCall::AccountContacts as usize + 1,
            StoreCall::ALL.len()
        );
        let names: std::collections::BTreeSet<_> =
            StoreCall::ALL.iter().map(|c| c.name()).collect();
        assert_eq!(names.len(), StoreCall::ALL.len());
    }

    #[test]
    fn a_two_item_transaction_writes_two_items_at_double_units() {
        let u = dynamo_use(StoreCall::FinishTask, &Seen::default());
        assert_eq!(u.requests(DynamoApi::TransactWriteItems), 1);
        assert_eq!((u.items_written, u.write_units), (2, 4));
    }

    #[test]
    fn planning_a_listed_shard_writes_only_its_marker_billed_on_its_size_and_the_operation() {
        let seen = Seen {
            items: 50,
            listed_units: 2,
            ..Seen::default()
        };
        let u = dynamo_use(StoreCall::PlanShard, &seen);
        assert_eq!(u.requests(DynamoApi::PutItem), 0, "no task item");
        assert_eq!(u.requests(DynamoApi::TransactWriteItems), 1);
        assert_eq!(u.items_written, 2);
        assert_eq!(
            u.write_units,
            2 * (2 + 1) + 1,
            "marker, operation, gsi2 entry"
        );
    }

    #[test]
    fn planning_a_shard_too_large_to_list_writes_one_item_per_task_and_a_two_item_transaction() {
        let seen = Seen {
            items: 30,
            ..Seen::default()
        };
        let u = dynamo_use(StoreCall::PlanShard, &seen);
        assert_eq!(u.requests(DynamoApi::PutItem), 30);
        assert_eq!(u.requests(DynamoApi::TransactWriteItems), 1);
        assert_eq!(u.items_written, 32);
        assert_eq!(u.write_units, 30 + 4 + 1, "puts, transaction, gsi2 entry");
    }

    #[test]
    fn a_query_reads_its_items_and_is_billed_on_their_summed_size() {
        let ten = Seen {
            items: 10,
            ..Seen::default()
        };
        let u = dynamo_use(StoreCall::ListAccounts, &ten);
        assert_eq!((u.requests(DynamoApi::Query), u.items_read), (1, 10));
        assert_eq!(
            u.read_units(),
            3.0,
            "10 KB in 4 KB units, strongly consistent"
        );
        let due = dynamo_use(StoreCall::DueSchedules, &ten);
        assert_eq!(due.requests(DynamoApi::GetItem), 0);
        assert_eq!(due.items_read, 10, "the index's items are the schedules");
        assert_eq!(due.read_units(), 1.5);
        let empty = dynamo_use(StoreCall::ListAccounts, &Seen::default());
        assert_eq!((empty.items_read, empty.read_units()), (0, 1.0));
    }

    #[test]
    fn reading_a_running_operation_also_reads_its_counter_stripes() {
        let running = Seen {
            running: 1,
            found: true,
            ..Seen::default()
        };
        let u = dynamo_use(StoreCall::GetOperation, &running);
        assert_eq!(u.requests(DynamoApi::BatchGetItem), 1);
        assert_eq!(u.items_read, 1 + STRIPES);
        let settled = dynamo_use(StoreCall::GetOperation, &Seen::default());
        assert_eq!(settled.items_read, 1);
    }

    #[test]
    fn a_refused_lease_is_read_back_to_say_why_and_a_take_reads_no_baseline_but_its_items() {
        let refused = dynamo_use(StoreCall::AcquireLease, &Seen::default());
        assert_eq!(refused.total_requests(), 2);
        let first = dynamo_use(
            StoreCall::AcquireLease,
            &Seen {
                found: true,
                asks_earlier: true,
                ..Seen::default()
            },
        );
        assert_eq!(
            (first.requests(DynamoApi::Query), first.total_requests()),
            (1, 2),
            "the first take of an environment in an account-region asks gsi1 for earlier baselines"
        );
        assert_eq!(first.read_units(), 0.5);
        let taken = dynamo_use(
            StoreCall::AcquireLease,
            &Seen {
                found: true,
                ..Seen::default()
            },
        );
        assert_eq!(taken.total_requests(), 1, "later takes there ask nothing");
        let carried = dynamo_use(
            StoreCall::AcquireLease,
            &Seen {
                found: true,
                items: 1,
                ..Seen::default()
            },
        );
        assert_eq!(carried.total_requests(), 1);
        assert_eq!(carried.read_units(), 0.0);
    }

    #[test]
    fn uses_add_and_subtract_field_by_field() {
        let saved = Seen {
            found: true,
            ..Seen::default()
        };
        let a = dynamo_use(StoreCall::SaveBaseline, &saved);
        let b = dynamo_use(StoreCall::GetBaseline, &Seen::default());
        let sum = a.add(&b);
        assert_eq!(sum.total_requests(), 2);
        assert_eq!(sum.since(&b), a);
        assert_eq!(DynamoUse::from_array(sum.to_array()), sum);
    }
}
