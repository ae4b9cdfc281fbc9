//! The `curfew` command line, end to end: one test binary (each file a module) so the suite links
//! the AWS SDK once rather than once per file.

mod audit;
mod aws_mode;
mod common;
mod dlq;
mod health;
mod hub;
mod local;
mod next;
mod notices;
mod overrides;
mod ui;
mod usage;
mod windows;
