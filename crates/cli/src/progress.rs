//! Progress bars over operations (on stderr; indicatif draws nothing when stderr is not a
//! terminal, so scripts see only their output).

use std::future::Future;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};
use curfew_core::operation::Operation;
use curfew_core::ports::StateStore;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

const POLL: Duration = Duration::from_millis(400);

/// A bar for one operation.
pub fn bar(label: &str) -> ProgressBar {
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template("{spinner} {prefix} [{bar:30}] {pos}/{len} tasks {msg}")
            .expect("a valid progress template")
            .progress_chars("=> "),
    );
    bar.set_prefix(label.to_string());
    bar.enable_steady_tick(Duration::from_millis(120));
    bar
}

/// Shows `op`'s task counts and status on `bar`.
pub fn show(bar: &ProgressBar, op: &Operation) {
    let c = op.counts;
    bar.set_length(c.total);
    bar.set_position(c.done());
    let mut msg = op.status.to_string();
    if c.failed > 0 {
        msg.push_str(&format!(" ({} failed)", c.failed));
    }
    if c.dead_lettered > 0 {
        msg.push_str(&format!(" ({} dead-lettered)", c.dead_lettered));
    }
    bar.set_message(msg);
}

/// Reads an operation, failing if it does not exist.
pub async fn load(store: &dyn StateStore, op_id: &str) -> Result<Operation> {
    store
        .get_operation(op_id)
        .await
        .with_context(|| format!("reading operation {op_id}"))?
        .ok_or_else(|| anyhow!("no operation {op_id:?}"))
}

/// Polls `op_id` until it is final (or `timeout` passes), showing it on `bar`.
pub async fn watch(
    store: &dyn StateStore,
    op_id: &str,
    bar: &ProgressBar,
    timeout: Duration,
) -> Result<Operation> {
    // A timeout too long to add to the clock is as good as none.
    let deadline = Instant::now().checked_add(timeout);
    loop {
        let op = load(store, op_id).await?;
        show(bar, &op);
        if op.status.is_final() {
            return Ok(op);
        }
        if deadline.is_some_and(|deadline| Instant::now() >= deadline) {
            return Err(anyhow!(
                "operation {op_id} is still {} after {}s (see `curfew ops show {op_id}`)",
                op.status,
                timeout.as_secs()
            ));
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Runs `work` (the local dispatcher draining the queues) while a bar follows `op_id`.
pub async fn while_running<T>(
    store: &dyn StateStore,
    op_id: &str,
    bar: &ProgressBar,
    work: impl Future<Output = T>,
) -> T {
    let follow = async {
        loop {
            if let Ok(Some(op)) = store.get_operation(op_id).await {
                show(bar, &op);
            }
            tokio::time::sleep(POLL).await;
        }
    };
    tokio::select! {
        result = work => result,
        _ = follow => unreachable!("following an operation never ends by itself"),
    }
}

/// Watches several operations at once, one bar each.
pub async fn watch_all(
    store: &dyn StateStore,
    op_ids: &[String],
    timeout: Duration,
) -> Result<Vec<Operation>> {
    let bars = MultiProgress::new();
    let watches = op_ids.iter().map(|id| {
        let b = bars.add(bar(id));
        async move {
            let result = watch(store, id, &b, timeout).await;
            b.finish_and_clear();
            result
        }
    });
    futures::future::try_join_all(watches).await
}
