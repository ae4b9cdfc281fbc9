//! [`MemoryQueue`]: a queue in memory.

use std::collections::VecDeque;
use std::sync::Mutex;

use async_trait::async_trait;

use crate::ports::{PortResult, Queue};

use super::lock;

/// A queue in memory: `send` appends, [`MemoryQueue::take_all`] empties it.
#[derive(Debug, Default)]
pub struct MemoryQueue {
    pub(super) bodies: Mutex<VecDeque<String>>,
}

impl MemoryQueue {
    /// An empty queue.
    pub fn new() -> Self {
        Self::default()
    }

    /// Removes and returns every body, oldest first.
    pub fn take_all(&self) -> Vec<String> {
        lock(&self.bodies).drain(..).collect()
    }

    /// How many bodies are waiting.
    pub fn len(&self) -> usize {
        lock(&self.bodies).len()
    }

    /// True when nothing is waiting.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[async_trait]
impl Queue for MemoryQueue {
    async fn send(&self, bodies: &[String]) -> PortResult<()> {
        lock(&self.bodies).extend(bodies.iter().cloned());
        Ok(())
    }
}
