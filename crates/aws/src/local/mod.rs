//! Local mode: the moto emulator on loopback, a hub provisioned on it, and spoke fleets seeded
//! in emulated accounts. Used by `curfew local`, `make demo` and the integration tests.

pub mod emulator;
mod fleet;

pub use emulator::{Emulator, EmulatorError};
pub use fleet::{demo_fleet, seed_fleet, spoke_role_arn, FleetTarget};
