//! Reaching a cluster's API server: where it is, which CA it presents, and the credentials the
//! bearer token is signed with ([`ClusterAccess`]); and the clients built from them, cached per
//! cluster until shortly before their token expires ([`Connections`]).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use aws_credential_types::Credentials;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use chrono::{DateTime, Utc};
use curfew_core::clock::Clock;
use curfew_core::cluster::ClusterRef;
use curfew_core::ports::{ErrorKind, PortError, PortResult};
use curfew_core::session::{Session, SessionCache};
use secrecy::SecretString;

use crate::token::{eks_token, TOKEN_LIFETIME};

/// What it takes to call one cluster's API server.
#[derive(Clone, Debug)]
pub struct ClusterEndpoint {
    /// The API server's URL: EKS `DescribeCluster`'s `cluster.endpoint`
    /// (`https://<id>.<suffix>.<region>.eks.amazonaws.com`).
    pub url: String,
    /// The cluster's CA bundle as EKS gives it (`cluster.certificateAuthority.data`: base64 of
    /// PEM, like a kubeconfig's `certificate-authority-data`). `None` trusts the platform's
    /// roots instead, for an API server reached through a proxy with a public certificate, or
    /// over plain HTTP in tests.
    pub certificate_authority: Option<String>,
    /// The spoke session's credentials, which the bearer token is signed with; the EKS access
    /// entry of their role decides what the token may do.
    pub credentials: Credentials,
}

/// How the adapter reaches a cluster: the hub implements it over the spoke session cache and
/// EKS `DescribeCluster` (the role's session credentials, the endpoint and the CA), which
/// `curfew_aws::AwsSpokes::cluster_connection` gathers. This crate does not depend on
/// `curfew-aws` (its tests would link the whole SDK), so the wiring lives where both meet, in
/// `curfew-aws` (`curfew_aws::clusters::SpokeClusters`), as a newtype:
///
/// ```ignore
/// struct SpokeClusters(Arc<AwsSpokes>);
///
/// #[async_trait]
/// impl ClusterAccess for SpokeClusters {
///     async fn connect(&self, at: &ClusterRef) -> PortResult<ClusterEndpoint> {
///         let c = self.0.cluster_connection(&at.role, &at.region, &at.cluster).await?;
///         Ok(ClusterEndpoint {
///             url: c.endpoint,
///             certificate_authority: Some(c.certificate_authority),
///             credentials: c.credentials,
///         })
///     }
/// }
/// ```
#[async_trait]
pub trait ClusterAccess: Send + Sync {
    /// The endpoint, CA and credentials for `at`. Called when the adapter has no client for the
    /// cluster or its token is about to expire, so the credentials should be the cached spoke
    /// session's, not a new AssumeRole per call.
    async fn connect(&self, at: &ClusterRef) -> PortResult<ClusterEndpoint>;
}

#[async_trait]
impl<A: ClusterAccess + ?Sized> ClusterAccess for Arc<A> {
    async fn connect(&self, at: &ClusterRef) -> PortResult<ClusterEndpoint> {
        (**self).connect(at).await
    }
}

/// Timeouts of the clients the adapter builds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    /// Establishing the TCP and TLS connection.
    pub connect: Duration,
    /// Waiting for an answer. Without it a control plane that accepts connections but never
    /// answers would hold a worker until its Lambda times out.
    pub read: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: Duration::from_secs(10),
            read: Duration::from_secs(30),
        }
    }
}

/// Clients per cluster, each with the token it was built with; a client is rebuilt (a new
/// token signed) once its token is within [`REFRESH_BEFORE`] of expiring.
pub(crate) struct Connections<A> {
    access: A,
    clock: Arc<dyn Clock>,
    clients: SessionCache<kube::Client>,
    timeouts: Timeouts,
}

/// How long before its token expires a client is replaced: the margin `aws eks get-token`
/// leaves, for clock skew and for calls already in flight.
pub(crate) const REFRESH_BEFORE: chrono::Duration = chrono::Duration::minutes(1);

impl<A: ClusterAccess> Connections<A> {
    pub(crate) fn new(access: A, clock: Arc<dyn Clock>, timeouts: Timeouts) -> Self {
        Connections {
            access,
            clients: SessionCache::new(clock.clone(), REFRESH_BEFORE),
            clock,
            timeouts,
        }
    }

    pub(crate) fn with_timeouts(self, timeouts: Timeouts) -> Self {
        Connections { timeouts, ..self }
    }

    /// A client for `at` whose token is still good.
    pub(crate) async fn client(&self, at: &ClusterRef) -> PortResult<kube::Client> {
        self.clients
            .get_or_assume(&cluster_key(at), || async {
                let endpoint = self.access.connect(at).await?;
                let signed_at = self.clock.now();
                let token = eks_token(&endpoint.credentials, &at.region, &at.cluster, signed_at)
                    .map_err(|e| {
                        PortError::with_source(
                            ErrorKind::Invalid,
                            format!("making the EKS token for cluster {}", at.cluster),
                            e,
                        )
                    })?;
                let client = build_client(&at.cluster, &endpoint, token, self.timeouts)?;
                Ok::<_, PortError>(Session {
                    value: client,
                    expires_at: token_expiry(signed_at, &endpoint.credentials),
                })
            })
            .await
    }

    /// Forgets the client for `at` (its token was refused), so the next call signs a new one.
    pub(crate) fn forget(&self, at: &ClusterRef) {
        self.clients.invalidate(&cluster_key(at));
    }
}

/// When a token signed at `signed_at` stops working: after [`TOKEN_LIFETIME`], or when the
/// credentials it was signed with expire (STS then refuses the presigned call), if sooner.
pub(crate) fn token_expiry(signed_at: DateTime<Utc>, credentials: &Credentials) -> DateTime<Utc> {
    let lifetime = signed_at + TOKEN_LIFETIME;
    match credentials.expiry() {
        Some(expiry) => lifetime.min(DateTime::<Utc>::from(expiry)),
        None => lifetime,
    }
}

/// The cache key: one client per cluster per role (two roles reaching one cluster may be
/// granted different RBAC).
fn cluster_key(at: &ClusterRef) -> String {
    format!(
        "{}|{}|{}|{}",
        at.role.role_arn,
        at.role.external_id.as_deref().unwrap_or(""),
        at.region,
        at.cluster
    )
}

/// A client for `endpoint` that sends `token` as its bearer token and trusts only the cluster's
/// CA.
fn build_client(
    cluster: &str,
    endpoint: &ClusterEndpoint,
    token: String,
    timeouts: Timeouts,
) -> PortResult<kube::Client> {
    let url: http::Uri = endpoint.url.parse().map_err(|e| {
        PortError::with_source(
            ErrorKind::Invalid,
            format!(
                "the endpoint {:?} of cluster {cluster} is not a URL",
                endpoint.url
            ),
            e,
        )
    })?;
    let mut config = kube::Config::new(url);
    config.root_cert = endpoint
        .certificate_authority
        .as_deref()
        .map(|data| ca_certificates(cluster, data))
        .transpose()?;
    config.auth_info.token = Some(SecretString::from(token));
    config.connect_timeout = Some(timeouts.connect);
    config.read_timeout = Some(timeouts.read);
    // Count the read timeout from when the request was sent, not from when its pooled
    // connection went idle.
    config.reset_reader_on_write = true;
    // The adapter retries throttles itself, with jitter; kube's own retry under it would
    // multiply the attempts.
    config.default_retry = false;
    kube::Client::try_from(config).map_err(|e| {
        PortError::with_source(
            ErrorKind::Invalid,
            format!("building the Kubernetes client for cluster {cluster}"),
            e,
        )
    })
}

/// The DER certificates in a base64-encoded PEM bundle (EKS's `certificateAuthority.data`).
pub(crate) fn ca_certificates(cluster: &str, data: &str) -> PortResult<Vec<Vec<u8>>> {
    let what = format!("the CA of cluster {cluster} (certificateAuthority.data)");
    let pem_text = STANDARD.decode(data.trim()).map_err(|e| {
        PortError::with_source(ErrorKind::Invalid, format!("{what} is not base64"), e)
    })?;
    let blocks = pem::parse_many(&pem_text)
        .map_err(|e| PortError::with_source(ErrorKind::Invalid, format!("{what} is not PEM"), e))?;
    let certificates: Vec<Vec<u8>> = blocks
        .into_iter()
        .filter(|b| b.tag() == "CERTIFICATE")
        .map(|b| b.into_contents())
        .collect();
    if certificates.is_empty() {
        return Err(PortError::new(
            ErrorKind::Invalid,
            format!("{what} holds no certificate"),
        ));
    }
    Ok(certificates)
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    const CA_PEM: &str = include_str!("../tests/fixtures/cluster-ca.pem");

    #[test]
    fn the_cluster_ca_is_read_from_base64_pem_into_der() {
        let certificates = ca_certificates("dev", &STANDARD.encode(CA_PEM)).unwrap();
        assert_eq!(certificates.len(), 1);
        assert_eq!(certificates[0][0], 0x30, "DER starts with a SEQUENCE");
    }

    #[test]
    fn a_cluster_ca_that_is_not_base64_is_invalid() {
        let err = ca_certificates("dev", "not base64!").unwrap_err();
        assert_eq!(err.kind, ErrorKind::Invalid);
        assert!(err.message.contains("not base64"), "{}", err.message);
    }

    #[test]
    fn a_cluster_ca_without_a_certificate_is_invalid() {
        let key_only = "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n";
        let err = ca_certificates("dev", &STANDARD.encode(key_only)).unwrap_err();
        assert_eq!(err.kind, ErrorKind::Invalid);
        assert!(err.message.contains("no certificate"), "{}", err.message);
    }

    #[test]
    fn a_token_lives_fifteen_minutes_unless_its_credentials_expire_first() {
        let signed = Utc.with_ymd_and_hms(2027, 1, 4, 19, 0, 0).unwrap();
        let keys = |expiry: Option<DateTime<Utc>>| {
            Credentials::new("AKID", "secret", None, expiry.map(Into::into), "test")
        };
        assert_eq!(
            token_expiry(signed, &keys(None)),
            signed + chrono::Duration::minutes(15)
        );
        let soon = signed + chrono::Duration::minutes(6);
        assert_eq!(token_expiry(signed, &keys(Some(soon))), soon);
        let later = signed + chrono::Duration::hours(1);
        assert_eq!(
            token_expiry(signed, &keys(Some(later))),
            signed + chrono::Duration::minutes(15)
        );
    }
}
