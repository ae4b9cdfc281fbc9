//! What one stop + start cycle costs per 1,000 targets (issue 9), priced from what a simulated
//! run counted: Lambda GB-seconds (each handler invocation's virtual duration times its
//! function's memory) and requests, DynamoDB request units ([`crate::counting::dynamo`]: a
//! transaction's items count double) and SQS requests (SendMessageBatch calls, and the event
//! source mappings' ReceiveMessage and DeleteMessageBatch calls).
//!
//! Left out, and said so in docs/PERFORMANCE.md: the poller (a wave here is a direct invocation;
//! a scheduled one adds one poller tick, not a cost per target), the event source mappings'
//! empty receives while a queue is idle (a fixed cost of having the queues, not of a cycle),
//! CloudWatch Logs, the free tiers, and Lambda's rounding of each invocation up to the next
//! millisecond (at most 1 ms per invocation).

use crate::scale::WaveReport;

/// Published on-demand prices in US dollars per unit.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Prices {
    /// Lambda duration, arm64, per GB-second.
    pub lambda_gb_second: f64,
    /// Lambda, per request (invocation).
    pub lambda_request: f64,
    /// DynamoDB on-demand, per write request unit.
    pub dynamo_write_unit: f64,
    /// DynamoDB on-demand, per read request unit.
    pub dynamo_read_unit: f64,
    /// SQS standard queue, per request (each 64 KB chunk of a request is one).
    pub sqs_request: f64,
}

impl Prices {
    /// us-east-1 on-demand prices, looked up on 2026-11-30:
    /// - Lambda arm64 $0.0000133334 per GB-second (first 7.5 billion GB-s a month) and $0.20
    ///   per million requests: <https://aws.amazon.com/lambda/pricing/> (snapshot of
    ///   2026-06-18), the arm64 figures as quoted by
    ///   <https://cloudchipr.com/blog/aws-lambda-pricing>;
    /// - DynamoDB on-demand, Standard table class, $0.625 per million write request units and
    ///   $0.125 per million read request units (the prices since AWS halved on-demand prices on
    ///   2024-11-01): <https://airbyte.com/data-engineering-resources/dynamodb-pricing>;
    /// - SQS standard queue $0.40 per million requests (first 100 billion a month):
    ///   <https://cloudburn.io/blog/amazon-sqs-pricing> (March 2026).
    pub const US_EAST_1: Prices = Prices {
        lambda_gb_second: 0.000_013_333_4,
        lambda_request: 0.20 / 1e6,
        dynamo_write_unit: 0.625 / 1e6,
        dynamo_read_unit: 0.125 / 1e6,
        sqs_request: 0.40 / 1e6,
    };
}

/// The Lambda functions' memory in MB, as `infra/lib/hub-stack.ts` configures it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LambdaMemory {
    /// The router's `memorySize`.
    pub router_mb: u32,
    /// The worker's `memorySize`.
    pub worker_mb: u32,
}

/// The hub stack's source, read at build time so the prices follow its memory sizes.
const HUB_STACK: &str = include_str!("../../infra/lib/hub-stack.ts");

impl LambdaMemory {
    /// The sizes in `infra/lib/hub-stack.ts`.
    ///
    /// # Panics
    /// When the stack no longer declares `this.router` and `this.worker` with a `memorySize`.
    pub fn from_hub_stack() -> LambdaMemory {
        LambdaMemory {
            router_mb: memory_size(HUB_STACK, "router").expect("the hub stack sizes the router"),
            worker_mb: memory_size(HUB_STACK, "worker").expect("the hub stack sizes the worker"),
        }
    }
}

/// The `memorySize` of `this.<function> = new RustLambda(..., { ... })` in a CDK stack's source.
fn memory_size(stack: &str, function: &str) -> Option<u32> {
    let declared = stack.find(&format!("this.{function} = new RustLambda("))?;
    let props = &stack[declared..];
    let props = &props[..props.find("});").unwrap_or(props.len())];
    let size = props.split("memorySize:").nth(1)?;
    size.trim_start()
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

/// What one stop + start cycle used, summed over its two waves.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct CycleUse {
    /// Targets in the fleet.
    pub targets: u64,
    /// Worker invocations.
    pub worker_invocations: u64,
    /// Their summed duration in seconds.
    pub worker_seconds: f64,
    /// Router invocations (the direct invocation of each wave and every router queue batch).
    pub router_invocations: u64,
    /// Their summed duration in seconds.
    pub router_seconds: f64,
    /// DynamoDB write request units.
    pub write_units: u64,
    /// DynamoDB read request units.
    pub read_units: f64,
    /// SQS SendMessageBatch calls (router and task queues).
    pub sqs_sends: u64,
    /// ReceiveMessage calls that returned a batch (one per invocation).
    pub sqs_receives: u64,
    /// DeleteMessageBatch calls (one per invocation that finished a message).
    pub sqs_deletes: u64,
}

impl CycleUse {
    /// The cycle of a simulated run's `stop` and `start` waves over `targets` targets; `None`
    /// unless both waves were simulated (a plain run has no event sources nor virtual time).
    pub fn from_waves(targets: usize, stop: &WaveReport, start: &WaveReport) -> Option<CycleUse> {
        CycleUse::of(targets, &[stop, start])
    }

    /// What `waves` (simulated) used together over `targets` targets; `None` unless every one
    /// was simulated. One wave alone prices a single pass (an enforce pass).
    pub fn of(targets: usize, waves: &[&WaveReport]) -> Option<CycleUse> {
        let mut cycle = CycleUse {
            targets: targets as u64,
            ..CycleUse::default()
        };
        for wave in waves {
            let (routed, worked) = wave.sourced.as_ref()?;
            cycle.worker_invocations += worked.invocations as u64;
            cycle.worker_seconds += worked.busy.as_secs_f64();
            cycle.router_invocations += routed.invocations as u64 + 1;
            cycle.router_seconds += (routed.busy + wave.invoke).as_secs_f64();
            cycle.write_units += wave.store.dynamo.write_units;
            cycle.read_units += wave.store.dynamo.read_units();
            cycle.sqs_sends += wave.task_sends.batch_calls + wave.router_sends.batch_calls;
            cycle.sqs_receives += (routed.invocations + worked.invocations) as u64;
            cycle.sqs_deletes += (routed.delete_batches + worked.delete_batches) as u64;
        }
        Some(cycle)
    }

    /// Every SQS request.
    pub fn sqs_requests(&self) -> u64 {
        self.sqs_sends + self.sqs_receives + self.sqs_deletes
    }

    /// Lambda GB-seconds at `memory`.
    pub fn gb_seconds(&self, memory: &LambdaMemory) -> f64 {
        self.worker_seconds * f64::from(memory.worker_mb) / 1024.0
            + self.router_seconds * f64::from(memory.router_mb) / 1024.0
    }
}

/// A cycle's cost per 1,000 targets, in US dollars, by what is billed.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct CostBreakdown {
    /// Lambda duration (GB-seconds).
    pub lambda_duration: f64,
    /// Lambda requests.
    pub lambda_requests: f64,
    /// DynamoDB write request units.
    pub dynamo_writes: f64,
    /// DynamoDB read request units.
    pub dynamo_reads: f64,
    /// SQS requests.
    pub sqs: f64,
}

impl CostBreakdown {
    /// Everything.
    pub fn total(&self) -> f64 {
        self.lambda_duration
            + self.lambda_requests
            + self.dynamo_writes
            + self.dynamo_reads
            + self.sqs
    }
}

/// What `cycle` costs per 1,000 of its targets at `prices`, with the functions sized `memory`.
pub fn cost_per_1k_targets(
    cycle: &CycleUse,
    prices: &Prices,
    memory: &LambdaMemory,
) -> CostBreakdown {
    let per_1k = 1000.0 / cycle.targets.max(1) as f64;
    let invocations = (cycle.worker_invocations + cycle.router_invocations) as f64;
    CostBreakdown {
        lambda_duration: cycle.gb_seconds(memory) * prices.lambda_gb_second * per_1k,
        lambda_requests: invocations * prices.lambda_request * per_1k,
        dynamo_writes: cycle.write_units as f64 * prices.dynamo_write_unit * per_1k,
        dynamo_reads: cycle.read_units * prices.dynamo_read_unit * per_1k,
        sqs: cycle.sqs_requests() as f64 * prices.sqs_request * per_1k,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ONE_DOLLAR_EACH: Prices = Prices {
        lambda_gb_second: 1.0,
        lambda_request: 1.0,
        dynamo_write_unit: 1.0,
        dynamo_read_unit: 1.0,
        sqs_request: 1.0,
    };

    fn cycle() -> CycleUse {
        CycleUse {
            targets: 2000,
            worker_invocations: 200,
            worker_seconds: 100.0,
            router_invocations: 10,
            router_seconds: 4.0,
            write_units: 30_000,
            read_units: 7_000.5,
            sqs_sends: 200,
            sqs_receives: 210,
            sqs_deletes: 205,
        }
    }

    #[test]
    fn gb_seconds_weigh_each_functions_time_by_its_memory() {
        let memory = LambdaMemory {
            router_mb: 512,
            worker_mb: 256,
        };
        assert_eq!(cycle().gb_seconds(&memory), 100.0 * 0.25 + 4.0 * 0.5);
    }

    #[test]
    fn each_item_is_priced_per_unit_and_scaled_to_a_thousand_targets() {
        let memory = LambdaMemory {
            router_mb: 1024,
            worker_mb: 1024,
        };
        let cost = cost_per_1k_targets(&cycle(), &ONE_DOLLAR_EACH, &memory);
        // 2,000 targets: every figure is halved.
        assert_eq!(cost.lambda_duration, 52.0);
        assert_eq!(cost.lambda_requests, 105.0);
        assert_eq!(cost.dynamo_writes, 15_000.0);
        assert_eq!(cost.dynamo_reads, 3_500.25);
        assert_eq!(cost.sqs, 307.5);
        assert_eq!(cost.total(), 52.0 + 105.0 + 15_000.0 + 3_500.25 + 307.5);
    }

    #[test]
    fn published_prices_make_a_million_write_units_cost_sixty_two_and_a_half_cents() {
        let writes = CycleUse {
            targets: 1000,
            write_units: 1_000_000,
            ..CycleUse::default()
        };
        let memory = LambdaMemory::from_hub_stack();
        let cost = cost_per_1k_targets(&writes, &Prices::US_EAST_1, &memory);
        assert!((cost.dynamo_writes - 0.625).abs() < 1e-12, "{cost:?}");
        assert_eq!(cost.total(), cost.dynamo_writes);
    }

    #[test]
    fn the_memory_sizes_are_read_from_the_hub_stack() {
        let stack = "this.router = new RustLambda(this, 'Router', {\n  memorySize: 512,\n});\n\
                     this.worker = new RustLambda(this, 'Worker', {\n  timeout: x,\n  memorySize: 256,\n});";
        assert_eq!(memory_size(stack, "router"), Some(512));
        assert_eq!(memory_size(stack, "worker"), Some(256));
        assert_eq!(memory_size(stack, "poller"), None);
        let real = LambdaMemory::from_hub_stack();
        assert!(real.router_mb >= 128 && real.worker_mb >= 128, "{real:?}");
    }
}
