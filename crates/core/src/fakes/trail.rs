//! The audit chains of [`MemoryStore`], with the DynamoDB store's append condition.

use std::collections::{BTreeMap, BTreeSet};

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::ports::PortResult;
use crate::trail::{Append, AuditLog, AuditRecord, ChainHead, Link};

use super::{lock, MemoryStore};

/// One chain: its head and its records with their times.
#[derive(Default)]
struct Chain {
    head: Option<ChainHead>,
    records: Vec<(DateTime<Utc>, AuditRecord)>,
    /// The changes recorded (each append's key).
    changes: BTreeSet<String>,
}

/// Every chain, by name.
#[derive(Default)]
pub(super) struct Chains(BTreeMap<String, Chain>);

impl Chains {
    /// The place of `chain`'s last record (0: empty), what an append is conditioned on.
    pub(super) fn head_seq(&self, chain: &str) -> u64 {
        self.0
            .get(chain)
            .and_then(|c| c.head.as_ref())
            .map_or(0, |h| h.seq)
    }

    /// Appends `link` as `finish_task_recorded` does: no mark of the change (its task's final
    /// state is the record of it).
    pub(super) fn push(&mut self, link: &Link, at: DateTime<Utc>) {
        let chain = self.0.entry(link.head.chain.clone()).or_default();
        chain.head = Some(link.head.clone());
        chain.records.push((at, link.record.clone()));
    }
}

#[async_trait]
impl AuditLog for MemoryStore {
    async fn audit_head(&self, chain: &str) -> PortResult<Option<ChainHead>> {
        Ok(lock(&self.trail).0.get(chain).and_then(|c| c.head.clone()))
    }

    async fn append_audit(
        &self,
        link: &Link,
        expected: u64,
        at: DateTime<Utc>,
    ) -> PortResult<Append> {
        let mut chains = lock(&self.trail);
        let chain = chains.0.entry(link.head.chain.clone()).or_default();
        if chain.changes.contains(&link.head.last_key) {
            return Ok(Append::AlreadyRecorded);
        }
        if chain.head.as_ref().map_or(0, |h| h.seq) != expected {
            return Ok(Append::HeadMoved);
        }
        chain.head = Some(link.head.clone());
        chain.records.push((at, link.record.clone()));
        chain.changes.insert(link.head.last_key.clone());
        Ok(Append::Appended)
    }

    async fn change_recorded(&self, chain: &str, key_of_change: &str) -> PortResult<bool> {
        Ok(lock(&self.trail)
            .0
            .get(chain)
            .is_some_and(|c| c.changes.contains(key_of_change)))
    }

    async fn audit_heads(&self) -> PortResult<Vec<ChainHead>> {
        Ok(lock(&self.trail)
            .0
            .values()
            .filter_map(|c| c.head.clone())
            .collect())
    }

    async fn audit_chain(&self, chain: &str) -> PortResult<Vec<AuditRecord>> {
        Ok(lock(&self.trail)
            .0
            .get(chain)
            .map(|c| c.records.iter().map(|(_, r)| r.clone()).collect())
            .unwrap_or_default())
    }

    async fn audit_between(
        &self,
        since: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> PortResult<Vec<AuditRecord>> {
        let chains = lock(&self.trail);
        let mut found: Vec<(DateTime<Utc>, AuditRecord)> = chains
            .0
            .values()
            .flat_map(|c| c.records.iter())
            .filter(|(at, _)| (since..=until).contains(at))
            .cloned()
            .collect();
        found.sort_by(|a, b| (a.0, &a.1.chain, a.1.seq).cmp(&(b.0, &b.1.chain, b.1.seq)));
        Ok(found.into_iter().map(|(_, r)| r).collect())
    }
}
