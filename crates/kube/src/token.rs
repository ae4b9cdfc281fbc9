//! The EKS bearer token: how an IAM identity proves itself to a cluster's API server.
//!
//! The token is `k8s-aws-v1.` followed by the base64url (no padding) of a presigned STS
//! `GetCallerIdentity` URL. The API server's authenticator (aws-iam-authenticator, built into
//! EKS) calls that URL: STS answers with the identity that signed it, and the signed
//! `x-k8s-aws-id` header binds the token to one cluster, so a token for one cluster cannot be
//! replayed against another. See
//! <https://github.com/kubernetes-sigs/aws-iam-authenticator#api-authorization-from-outside-a-cluster>.

use std::time::Duration;

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{
    sign, SignableBody, SignableRequest, SignatureLocation, SigningError, SigningSettings,
};
use aws_sigv4::sign::v4::signing_params::BuildError;
use aws_sigv4::sign::v4::SigningParams;
use aws_smithy_runtime_api::client::identity::Identity;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::{DateTime, Utc};

/// What every EKS token starts with (the token format's version).
pub const TOKEN_PREFIX: &str = "k8s-aws-v1.";

/// The header that names the cluster a token is for; it must be among the signed headers.
pub const CLUSTER_ID_HEADER: &str = "x-k8s-aws-id";

/// How long after its signing time the API server accepts a token. The authenticator checks
/// `X-Amz-Date` against this window itself, whatever `X-Amz-Expires` says; `aws eks get-token`
/// reports an expiry a minute earlier to leave room for clock skew.
pub const TOKEN_LIFETIME: chrono::Duration = chrono::Duration::minutes(15);

/// The longest token the authenticator reads; it refuses longer ones unread.
pub const MAX_TOKEN_LEN: usize = 4096;

/// `X-Amz-Expires` of the presigned URL. The authenticator ignores it (see
/// [`TOKEN_LIFETIME`]) but `aws eks get-token` and the Go authenticator send 60, and STS
/// rejects a presigned URL without one.
const PRESIGN_EXPIRES: Duration = Duration::from_secs(60);

/// Why a token could not be made. Signing only fails on malformed input (a region or cluster
/// name that cannot appear in a URL or header), so none of these is worth retrying.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// The signing parameters were incomplete.
    #[error("incomplete signing parameters: {0}")]
    Params(#[source] BuildError),
    /// SigV4 refused to sign the request.
    #[error("signing the STS request failed: {0}")]
    Signing(#[source] SigningError),
    /// The token is longer than [`MAX_TOKEN_LEN`] (a very long session token, e.g. one carrying
    /// many session tags): the API server would refuse it.
    #[error("the EKS token is {len} bytes long; the API server reads at most {MAX_TOKEN_LEN}")]
    TooLong {
        /// Its length.
        len: usize,
    },
    /// The region or cluster name cannot be put in the request.
    #[error(
        "the STS request for region {region:?} and cluster {cluster:?} is malformed: {source}"
    )]
    Request {
        /// The region asked for.
        region: String,
        /// The cluster asked for.
        cluster: String,
        /// What was wrong.
        #[source]
        source: http::Error,
    },
}

/// The regional STS host the token is presigned for. Regional endpoints keep the token valid
/// where the global endpoint is disabled; China's partition has its own domain.
pub fn sts_host(region: &str) -> String {
    if region.starts_with("cn-") {
        format!("sts.{region}.amazonaws.com.cn")
    } else {
        format!("sts.{region}.amazonaws.com")
    }
}

/// The bearer token for `cluster` in `region`, signed with `credentials` at `at`. Pure: the same
/// inputs give the same token, which is valid until `at` + [`TOKEN_LIFETIME`] (or until the
/// credentials expire, if sooner).
pub fn eks_token(
    credentials: &Credentials,
    region: &str,
    cluster: &str,
    at: DateTime<Utc>,
) -> Result<String, TokenError> {
    let url = format!(
        "https://{}/?Action=GetCallerIdentity&Version=2011-06-15",
        sts_host(region)
    );
    let malformed = |source| TokenError::Request {
        region: region.to_string(),
        cluster: cluster.to_string(),
        source,
    };
    let mut request = http::Request::builder()
        .method("GET")
        .uri(&url)
        .header(CLUSTER_ID_HEADER, cluster)
        .body(())
        .map_err(malformed)?;

    let mut settings = SigningSettings::default();
    settings.signature_location = SignatureLocation::QueryParams;
    settings.expires_in = Some(PRESIGN_EXPIRES);
    let identity: Identity = credentials.clone().into();
    let params = SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name("sts")
        .time(at.into())
        .settings(settings)
        .build()
        .map_err(TokenError::Params)?
        .into();
    let signable = SignableRequest::new(
        "GET",
        url.as_str(),
        std::iter::once((CLUSTER_ID_HEADER, cluster)),
        // STS hashes the empty body of a GET into the canonical request.
        SignableBody::Bytes(&[]),
    )
    .map_err(TokenError::Signing)?;
    let (instructions, _signature) = sign(signable, &params)
        .map_err(TokenError::Signing)?
        .into_parts();
    instructions.apply_to_request_http1x(&mut request);

    let token = format!(
        "{TOKEN_PREFIX}{}",
        URL_SAFE_NO_PAD.encode(request.uri().to_string())
    );
    if token.len() > MAX_TOKEN_LEN {
        return Err(TokenError::TooLong { len: token.len() });
    }
    Ok(token)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use chrono::TimeZone;

    use super::*;

    fn credentials() -> Credentials {
        Credentials::new(
            "AKIDEXAMPLE",
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            Some("session/token+with=chars".to_string()),
            None,
            "test",
        )
    }

    fn at() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2027, 3, 1, 12, 0, 0).unwrap()
    }

    /// The presigned URL inside a token, and its query decoded.
    fn presigned(token: &str) -> (http::Uri, BTreeMap<String, String>) {
        let encoded = token
            .strip_prefix(TOKEN_PREFIX)
            .expect("the token starts with k8s-aws-v1.");
        let url = String::from_utf8(
            URL_SAFE_NO_PAD
                .decode(encoded)
                .expect("base64url, no padding"),
        )
        .expect("the URL is UTF-8");
        let uri: http::Uri = url.parse().expect("a URL");
        let query = form_urlencoded::parse(uri.query().unwrap_or_default().as_bytes())
            .into_owned()
            .collect();
        (uri, query)
    }

    #[test]
    fn the_token_is_the_prefix_and_a_presigned_get_caller_identity_url_in_base64url() {
        let token = eks_token(&credentials(), "eu-west-1", "dev-cluster", at()).unwrap();
        assert!(token.starts_with("k8s-aws-v1."), "{token}");
        let encoded = &token[TOKEN_PREFIX.len()..];
        assert!(
            encoded
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
            "base64url without padding: {encoded}"
        );

        let (uri, query) = presigned(&token);
        assert_eq!(uri.scheme_str(), Some("https"));
        assert_eq!(uri.host(), Some("sts.eu-west-1.amazonaws.com"));
        assert_eq!(uri.path(), "/");
        assert_eq!(query["Action"], "GetCallerIdentity");
        assert_eq!(query["Version"], "2011-06-15");
        assert_eq!(query["X-Amz-Algorithm"], "AWS4-HMAC-SHA256");
        assert_eq!(query["X-Amz-Expires"], "60");
        assert_eq!(query["X-Amz-Date"], "20270301T120000Z");
        assert_eq!(
            query["X-Amz-Credential"],
            "AKIDEXAMPLE/20270301/eu-west-1/sts/aws4_request"
        );
        let signed: Vec<&str> = query["X-Amz-SignedHeaders"].split(';').collect();
        assert!(
            signed.contains(&"host") && signed.contains(&"x-k8s-aws-id"),
            "{signed:?}"
        );
        assert_eq!(query["X-Amz-Security-Token"], "session/token+with=chars");
    }

    /// The expected signature was computed independently with botocore 1.44's
    /// `SigV4QueryAuth(credentials, "sts", "eu-west-1", expires=60)` over the same GET (query
    /// `Action=GetCallerIdentity&Version=2011-06-15`, header `x-k8s-aws-id: dev-cluster`), the
    /// way `aws eks get-token` presigns it, with its clock fixed at 2027-03-01T12:00:00Z.
    #[test]
    fn the_signature_matches_the_one_the_aws_cli_signer_computes() {
        let token = eks_token(&credentials(), "eu-west-1", "dev-cluster", at()).unwrap();
        let (_, query) = presigned(&token);
        assert_eq!(
            query["X-Amz-Signature"],
            "74ac660a041607ab7e1f158b7c07ad19f70aad79789737a9aa3156b17f56aa49"
        );
    }

    #[test]
    fn a_token_for_another_cluster_or_time_carries_another_signature() {
        let signature = |cluster: &str, at: DateTime<Utc>| {
            let token = eks_token(&credentials(), "eu-west-1", cluster, at).unwrap();
            presigned(&token).1["X-Amz-Signature"].clone()
        };
        let base = signature("dev-cluster", at());
        assert_ne!(base, signature("prod-cluster", at()));
        assert_ne!(
            base,
            signature("dev-cluster", at() + chrono::Duration::seconds(1))
        );
        assert_eq!(
            base,
            signature("dev-cluster", at()),
            "signing is deterministic"
        );
    }

    #[test]
    fn long_lived_credentials_sign_without_a_security_token() {
        let keys = Credentials::new("AKIDEXAMPLE", "secret", None, None, "test");
        let token = eks_token(&keys, "us-east-1", "dev", at()).unwrap();
        let (uri, query) = presigned(&token);
        assert_eq!(uri.host(), Some("sts.us-east-1.amazonaws.com"));
        assert!(!query.contains_key("X-Amz-Security-Token"));
        assert_eq!(
            query["X-Amz-Credential"],
            "AKIDEXAMPLE/20270301/us-east-1/sts/aws4_request"
        );
    }

    /// The authenticator refuses a URL with any other query parameter, or one given twice
    /// (aws-iam-authenticator's `parameterWhitelist`).
    #[test]
    fn the_url_carries_only_the_query_parameters_the_authenticator_accepts() {
        let token = eks_token(&credentials(), "eu-west-1", "dev-cluster", at()).unwrap();
        let (uri, _) = presigned(&token);
        let mut names: Vec<String> = form_urlencoded::parse(uri.query().unwrap().as_bytes())
            .map(|(name, _)| name.to_lowercase())
            .collect();
        names.sort();
        assert_eq!(
            names,
            [
                "action",
                "version",
                "x-amz-algorithm",
                "x-amz-credential",
                "x-amz-date",
                "x-amz-expires",
                "x-amz-security-token",
                "x-amz-signature",
                "x-amz-signedheaders",
            ]
        );
    }

    #[test]
    fn a_token_longer_than_the_authenticator_reads_is_refused() {
        let long_session = Credentials::new(
            "ASIAEXAMPLE",
            "secret",
            Some("t".repeat(3000)),
            None,
            "test",
        );
        let err = eks_token(&long_session, "eu-west-1", "dev", at()).unwrap_err();
        assert!(
            matches!(err, TokenError::TooLong { len } if len > MAX_TOKEN_LEN),
            "{err}"
        );
    }

    #[test]
    fn china_regions_sign_for_the_china_partitions_sts_host() {
        assert_eq!(sts_host("cn-north-1"), "sts.cn-north-1.amazonaws.com.cn");
        assert_eq!(sts_host("eu-central-2"), "sts.eu-central-2.amazonaws.com");
    }

    #[test]
    fn a_cluster_name_that_cannot_be_a_header_value_is_refused() {
        let err = eks_token(&credentials(), "eu-west-1", "dev\ncluster", at()).unwrap_err();
        assert!(matches!(err, TokenError::Request { .. }), "{err}");
    }
}
