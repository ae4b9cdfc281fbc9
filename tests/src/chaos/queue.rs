//! A queue with SQS's delivery semantics in virtual time: at-least-once (a send may store a
//! message twice, a delete may be lost), messages received in any order with their receive
//! counts, hidden for the visibility timeout while a consumer works them and delivered again
//! afterwards unless deleted. It has no dead-letter queue: the run's `task_max_receives` is
//! set above any count a message reaches, so no task is given up.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};
use curfew_core::clock::{Clock, ManualClock};
use curfew_core::ports::{PortResult, Queue};
use curfew_core::service::Delivery;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;

use super::faults::Faults;

struct Message {
    id: u64,
    body: String,
    visible_at: DateTime<Utc>,
    receives: u32,
}

#[derive(Default)]
struct Messages {
    next_id: u64,
    stored: Vec<Message>,
}

/// One queue (router or task) in virtual time.
pub struct ChaosQueue {
    name: &'static str,
    faults: Arc<Faults>,
    clock: Arc<ManualClock>,
    visibility: Duration,
    messages: Mutex<Messages>,
}

impl ChaosQueue {
    /// An empty queue whose received messages stay hidden for `visibility`.
    pub fn new(
        name: &'static str,
        faults: Arc<Faults>,
        clock: Arc<ManualClock>,
        visibility: Duration,
    ) -> Self {
        ChaosQueue {
            name,
            faults,
            clock,
            visibility,
            messages: Mutex::new(Messages::default()),
        }
    }

    fn push(&self, body: &str) {
        let mut messages = self.messages.lock().expect("queue lock");
        messages.next_id += 1;
        let id = messages.next_id;
        messages.stored.push(Message {
            id,
            body: body.to_string(),
            visible_at: self.clock.now(),
            receives: 0,
        });
    }

    /// Receives up to `max` visible messages in random order, hiding them for the visibility
    /// timeout. Each comes with its receipt id (as its message id) and its receive count.
    pub fn receive(&self, max: usize, rng: &mut StdRng) -> Vec<Delivery> {
        let now = self.clock.now();
        let mut messages = self.messages.lock().expect("queue lock");
        let mut visible: Vec<usize> = (0..messages.stored.len())
            .filter(|&i| messages.stored[i].visible_at <= now)
            .collect();
        visible.shuffle(rng);
        visible.truncate(max);
        visible
            .into_iter()
            .map(|i| {
                let message = &mut messages.stored[i];
                message.visible_at = now + self.visibility;
                message.receives += 1;
                Delivery {
                    message_id: format!("{}-{}", self.name, message.id),
                    body: message.body.clone(),
                    receive_count: message.receives,
                    trace_header: None,
                }
            })
            .collect()
    }

    /// Deletes a received message by its receipt id.
    pub fn delete(&self, receipt: &str) {
        let Some(id) = receipt
            .rsplit('-')
            .next()
            .and_then(|id| id.parse::<u64>().ok())
        else {
            return;
        };
        self.messages
            .lock()
            .expect("queue lock")
            .stored
            .retain(|m| m.id != id);
    }

    /// Messages stored (visible or not).
    pub fn len(&self) -> usize {
        self.messages.lock().expect("queue lock").stored.len()
    }

    /// True when no message is stored.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Messages that can be received now.
    pub fn visible(&self) -> usize {
        let now = self.clock.now();
        self.messages
            .lock()
            .expect("queue lock")
            .stored
            .iter()
            .filter(|m| m.visible_at <= now)
            .count()
    }
}

#[async_trait]
impl Queue for ChaosQueue {
    async fn send(&self, bodies: &[String]) -> PortResult<()> {
        self.faults.before("send").await?;
        for body in bodies {
            self.push(body);
            if self.faults.duplicate() {
                self.push(body);
            }
        }
        self.faults.after("send").await
    }
}
