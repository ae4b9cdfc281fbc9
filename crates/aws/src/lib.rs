//! # curfew-aws
//!
//! Adapters from curfew-core's ports to AWS: the DynamoDB state store, SQS queues, the SNS
//! notification topic, and spoke
//! access (STS AssumeRole through the session cache, Auto Scaling, EKS, and the clusters'
//! Kubernetes APIs through `curfew-kube`). SDK errors are
//! classified ([`error::classify`]) with their source kept, and throttles are retried with
//! jittered backoff ([`error::retrying`]).
#![warn(missing_docs)]

pub mod changes;
pub mod clusters;
pub mod config;
pub mod dead_letters;
pub mod dispatch;
pub mod dynamo;
pub mod emf;
pub mod error;
pub mod hub;
pub mod lambda;
pub mod local;
pub mod pacing;
pub mod queue_health;
pub mod router_function;
pub mod sns;
pub mod spokes;
pub mod sqs;

pub use dead_letters::SqsDeadLetters;
pub use dynamo::DynamoStore;
pub use queue_health::SqsQueueInspector;
pub use sns::SnsNotifier;
pub use spokes::AwsSpokes;
pub use sqs::SqsQueue;
