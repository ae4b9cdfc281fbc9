//! An in-memory notifier and record of sent notices.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::lock;
use crate::notice::{Notice, Notifier, SentNotices};
use crate::ports::{ErrorKind, PortError, PortResult};

/// Keeps every notice published, in order; can be told to fail every publish.
#[derive(Debug, Default)]
pub struct MemoryNotifier {
    published: Mutex<Vec<Notice>>,
    failing: AtomicBool,
}

impl MemoryNotifier {
    /// An empty notifier.
    pub fn new() -> Self {
        Self::default()
    }

    /// Every notice published so far.
    pub fn published(&self) -> Vec<Notice> {
        lock(&self.published).clone()
    }

    /// From now on every publish fails (as SNS does when the topic is gone or denied).
    pub fn fail_every_publish(&self) {
        self.failing.store(true, Ordering::SeqCst);
    }
}

#[async_trait]
impl Notifier for MemoryNotifier {
    async fn publish(&self, notice: &Notice) -> PortResult<()> {
        if self.failing.load(Ordering::SeqCst) {
            return Err(PortError::new(
                ErrorKind::AccessDenied,
                "publishing a notice: AuthorizationError (injected)",
            ));
        }
        lock(&self.published).push(notice.clone());
        Ok(())
    }
}

/// The keys of the notices sent, with put-if-absent semantics like the table's.
#[derive(Debug, Default)]
pub struct MemorySentNotices {
    keys: Mutex<BTreeSet<String>>,
}

impl MemorySentNotices {
    /// Nothing sent yet.
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl SentNotices for MemorySentNotices {
    async fn first_send(&self, key: &str, _now: DateTime<Utc>) -> PortResult<bool> {
        Ok(lock(&self.keys).insert(key.to_string()))
    }
}
