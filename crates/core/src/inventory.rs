//! The inventory cache's layout: the targets of one account and region kept as a few items of
//! many targets each ("buckets"), not one item per target.
//!
//! DynamoDB bills a write by the kilobyte, at least one unit an item. A target is some 100
//! bytes, so one item per target billed ten times what it held: a fleet's first listing wrote
//! 1.02 units a target, the last thing keeping its first stop + start cycle over issue 9's cost
//! goal (docs/PERFORMANCE.md, "Cost of a stop + start cycle"). In buckets of about
//! [`BUCKET_BYTES`] the same listing bills about a tenth of a unit a target.
//!
//! A target's bucket is a stable hash of its key, so a refresh that finds one target changed
//! rewrites that target's bucket only, and a listing that found nothing changed writes nothing
//! ([`refresh`]). The bucket count is kept across refreshes and chosen again only when a bucket
//! grows past [`MAX_BUCKET_BYTES`] (the fleet grew several times over) or none was stored.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use crate::target::{Target, TargetKind};

/// The size a bucket is aimed at when the bucket count is chosen: big enough that an item's
/// rounding up to the next kilobyte costs a few percent, small enough that a changed target
/// rewrites some eight units, not a whole account's.
pub const BUCKET_BYTES: usize = 8 * 1024;

/// A bucket holding more than one target past this size (four times the aim: the fleet grew
/// that much since its count was chosen) makes the count be chosen again. Far under
/// DynamoDB's 400 KB item limit: one target with the most tags AWS allows on it and on its
/// cluster is some 40 KB, so even a bucket of a few of those fits.
pub const MAX_BUCKET_BYTES: usize = 32 * 1024;

/// One bucket as the table holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredBucket {
    /// Its number, from 0.
    pub index: u32,
    /// The bucket count it was laid out for.
    pub of: u32,
    /// Its targets ([`encode`]).
    pub body: String,
}

/// What a refresh writes: the bucket count, the buckets to put (new or changed) and the
/// stored buckets to delete.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Refresh {
    /// The bucket count the listing is laid out for.
    pub buckets: u32,
    /// `(index, body)` of each bucket to write.
    pub put: Vec<(u32, String)>,
    /// Stored buckets no longer part of the layout.
    pub delete: Vec<u32>,
    /// The count was chosen afresh: it differs from the stored buckets', or none was stored.
    pub relaid: bool,
    /// Buckets of another count are stored: a reader of the cache as it stood must not meet a
    /// half-written layout, so the cache's marker goes before any bucket is written.
    pub forget_first: bool,
}

impl Refresh {
    /// True when the cache already holds the listing as it is.
    pub fn is_empty(&self) -> bool {
        self.put.is_empty() && self.delete.is_empty()
    }
}

/// A target in a bucket: its account and region are the cache's own, so they are not repeated.
#[derive(Serialize)]
struct EntryRef<'a> {
    kind: TargetKind,
    #[serde(skip_serializing_if = "Option::is_none")]
    cluster: Option<&'a str>,
    name: &'a str,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    tags: &'a BTreeMap<String, String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    cluster_tags: &'a BTreeMap<String, String>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    instance_types: &'a [String],
}

#[derive(Deserialize)]
struct Entry {
    kind: TargetKind,
    #[serde(default)]
    cluster: Option<String>,
    name: String,
    #[serde(default)]
    tags: BTreeMap<String, String>,
    #[serde(default)]
    cluster_tags: BTreeMap<String, String>,
    #[serde(default)]
    instance_types: Vec<String>,
}

/// 64-bit FNV-1a of `key`. A bucket must be the same in every process and every release, which
/// std's hasher does not promise.
fn fnv1a(key: &str) -> u64 {
    key.bytes().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The bucket of the target whose key is `key`, out of `buckets`.
pub fn bucket_of(key: &str, buckets: u32) -> u32 {
    (fnv1a(key) % u64::from(buckets.max(1))) as u32
}

/// A bucket's body: its targets in key order, so the same targets always make the same body.
pub fn encode(targets: &[&Target]) -> String {
    let entries: Vec<EntryRef<'_>> = targets
        .iter()
        .map(|t| EntryRef {
            kind: t.kind,
            cluster: t.cluster.as_deref(),
            name: &t.name,
            tags: &t.tags,
            cluster_tags: &t.cluster_tags,
            instance_types: &t.instance_types,
        })
        .collect();
    serde_json::to_string(&entries).expect("a target always serializes")
}

/// The targets of a bucket of `account` and `region`'s cache.
pub fn decode(account: &str, region: &str, body: &str) -> Result<Vec<Target>, serde_json::Error> {
    let entries: Vec<Entry> = serde_json::from_str(body)?;
    Ok(entries
        .into_iter()
        .map(|e| Target {
            account: account.to_string(),
            region: region.to_string(),
            kind: e.kind,
            cluster: e.cluster,
            name: e.name,
            tags: e.tags,
            cluster_tags: e.cluster_tags,
            instance_types: e.instance_types,
        })
        .collect())
}

/// `targets` laid out in `buckets` buckets: each non-empty bucket's body by index.
fn lay_out_in(targets: &[(String, &Target)], buckets: u32) -> BTreeMap<u32, (usize, String)> {
    let mut grouped: BTreeMap<u32, Vec<&Target>> = BTreeMap::new();
    for (key, target) in targets {
        grouped
            .entry(bucket_of(key, buckets))
            .or_default()
            .push(target);
    }
    grouped
        .into_iter()
        .map(|(index, members)| (index, (members.len(), encode(&members))))
        .collect()
}

/// `listed` laid out in buckets: in `keep` buckets while none of them outgrows
/// [`MAX_BUCKET_BYTES`], else in a count chosen for [`BUCKET_BYTES`] a bucket.
fn lay_out(listed: &[Target], keep: Option<u32>) -> (u32, BTreeMap<u32, String>) {
    let mut keyed: Vec<(String, &Target)> = listed.iter().map(|t| (t.key(), t)).collect();
    keyed.sort_by(|a, b| a.0.cmp(&b.0));
    keyed.dedup_by(|a, b| a.0 == b.0);
    let chosen = || {
        let bytes: usize = keyed.iter().map(|(_, t)| encode(&[t]).len()).sum();
        u32::try_from(bytes.div_ceil(BUCKET_BYTES))
            .unwrap_or(u32::MAX)
            .max(1)
    };
    let mut buckets = keep.filter(|&n| n > 0).unwrap_or_else(chosen);
    let mut relaid = keep != Some(buckets);
    loop {
        let laid = lay_out_in(&keyed, buckets);
        let outgrown = laid
            .values()
            .any(|(members, body)| *members > 1 && body.len() > MAX_BUCKET_BYTES);
        // Past twice as many buckets as targets, a bucket over the limit holds a few targets
        // that are each that large: laying out again would not shrink it.
        if !outgrown || buckets as usize >= 2 * keyed.len() {
            return (
                buckets,
                laid.into_iter().map(|(i, (_, b))| (i, b)).collect(),
            );
        }
        buckets = if relaid {
            buckets.saturating_mul(2)
        } else {
            relaid = true;
            chosen().max(buckets.saturating_mul(2))
        };
    }
}

/// What to write so the cache holds `listed`, given the buckets it holds now.
pub fn refresh(stored: &[StoredBucket], listed: &[Target]) -> Refresh {
    // Buckets of two counts are what a refresh that stopped part-way leaves: lay out afresh.
    let kept = stored
        .first()
        .map(|b| b.of)
        .filter(|&of| stored.iter().all(|b| b.of == of) && of > 0);
    let (buckets, laid) = lay_out(listed, kept);
    let by_index: HashMap<u32, &StoredBucket> = stored.iter().map(|b| (b.index, b)).collect();
    let put = laid
        .iter()
        .filter(|(index, body)| {
            by_index
                .get(index)
                .is_none_or(|had| had.of != buckets || had.body != **body)
        })
        .map(|(index, body)| (*index, body.clone()))
        .collect();
    let mut delete: Vec<u32> = stored
        .iter()
        .map(|b| b.index)
        .filter(|index| !laid.contains_key(index))
        .collect();
    delete.sort_unstable();
    delete.dedup();
    let relaid = kept != Some(buckets);
    Refresh {
        buckets,
        put,
        delete,
        relaid,
        forget_first: relaid && !stored.is_empty(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn target(i: usize) -> Target {
        let nodegroup = i.is_multiple_of(3);
        Target {
            account: "123456789012".into(),
            region: "eu-west-1".into(),
            kind: if nodegroup {
                TargetKind::Nodegroup
            } else {
                TargetKind::Asg
            },
            cluster: nodegroup.then(|| format!("cluster-{}", i / 10)),
            name: format!("group-{i}"),
            tags: BTreeMap::from([("team".to_string(), format!("t{}", i % 7))]),
            cluster_tags: BTreeMap::new(),
            instance_types: if i.is_multiple_of(2) {
                vec!["m7g.large".into()]
            } else {
                Vec::new()
            },
        }
    }

    fn fleet(n: usize) -> Vec<Target> {
        (0..n).map(target).collect()
    }

    /// The buckets `refresh` leaves, starting from `stored`.
    fn apply(stored: &[StoredBucket], r: &Refresh) -> Vec<StoredBucket> {
        let mut after: BTreeMap<u32, StoredBucket> = stored
            .iter()
            .filter(|b| !r.delete.contains(&b.index))
            .map(|b| (b.index, b.clone()))
            .collect();
        for (index, body) in &r.put {
            after.insert(
                *index,
                StoredBucket {
                    index: *index,
                    of: r.buckets,
                    body: body.clone(),
                },
            );
        }
        after.into_values().collect()
    }

    fn read(stored: &[StoredBucket]) -> Vec<Target> {
        let mut all: Vec<Target> = stored
            .iter()
            .flat_map(|b| decode("123456789012", "eu-west-1", &b.body).unwrap())
            .collect();
        all.sort_by_key(Target::key);
        all
    }

    fn sorted(mut targets: Vec<Target>) -> Vec<Target> {
        targets.sort_by_key(Target::key);
        targets
    }

    #[test]
    fn the_bucket_hash_is_fnv1a_so_it_never_changes_between_releases() {
        assert_eq!(fnv1a(""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a("a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a("foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn a_first_listing_is_laid_out_in_buckets_of_about_eight_kilobytes() {
        let listed = fleet(1_000);
        let r = refresh(&[], &listed);
        let bytes: usize = r.put.iter().map(|(_, b)| b.len()).sum();
        let average = bytes / r.buckets as usize;
        assert!(r.buckets > 1, "{} buckets", r.buckets);
        assert!(
            (BUCKET_BYTES / 2..=BUCKET_BYTES + 256).contains(&average),
            "{average} bytes a bucket"
        );
        assert!(r.relaid);
        assert!(!r.forget_first, "nothing stored to forget");
        // A target costs a small fraction of the kilobyte its own item was billed.
        assert!(
            bytes / listed.len() < 150,
            "{} bytes a target",
            bytes / listed.len()
        );
        assert_eq!(read(&apply(&[], &r)), sorted(listed));
    }

    #[test]
    fn a_listing_that_found_nothing_changed_writes_nothing() {
        let listed = fleet(500);
        let stored = apply(&[], &refresh(&[], &listed));
        let mut shuffled = listed.clone();
        shuffled.reverse();
        let again = refresh(&stored, &shuffled);
        assert!(again.is_empty(), "{again:?}");
        assert!(!again.relaid && !again.forget_first);
    }

    #[test]
    fn one_changed_target_rewrites_its_own_bucket_only() {
        let mut listed = fleet(500);
        let stored = apply(&[], &refresh(&[], &listed));
        listed[42].tags.insert("env".into(), "prod".into());
        let r = refresh(&stored, &listed);
        let key = listed[42].key();
        assert_eq!(r.put.len(), 1);
        assert_eq!(r.put[0].0, bucket_of(&key, r.buckets));
        assert!(r.delete.is_empty());
        assert_eq!(read(&apply(&stored, &r)), sorted(listed));
    }

    #[test]
    fn a_bucket_left_empty_is_deleted() {
        let listed = fleet(3);
        let stored = apply(&[], &refresh(&[], &listed));
        let r = refresh(&stored, &[]);
        assert_eq!(r.delete, stored.iter().map(|b| b.index).collect::<Vec<_>>());
        assert!(apply(&stored, &r).is_empty());
    }

    #[test]
    fn a_fleet_grown_past_its_buckets_is_laid_out_again_and_the_old_buckets_go() {
        let small = fleet(50);
        let stored = apply(&[], &refresh(&[], &small));
        assert_eq!(stored.len(), 1);
        let grown = fleet(20_000);
        let r = refresh(&stored, &grown);
        assert!(r.relaid && r.forget_first);
        assert!(r.buckets > 8, "{} buckets", r.buckets);
        let after = apply(&stored, &r);
        assert!(after.iter().all(|b| b.of == r.buckets));
        assert!(after.iter().all(|b| b.body.len() <= MAX_BUCKET_BYTES));
        assert_eq!(read(&after), sorted(grown));
    }

    #[test]
    fn buckets_of_two_counts_left_by_an_interrupted_refresh_are_laid_out_afresh() {
        let listed = fleet(2_000);
        let first = apply(&[], &refresh(&[], &listed));
        let mut mixed = first.clone();
        mixed.push(StoredBucket {
            index: 9_999,
            of: 10_000,
            body: encode(&[&listed[0]]),
        });
        let r = refresh(&mixed, &listed);
        assert!(r.relaid && r.forget_first);
        assert!(r.delete.contains(&9_999));
        assert_eq!(read(&apply(&mixed, &r)), sorted(listed));
    }

    #[test]
    fn a_target_larger_than_a_bucket_still_gets_one_of_its_own() {
        let mut huge = target(1);
        for i in 0..50 {
            huge.tags.insert(format!("{i:0>128}"), "v".repeat(256));
            huge.cluster_tags
                .insert(format!("{i:0>128}"), "v".repeat(256));
        }
        let mut listed = vec![huge];
        listed.extend(fleet(20).into_iter().skip(2));
        let r = refresh(&[], &listed);
        assert_eq!(read(&apply(&[], &r)), sorted(listed));
    }

    proptest! {
        /// Whatever the cache held and whatever was listed, the cache then reads back exactly
        /// the listing, and a second refresh of the same listing writes nothing.
        #[test]
        fn a_refresh_leaves_exactly_the_listing(before in 0usize..400, after in 0usize..400,
                                                 changed in proptest::collection::vec(0usize..400, 0..5)) {
            let stored = apply(&[], &refresh(&[], &fleet(before)));
            let mut listed = fleet(after);
            for i in changed {
                if let Some(t) = listed.get_mut(i) {
                    t.name.push_str("-renamed");
                }
            }
            let r = refresh(&stored, &listed);
            let now = apply(&stored, &r);
            prop_assert_eq!(read(&now), sorted(listed.clone()));
            prop_assert!(refresh(&now, &listed).is_empty());
        }
    }
}
