//! Selectors: which targets an operation or schedule applies to.
//!
//! A selector is comma-separated terms, all of which must match:
//! `account=ID`, `region=NAME`, `kind=nodegroup|asg`, `cluster=GLOB`, `name=GLOB`,
//! `tag:KEY=VALUE` (on the ASG, the node group, or the node group's cluster).

use std::fmt;
use std::str::FromStr;

use globset::{Glob, GlobMatcher};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::target::{Target, TargetKind};

/// Why a selector was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid selector {selector:?}: {reason}")]
pub struct SelectorError {
    /// The selector as given.
    pub selector: String,
    /// What is wrong with it.
    pub reason: String,
}

#[derive(Clone, Debug)]
enum Term {
    Account(String),
    Region(String),
    Kind(TargetKind),
    Cluster(GlobMatcher),
    Name(GlobMatcher),
    Tag(String, String),
}

/// A parsed selector. Only [`Selector::parse`] builds one, so every selector is valid.
#[derive(Clone, Debug)]
pub struct Selector {
    source: String,
    terms: Vec<Term>,
}

impl Selector {
    /// Parses `account=..,region=..,kind=..,cluster=GLOB,name=GLOB,tag:K=V`.
    pub fn parse(input: &str) -> Result<Selector, SelectorError> {
        let fail = |reason: String| SelectorError {
            selector: input.to_string(),
            reason,
        };
        let source = input.trim();
        if source.is_empty() {
            return Err(fail(
                "it is empty; give at least one term such as tag:env=dev".into(),
            ));
        }
        let mut terms = Vec::new();
        for raw in source.split(',') {
            let term = raw.trim();
            let (key, value) = term
                .split_once('=')
                .ok_or_else(|| fail(format!("term {term:?} is not KEY=VALUE")))?;
            let (key, value) = (key.trim(), value.trim());
            if value.is_empty() {
                return Err(fail(format!("term {term:?} has an empty value")));
            }
            let glob = |value: &str| {
                Glob::new(value)
                    .map(|g| g.compile_matcher())
                    .map_err(|e| fail(format!("bad pattern in {term:?}: {e}")))
            };
            let parsed = match key {
                "account" => {
                    if value.len() != 12 || !value.bytes().all(|b| b.is_ascii_digit()) {
                        return Err(fail(format!(
                            "account {value:?} is not a 12-digit AWS account id"
                        )));
                    }
                    Term::Account(value.to_string())
                }
                "region" => Term::Region(value.to_string()),
                "kind" => Term::Kind(match value {
                    "asg" => TargetKind::Asg,
                    "nodegroup" => TargetKind::Nodegroup,
                    other => {
                        return Err(fail(format!(
                            "kind {other:?} is not one of: asg, nodegroup"
                        )))
                    }
                }),
                "cluster" => Term::Cluster(glob(value)?),
                "name" => Term::Name(glob(value)?),
                key => match key.strip_prefix("tag:") {
                    Some(tag) if !tag.is_empty() => Term::Tag(tag.to_string(), value.to_string()),
                    _ => {
                        return Err(fail(format!(
                            "unknown term {key:?} (expected account, region, kind, cluster, name or tag:KEY)"
                        )))
                    }
                },
            };
            terms.push(parsed);
        }
        Ok(Selector {
            source: source.to_string(),
            terms,
        })
    }

    /// The selector as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// True when every term matches `target`.
    pub fn matches(&self, target: &Target) -> bool {
        self.terms.iter().all(|term| match term {
            Term::Account(a) => target.account == *a,
            Term::Region(r) => target.region == *r,
            Term::Kind(k) => target.kind == *k,
            Term::Cluster(g) => target.cluster.as_deref().is_some_and(|c| g.is_match(c)),
            Term::Name(g) => g.is_match(&target.name),
            Term::Tag(k, v) => target.tag(k) == Some(v.as_str()),
        })
    }

    /// True when the selector can match something in `account` (lets the router skip whole
    /// accounts without discovering them).
    pub fn may_match_account(&self, account: &str) -> bool {
        self.terms.iter().all(|t| match t {
            Term::Account(a) => a == account,
            _ => true,
        })
    }

    /// True when the selector can match something in `region`.
    pub fn may_match_region(&self, region: &str) -> bool {
        self.terms.iter().all(|t| match t {
            Term::Region(r) => r == region,
            _ => true,
        })
    }
}

impl PartialEq for Selector {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

impl FromStr for Selector {
    type Err = SelectorError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Selector::parse(s)
    }
}

impl Serialize for Selector {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.source)
    }
}

impl<'de> Deserialize<'de> for Selector {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        Selector::parse(&raw).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn nodegroup() -> Target {
        Target {
            account: "111111111111".into(),
            region: "eu-west-1".into(),
            kind: TargetKind::Nodegroup,
            cluster: Some("dev-blue".into()),
            name: "spot-workers".into(),
            tags: BTreeMap::from([("team".into(), "data".into())]),
            cluster_tags: BTreeMap::from([("env".into(), "dev".into())]),
            instance_types: Vec::new(),
        }
    }

    #[test]
    fn every_term_must_match() {
        let s = Selector::parse("kind=nodegroup,tag:env=dev,region=eu-west-1").unwrap();
        assert!(s.matches(&nodegroup()));
        let s = Selector::parse("kind=nodegroup,tag:env=prod").unwrap();
        assert!(!s.matches(&nodegroup()));
    }

    #[test]
    fn a_cluster_tag_selects_its_node_groups() {
        assert!(Selector::parse("tag:env=dev")
            .unwrap()
            .matches(&nodegroup()));
    }

    #[test]
    fn globs_match_cluster_and_name() {
        assert!(Selector::parse("cluster=dev-*,name=spot-?orkers")
            .unwrap()
            .matches(&nodegroup()));
        assert!(!Selector::parse("cluster=prod-*")
            .unwrap()
            .matches(&nodegroup()));
    }

    #[test]
    fn an_asg_never_matches_a_cluster_term() {
        let mut asg = nodegroup();
        asg.kind = TargetKind::Asg;
        asg.cluster = None;
        assert!(!Selector::parse("cluster=*").unwrap().matches(&asg));
    }

    #[test]
    fn malformed_selectors_name_the_bad_term() {
        for (input, needle) in [
            ("", "empty"),
            ("env=dev", "unknown term \"env\""),
            ("tag:env", "not KEY=VALUE"),
            ("kind=vm", "kind \"vm\""),
            ("account=12", "12-digit"),
            ("name=", "empty value"),
            ("name=[", "bad pattern"),
        ] {
            let err = Selector::parse(input).unwrap_err();
            assert!(err.to_string().contains(needle), "{input}: {err}");
        }
    }

    #[test]
    fn selectors_round_trip_through_json() {
        let s = Selector::parse("kind=asg,tag:env=dev").unwrap();
        let json = serde_json::to_string(&s).unwrap();
        assert_eq!(serde_json::from_str::<Selector>(&json).unwrap(), s);
        assert!(serde_json::from_str::<Selector>("\"bogus\"").is_err());
    }
}
