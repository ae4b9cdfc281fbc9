//! Spoke accounts: where targets live and the role the hub assumes to reach them.

use serde::{Deserialize, Serialize};

/// A field of an account that failed validation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {field}: {reason}")]
pub struct AccountError {
    /// The field: `account_id`, `role`, `external_id` or `regions`.
    pub field: &'static str,
    /// What is wrong with it.
    pub reason: String,
}

/// The role the hub assumes in a spoke account.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SpokeRole {
    /// The spoke account id.
    pub account: String,
    /// The role's ARN.
    pub role_arn: String,
    /// The ExternalId the role's trust policy requires, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_id: Option<String>,
}

/// A managed spoke account.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    /// 12-digit account id.
    pub id: String,
    /// How the hub reaches it.
    pub role: SpokeRole,
    /// Regions curfew manages in it.
    pub regions: Vec<String>,
}

/// Checks a 12-digit AWS account id.
pub fn validate_account_id(id: &str) -> Result<(), AccountError> {
    if id.len() == 12 && id.bytes().all(|b| b.is_ascii_digit()) {
        Ok(())
    } else {
        Err(AccountError {
            field: "account_id",
            reason: format!("{id:?} is not a 12-digit AWS account id"),
        })
    }
}

/// Checks an IAM role ARN (`arn:PARTITION:iam::ACCOUNT:role/NAME`) and returns its account.
pub fn role_account(role_arn: &str) -> Result<&str, AccountError> {
    let bad = |why: &str| {
        AccountError {
        field: "role",
        reason: format!("{role_arn:?} is not an IAM role ARN ({why}); expected arn:aws:iam::ACCOUNT_ID:role/NAME"),
    }
    };
    let parts: Vec<&str> = role_arn.splitn(6, ':').collect();
    if parts.len() != 6 || parts[0] != "arn" || !parts[1].starts_with("aws") || parts[2] != "iam" {
        return Err(bad("wrong shape"));
    }
    validate_account_id(parts[4]).map_err(|_| bad("bad account id"))?;
    match parts[5].strip_prefix("role/") {
        Some(name) if !name.is_empty() && name.len() <= 512 => Ok(parts[4]),
        _ => Err(bad("no role name")),
    }
}

impl Account {
    /// Validates and builds an account. Regions are given as `r1,r2` by operators.
    pub fn new(
        id: &str,
        role_arn: &str,
        external_id: Option<&str>,
        regions: &[String],
    ) -> Result<Account, AccountError> {
        validate_account_id(id)?;
        let role_account = role_account(role_arn)?;
        if role_account != id {
            return Err(AccountError {
                field: "role",
                reason: format!("role {role_arn:?} is in account {role_account}, not {id}"),
            });
        }
        if let Some(ext) = external_id {
            if ext.len() < 2 || ext.len() > 1224 {
                return Err(AccountError {
                    field: "external_id",
                    reason: "must be 2 to 1224 characters".into(),
                });
            }
            // STS's pattern for ExternalId is [\w+=,.@:/-]*: anything else fails every AssumeRole.
            if let Some(c) = ext
                .chars()
                .find(|c| !(c.is_ascii_alphanumeric() || "_+=,.@:/-".contains(*c)))
            {
                return Err(AccountError {
                    field: "external_id",
                    reason: format!("{c:?} is not allowed (letters, digits and _+=,.@:/- only)"),
                });
            }
        }
        let mut regions: Vec<String> = regions
            .iter()
            .map(|r| r.trim().to_string())
            .filter(|r| !r.is_empty())
            .collect();
        regions.sort();
        regions.dedup();
        if regions.is_empty() {
            return Err(AccountError {
                field: "regions",
                reason: "give at least one region, e.g. eu-west-1".into(),
            });
        }
        if let Some(bad) = regions.iter().find(|r| !is_region_name(r)) {
            return Err(AccountError {
                field: "regions",
                reason: format!("{bad:?} is not a region name such as eu-west-1"),
            });
        }
        Ok(Account {
            id: id.to_string(),
            role: SpokeRole {
                account: id.to_string(),
                role_arn: role_arn.to_string(),
                external_id: external_id.map(str::to_string),
            },
            regions,
        })
    }
}

/// The shape of an AWS region name (`eu-west-1`, `us-gov-west-1`): lowercase words and a
/// number. Whether the region exists is the spoke's answer at discovery.
fn is_region_name(r: &str) -> bool {
    let parts: Vec<&str> = r.split('-').collect();
    parts.len() >= 3
        && parts.iter().all(|p| {
            !p.is_empty()
                && p.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        })
        && parts
            .last()
            .is_some_and(|p| p.bytes().all(|b| b.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_external_id_sts_would_refuse_is_refused_here() {
        let e = Account::new(
            "111111111111",
            "arn:aws:iam::111111111111:role/curfew-spoke",
            Some("bad id with spaces"),
            &["eu-west-1".to_string()],
        )
        .unwrap_err();
        assert_eq!(e.field, "external_id");
        assert!(Account::new(
            "111111111111",
            "arn:aws:iam::111111111111:role/curfew-spoke",
            Some("curfew-hub_2027+a=b,c.d@e:f/g"),
            &["eu-west-1".to_string()],
        )
        .is_ok());
    }

    #[test]
    fn region_names_are_lowercase() {
        let e = Account::new(
            "111111111111",
            "arn:aws:iam::111111111111:role/curfew-spoke",
            None,
            &["EU-WEST-1".to_string()],
        )
        .unwrap_err();
        assert_eq!(e.field, "regions");
        assert!(is_region_name("us-gov-west-1"));
    }

    #[test]
    fn a_valid_account_keeps_sorted_unique_regions() {
        let a = Account::new(
            "111111111111",
            "arn:aws:iam::111111111111:role/curfew-spoke",
            Some("ext-1"),
            &["us-east-1".into(), "eu-west-1".into(), "us-east-1".into()],
        )
        .unwrap();
        assert_eq!(a.regions, vec!["eu-west-1", "us-east-1"]);
    }

    #[test]
    fn bad_account_input_names_the_field() {
        let r = vec!["eu-west-1".to_string()];
        let role = "arn:aws:iam::111111111111:role/curfew-spoke";
        assert_eq!(
            Account::new("1111", role, None, &r).unwrap_err().field,
            "account_id"
        );
        assert_eq!(
            Account::new("111111111111", "curfew-spoke", None, &r)
                .unwrap_err()
                .field,
            "role"
        );
        assert_eq!(
            Account::new("222222222222", role, None, &r)
                .unwrap_err()
                .field,
            "role"
        );
        assert_eq!(
            Account::new("111111111111", role, None, &[])
                .unwrap_err()
                .field,
            "regions"
        );
        assert_eq!(
            Account::new("111111111111", role, None, &["moon".into()])
                .unwrap_err()
                .field,
            "regions"
        );
    }
}
