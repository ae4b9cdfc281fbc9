//! A wave's DynamoDB and SQS traffic per target, as the benchmarks print and record it:
//! DynamoDB requests, items and request units from [`crate::counting::dynamo`], SQS sends from
//! the counting queues and, in a simulated run, the receives and deletes the event source
//! mappings made ([`crate::sim::Sourced`]).

use serde_json::{json, Value};

use crate::counting::dynamo::DynamoApi;
use crate::counting::StoreCall;
use crate::scale::WaveReport;

/// One wave's traffic divided by its targets.
#[derive(Clone, Debug, PartialEq)]
pub struct WaveTraffic {
    /// DynamoDB requests per API, per target (the APIs the wave used).
    pub dynamo_requests: Vec<(DynamoApi, f64)>,
    /// Every DynamoDB request, per target.
    pub dynamo_total: f64,
    /// Items read, per target.
    pub items_read: f64,
    /// Items written, per target.
    pub items_written: f64,
    /// Read request units, per target.
    pub read_units: f64,
    /// Write request units (index entries included), per target.
    pub write_units: f64,
    /// Of them, each state-store method's that wrote, per target, most first.
    pub write_units_by_call: Vec<(StoreCall, f64)>,
    /// SendMessageBatch calls (router and task queues), per target.
    pub sqs_sends: f64,
    /// Simulated runs: ReceiveMessage calls that returned a batch, per target.
    pub sqs_receives: Option<f64>,
    /// Simulated runs: DeleteMessageBatch calls, per target.
    pub sqs_deletes: Option<f64>,
}

impl WaveTraffic {
    /// `wave`'s traffic over `targets` targets.
    pub fn of(wave: &WaveReport, targets: usize) -> WaveTraffic {
        let n = targets.max(1) as f64;
        let d = &wave.store.dynamo;
        let per = |v: u64| v as f64 / n;
        let sourced = wave.sourced.as_ref();
        WaveTraffic {
            dynamo_requests: d.nonzero().into_iter().map(|(a, c)| (a, per(c))).collect(),
            dynamo_total: per(d.total_requests()),
            items_read: per(d.items_read),
            items_written: per(d.items_written),
            read_units: d.read_units() / n,
            write_units: per(d.write_units),
            write_units_by_call: wave
                .store
                .writers()
                .into_iter()
                .map(|(call, units)| (call, per(units)))
                .collect(),
            sqs_sends: per(wave.task_sends.batch_calls + wave.router_sends.batch_calls),
            sqs_receives: sourced.map(|(r, w)| per((r.invocations + w.invocations) as u64)),
            sqs_deletes: sourced.map(|(r, w)| per((r.delete_batches + w.delete_batches) as u64)),
        }
    }

    /// SQS requests per target: sends, and receives and deletes where counted.
    pub fn sqs_total(&self) -> f64 {
        self.sqs_sends + self.sqs_receives.unwrap_or(0.0) + self.sqs_deletes.unwrap_or(0.0)
    }

    /// As recorded in `curfew-bench.json`.
    pub fn to_json(&self) -> Value {
        let by_api: serde_json::Map<String, Value> = self
            .dynamo_requests
            .iter()
            .map(|(api, v)| (api.name().to_string(), json!(v)))
            .collect();
        json!({
            "dynamodb_requests": self.dynamo_total,
            "dynamodb_requests_by_api": by_api,
            "dynamodb_items_read": self.items_read,
            "dynamodb_items_written": self.items_written,
            "dynamodb_read_units": self.read_units,
            "dynamodb_write_units": self.write_units,
            "dynamodb_write_units_by_call": self
                .write_units_by_call
                .iter()
                .map(|(call, units)| (call.name().to_string(), json!(units)))
                .collect::<serde_json::Map<String, Value>>(),
            "sqs_send_message_batch": self.sqs_sends,
            "sqs_receive_message": self.sqs_receives,
            "sqs_delete_message_batch": self.sqs_deletes,
            "sqs_requests": self.sqs_total(),
        })
    }

    /// One line of where a wave named `name` wrote: each state-store method's write units per
    /// target, most first.
    pub fn writes_line(&self, name: &str) -> String {
        let by_call: Vec<String> = self
            .write_units_by_call
            .iter()
            .map(|(call, units)| format!("{} {units:.2}", call.name()))
            .collect();
        format!("{name} WRU per target by call: {}", by_call.join(", "))
    }

    /// One line for a wave named `name`.
    pub fn line(&self, name: &str) -> String {
        let by_api: Vec<String> = self
            .dynamo_requests
            .iter()
            .map(|(api, v)| format!("{} {v:.3}", api.name()))
            .collect();
        let sqs = match (self.sqs_receives, self.sqs_deletes) {
            (Some(r), Some(d)) => format!(
                "{:.3} SendMessageBatch + {r:.3} ReceiveMessage + {d:.3} DeleteMessageBatch = {:.3}",
                self.sqs_sends,
                self.sqs_total()
            ),
            _ => format!("{:.3} SendMessageBatch", self.sqs_sends),
        };
        format!(
            "{name} per target: DynamoDB {:.2} requests ({}), {:.2} items read / {:.2} written, \
             {:.2} RRU / {:.2} WRU; SQS {sqs}",
            self.dynamo_total,
            by_api.join(", "),
            self.items_read,
            self.items_written,
            self.read_units,
            self.write_units,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scale::{run_with, FleetShape};
    use crate::sim::Simulation;

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn a_simulated_stop_reports_its_transactions_and_the_event_sources_requests() {
        let shape = FleetShape {
            targets: 200,
            accounts: 4,
            regions: 1,
            concurrency: 5,
            ..FleetShape::default()
        };
        let report = run_with(&shape, Some(Simulation::default())).await;
        assert!(report.is_clean(), "{:?}", report.problems().next());
        let stop = WaveTraffic::of(&report.stop, report.seeded);
        // A chunk's stopped targets are finished together: a transaction finishes up to 33 of
        // them, each with its change's record and its chain's head, and counts them once on a
        // counter stripe (here 2 a chunk of 50; and each account's plan, 1).
        let transactions = stop
            .dynamo_requests
            .iter()
            .find(|(api, _)| *api == DynamoApi::TransactWriteItems)
            .map(|(_, v)| *v);
        assert!(
            transactions.is_some_and(|t| t > 0.0 && t <= 0.1),
            "{stop:?}"
        );
        assert!(
            stop.write_units >= 6.0,
            "a target's final state, record and head, in a transaction: {stop:?}"
        );
        let (receives, deletes) = (stop.sqs_receives.unwrap(), stop.sqs_deletes.unwrap());
        // One receive per task message: a chunk of one account's 50 targets here.
        assert!(
            (0.02..=0.03).contains(&receives),
            "one receive per chunk of up to 100 of an account's targets: {stop:?}"
        );
        assert!(deletes > 0.0 && deletes <= receives, "{stop:?}");
    }
}
