//! [`MemoryQueue`]: a queue in memory, with SQS's receive counts and redrive policy.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;

use crate::ports::{DeadLetter, DeadLetterQueue, PortResult, Queue};
use crate::service::Delivery;

use super::lock;

#[derive(Clone, Debug)]
struct Stored {
    id: u64,
    body: String,
    receives: u32,
    /// The tenant it was sent as ([`Queue::send_as`]), if any.
    tenant: Option<String>,
}

impl Stored {
    fn message_id(&self) -> String {
        format!("q{}", self.id)
    }
}

#[derive(Debug, Default)]
struct Messages {
    next_id: u64,
    queued: VecDeque<Stored>,
    /// Received and neither deleted nor returned, by message id.
    in_flight: BTreeMap<String, Stored>,
}

/// A queue in memory: `send` appends; [`MemoryQueue::receive_all`] hands every message out
/// counting its receives (and, with [`MemoryQueue::set_dead_letters`], moves a message that
/// had its last receive to the dead-letter queue, as SQS's redrive policy does);
/// [`MemoryQueue::take_all`] empties it without counting. As a dead-letter queue it
/// implements [`DeadLetterQueue`].
#[derive(Debug, Default)]
pub struct MemoryQueue {
    messages: Mutex<Messages>,
    dead_letters: Mutex<Option<(Arc<MemoryQueue>, u32)>>,
}

impl MemoryQueue {
    /// An empty queue.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sends a message that has had its `max_receives`-th receive to `dlq` the next time it
    /// would be received (SQS's `maxReceiveCount`).
    pub fn set_dead_letters(&self, dlq: Arc<MemoryQueue>, max_receives: u32) {
        *lock(&self.dead_letters) = Some((dlq, max_receives));
    }

    fn push(&self, body: String, receives: u32, tenant: Option<&str>) {
        let mut messages = lock(&self.messages);
        messages.next_id += 1;
        let id = messages.next_id;
        messages.queued.push_back(Stored {
            id,
            body,
            receives,
            tenant: tenant.map(str::to_string),
        });
    }

    /// Removes and returns every queued message with the tenant it was sent as, oldest first,
    /// without counting a receive (for a model of SQS fair queues, which deliver by tenant).
    pub fn take_all_with_tenants(&self) -> Vec<(Option<String>, String)> {
        lock(&self.messages)
            .queued
            .drain(..)
            .map(|m| (m.tenant, m.body))
            .collect()
    }

    /// Removes and returns up to `n` queued bodies, oldest first, without counting a receive
    /// (one receive of an event source mapping: SQS hands out at most 10).
    pub fn take(&self, n: usize) -> Vec<String> {
        let mut messages = lock(&self.messages);
        let n = n.min(messages.queued.len());
        messages.queued.drain(..n).map(|m| m.body).collect()
    }

    /// Removes and returns up to `n` queued bodies chosen by `pick` (given how many are queued,
    /// it returns the index of the next one to take), without counting a receive: a standard
    /// SQS queue's receive, which samples its partitions instead of keeping strict order.
    pub fn take_with(&self, n: usize, mut pick: impl FnMut(usize) -> usize) -> Vec<String> {
        let mut messages = lock(&self.messages);
        let mut taken = Vec::new();
        while taken.len() < n && !messages.queued.is_empty() {
            let i = pick(messages.queued.len()) % messages.queued.len();
            let stored = messages
                .queued
                .swap_remove_back(i)
                .expect("the index is in range");
            taken.push(stored.body);
        }
        taken
    }

    /// Removes and returns every queued body, oldest first, without counting a receive.
    pub fn take_all(&self) -> Vec<String> {
        lock(&self.messages)
            .queued
            .drain(..)
            .map(|m| m.body)
            .collect()
    }

    /// Receives every queued message, oldest first: each one's receive count goes up by one
    /// and it is held until [`MemoryQueue::delete`] or [`MemoryQueue::retry`]. A message that
    /// already had its last receive goes to the dead-letter queue instead.
    pub fn receive_all(&self) -> Vec<Delivery> {
        let dead_letters = lock(&self.dead_letters).clone();
        let mut expired = Vec::new();
        let mut received = Vec::new();
        {
            let mut messages = lock(&self.messages);
            let queued: Vec<Stored> = messages.queued.drain(..).collect();
            for mut message in queued {
                match &dead_letters {
                    Some((_, max)) if message.receives >= *max => expired.push(message),
                    _ => {
                        message.receives += 1;
                        received.push(Delivery {
                            message_id: message.message_id(),
                            body: message.body.clone(),
                            receive_count: message.receives,
                            trace_header: None,
                        });
                        messages.in_flight.insert(message.message_id(), message);
                    }
                }
            }
        }
        if let Some((dlq, _)) = dead_letters {
            for message in expired {
                dlq.push(message.body, message.receives, message.tenant.as_deref());
            }
        }
        received
    }

    /// Puts a received message back on the queue (a failed batch item), its receives kept.
    pub fn retry(&self, message_id: &str) {
        let mut messages = lock(&self.messages);
        if let Some(message) = messages.in_flight.remove(message_id) {
            messages.queued.push_back(message);
        }
    }

    /// Deletes a received message.
    pub fn delete(&self, message_id: &str) {
        lock(&self.messages).in_flight.remove(message_id);
    }

    /// Bodies queued or held by a receiver.
    pub fn len(&self) -> usize {
        let messages = lock(&self.messages);
        messages.queued.len() + messages.in_flight.len()
    }

    /// True when nothing is queued or held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn letter(message: &Stored) -> DeadLetter {
        DeadLetter {
            message_id: message.message_id(),
            receipt: message.message_id(),
            body: message.body.clone(),
            receive_count: message.receives,
        }
    }
}

#[async_trait]
impl Queue for MemoryQueue {
    async fn send(&self, bodies: &[String]) -> PortResult<()> {
        for body in bodies {
            self.push(body.clone(), 0, None);
        }
        Ok(())
    }

    async fn send_as(&self, tenant: &str, bodies: &[String]) -> PortResult<()> {
        for body in bodies {
            self.push(body.clone(), 0, Some(tenant));
        }
        Ok(())
    }
}

#[async_trait]
impl DeadLetterQueue for MemoryQueue {
    async fn peek(&self, limit: usize) -> PortResult<Vec<DeadLetter>> {
        Ok(lock(&self.messages)
            .queued
            .iter()
            .take(limit)
            .map(Self::letter)
            .collect())
    }

    async fn receive(&self) -> PortResult<Vec<DeadLetter>> {
        let mut messages = lock(&self.messages);
        let take = messages.queued.len().min(10);
        let batch: Vec<Stored> = messages.queued.drain(..take).collect();
        let mut letters = Vec::new();
        for mut message in batch {
            message.receives += 1;
            letters.push(Self::letter(&message));
            messages.in_flight.insert(message.message_id(), message);
        }
        Ok(letters)
    }

    async fn delete(&self, letters: &[DeadLetter]) -> PortResult<()> {
        for letter in letters {
            MemoryQueue::delete(self, &letter.receipt);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_message_past_its_last_receive_moves_to_the_dead_letter_queue() {
        let queue = MemoryQueue::new();
        let dlq = Arc::new(MemoryQueue::new());
        queue.set_dead_letters(dlq.clone(), 2);
        queue.send(&["task".to_string()]).await.unwrap();
        for expected in 1..=2 {
            let received = queue.receive_all();
            assert_eq!(received.len(), 1);
            assert_eq!(received[0].receive_count, expected);
            queue.retry(&received[0].message_id);
        }
        assert!(queue.receive_all().is_empty());
        assert!(queue.is_empty());
        let letters = dlq.peek(10).await.unwrap();
        assert_eq!(letters.len(), 1);
        assert_eq!(
            (letters[0].body.as_str(), letters[0].receive_count),
            ("task", 2)
        );
    }
}
