//! Where curfew's AWS clients point: real AWS, or an emulator through an endpoint URL.

use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::Credentials;
use aws_sdk_autoscaling::config::retry::RetryPartition;

/// Attempts the SDK makes of one call before its error reaches curfew's own backoff.
pub const SDK_MAX_ATTEMPTS: u32 = 2;

/// The ceiling of the SDK's first retry delay (full jitter: the delay is drawn from zero to it,
/// doubling per attempt). The SDK's default is 1 s: with 5% of spoke calls throttled, the
/// simulation (`curfew-sim`, docs/PERFORMANCE.md) measured a 100,000-target wave at 2.5 times
/// its bound with it, since one throttled call holds its whole batch of 10 for up to a second.
/// A spoke throttle clears in a token's time (tenths of a second), and curfew's own backoff
/// ([`crate::error::retrying`]) still grows to seconds when throttling persists.
pub const SDK_INITIAL_BACKOFF: Duration = Duration::from_millis(100);

/// The ceiling of any SDK retry delay (the SDK's default).
pub const SDK_MAX_BACKOFF: Duration = Duration::from_secs(20);

/// The SDK's own retry of every client: [`SDK_MAX_ATTEMPTS`] attempts, the first retry after
/// up to [`SDK_INITIAL_BACKOFF`]. Spoke clients retry in a partition of their account and region
/// ([`spoke_retry_partition`]); the simulation's spoke clients retry with this too.
pub fn sdk_retry_config() -> RetryConfig {
    RetryConfig::standard()
        .with_max_attempts(SDK_MAX_ATTEMPTS)
        .with_initial_backoff(SDK_INITIAL_BACKOFF)
        .with_max_backoff(SDK_MAX_BACKOFF)
}

/// The retry partition of a spoke client of `service` in `account` and `region`. AWS throttles
/// each account and region on its own: one account's throttling must not spend the retry quota
/// of another's requests made from the same process (the SDK's default partition is the
/// service, shared by every account).
///
/// The SDK's adaptive mode, which paces a partition's requests after a throttle, is not used:
/// the simulation measured it against both kinds of throttling (docs/PERFORMANCE.md, "Refused
/// calls"). Where the account's rate is what refuses, it cut the skewed fleet's stop to
/// 3,535 s (12,340 s with the standard retry as the simulation modelled it at 11787ad); where
/// throttles come regardless of curfew's own rate (5% of attempts), it slowed the
/// 100,000-target wave to 11.6 times its bound, where the standard mode keeps 1.18. curfew
/// paces its requests about targets itself instead, only once throttling persists
/// ([`crate::pacing::Pace`]).
pub fn spoke_retry_partition(service: &str, account: &str, region: &str) -> RetryPartition {
    RetryPartition::new(format!("curfew-{service}-{account}-{region}"))
}

/// Loads the SDK configuration from the environment. `endpoint` (for an emulator) and
/// `region` override it. The SDK's own retries are kept to 2 attempts: curfew's backoff
/// ([`crate::error::retrying`]) wraps the calls that need more.
///
/// With an endpoint and no `AWS_ACCESS_KEY_ID` in the environment, the emulator's `test` keys
/// are used, so a local run needs no AWS profile.
pub async fn load_sdk_config(endpoint: Option<&str>, region: Option<&str>) -> SdkConfig {
    let mut loader =
        aws_config::defaults(BehaviorVersion::latest()).retry_config(sdk_retry_config());
    if let Some(endpoint) = endpoint {
        loader = loader.endpoint_url(endpoint);
        if std::env::var_os("AWS_ACCESS_KEY_ID").is_none() {
            loader = loader.credentials_provider(Credentials::new(
                "test",
                "test",
                None,
                None,
                "curfew-emulator",
            ));
        }
    }
    if let Some(region) = region {
        loader = loader.region(Region::new(region.to_string()));
    }
    loader.load().await
}
