//! Where curfew's AWS clients point: real AWS, or an emulator through an endpoint URL.

use aws_config::retry::RetryConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};

/// Loads the SDK configuration from the environment. `endpoint` (for an emulator) and
/// `region` override it. The SDK's own retries are kept to 2 attempts: curfew's backoff
/// ([`crate::error::retrying`]) wraps the calls that need more.
pub async fn load_sdk_config(endpoint: Option<&str>, region: Option<&str>) -> SdkConfig {
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .retry_config(RetryConfig::standard().with_max_attempts(2));
    if let Some(endpoint) = endpoint {
        loader = loader.endpoint_url(endpoint);
    }
    if let Some(region) = region {
        loader = loader.region(Region::new(region.to_string()));
    }
    loader.load().await
}
