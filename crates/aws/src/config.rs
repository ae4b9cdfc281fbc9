//! Where curfew's AWS clients point: real AWS, or an emulator through an endpoint URL.

use aws_config::retry::RetryConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::Credentials;

/// Loads the SDK configuration from the environment. `endpoint` (for an emulator) and
/// `region` override it. The SDK's own retries are kept to 2 attempts: curfew's backoff
/// ([`crate::error::retrying`]) wraps the calls that need more.
///
/// With an endpoint and no `AWS_ACCESS_KEY_ID` in the environment, the emulator's `test` keys
/// are used, so a local run needs no AWS profile.
pub async fn load_sdk_config(endpoint: Option<&str>, region: Option<&str>) -> SdkConfig {
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .retry_config(RetryConfig::standard().with_max_attempts(2));
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
