//! curfew-core's service-level tests over the in-memory fakes: one test binary (each file a
//! module) rather than one per file.

mod common;

mod cluster_hold;
mod cron_dst;
mod dead_letters;
mod drift;
mod hold;
mod notices;
mod parts;
mod poller;
mod races;
mod service;
mod trail;
