//! curfew's integration suite on the moto emulator and the simulation: one test binary (each
//! file a module), so the suite compiles and links the AWS SDK once rather than once per file.
//! Each test still runs in a process of its own under nextest, with its own emulator.

mod chaos;
mod cluster_hold_crashes;
mod cold_starts;
mod crash_safety;
mod dead_letters;
mod drift;
mod earlier_layout;
mod finishing;
mod hold;
mod logs;
mod notices;
mod planning;
mod poll_reads;
mod poller;
mod scale_shapes;
mod sim;
mod spine;
mod windows;
