//! Karpenter's NodePools and NodeClaims (`karpenter.sh/v1`), reached as dynamic objects: their
//! CRDs ship with Karpenter, so there are no generated types, and curfew touches only
//! `spec.limits` and the claims' names.

use std::collections::BTreeMap;

use curfew_core::cluster::NodePool;
use curfew_core::ports::{ErrorKind, PortError, PortResult};
use k8s_openapi::api::core::v1::Node;
use kube::api::{DeleteParams, ListParams, Patch};
use kube::core::{ApiResource, DynamicObject, GroupVersionKind};
use kube::{Api, Client};
use serde_json::{json, Map, Value};

use crate::error::classify;
use crate::patch_params;

/// The label Karpenter puts on a NodeClaim and on its node, naming the NodePool it came from.
pub const NODEPOOL_LABEL: &str = "karpenter.sh/nodepool";

fn node_pools_api(client: Client) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk("karpenter.sh", "v1", "NodePool");
    Api::all_with(
        client,
        &ApiResource::from_gvk_with_plural(&gvk, "nodepools"),
    )
}

fn node_claims_api(client: Client) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk("karpenter.sh", "v1", "NodeClaim");
    Api::all_with(
        client,
        &ApiResource::from_gvk_with_plural(&gvk, "nodeclaims"),
    )
}

/// Every NodePool with its limits.
pub(crate) async fn node_pools(client: Client) -> PortResult<Vec<NodePool>> {
    let list = node_pools_api(client)
        .list(&ListParams::default())
        .await
        .map_err(|e| classify("listing Karpenter NodePools", e))?;
    list.items
        .iter()
        .map(|pool| {
            let name = pool.metadata.name.clone().unwrap_or_default();
            Ok(NodePool {
                limits: limits_of(&name, pool)?,
                name,
            })
        })
        .collect()
}

/// A NodePool's `spec.limits`. The CRD declares each limit int-or-string, so `cpu: 1000` is
/// stored as a number; curfew keeps every quantity as its string form.
fn limits_of(name: &str, pool: &DynamicObject) -> PortResult<Option<BTreeMap<String, String>>> {
    let Some(limits) = pool.data.get("spec").and_then(|s| s.get("limits")) else {
        return Ok(None);
    };
    let Value::Object(limits) = limits else {
        return if limits.is_null() {
            Ok(None)
        } else {
            Err(PortError::new(
                ErrorKind::Other,
                format!("NodePool {name} has spec.limits that are not a map: {limits}"),
            ))
        };
    };
    limits
        .iter()
        .map(|(resource, quantity)| match quantity {
            Value::String(q) => Ok((resource.clone(), q.clone())),
            Value::Number(n) => Ok((resource.clone(), n.to_string())),
            other => Err(PortError::new(
                ErrorKind::Other,
                format!("NodePool {name} has a limit {resource} that is not a quantity: {other}"),
            )),
        })
        .collect::<PortResult<BTreeMap<_, _>>>()
        .map(Some)
}

/// Sets a NodePool's `spec.limits` to exactly `limits`. A merge patch merges maps key by key,
/// so a limit the pool has now but `limits` lacks is sent as `null` to remove it (restoring
/// `{memory: 1000Gi}` over `{memory: 1000Gi, cpu: "0"}` must drop the cpu limit); that needs
/// the current limits first. Removing all limits needs no read. Nothing is written when the
/// limits are already as asked.
pub(crate) async fn set_node_pool_limits(
    client: Client,
    name: &str,
    limits: Option<&BTreeMap<String, String>>,
) -> PortResult<()> {
    let api = node_pools_api(client);
    let patch = match limits {
        None => json!({ "spec": { "limits": null } }),
        Some(limits) => {
            let pool = api
                .get(name)
                .await
                .map_err(|e| classify(&format!("reading NodePool {name}"), e))?;
            let current = limits_of(name, &pool)?.unwrap_or_default();
            if &current == limits {
                return Ok(());
            }
            let mut patched: Map<String, Value> = current
                .keys()
                .filter(|resource| !limits.contains_key(*resource))
                .map(|resource| (resource.clone(), Value::Null))
                .collect();
            patched.extend(
                limits
                    .iter()
                    .map(|(resource, q)| (resource.clone(), Value::String(q.clone()))),
            );
            json!({ "spec": { "limits": patched } })
        }
    };
    api.patch(name, &patch_params(), &Patch::Merge(&patch))
        .await
        .map_err(|e| classify(&format!("setting the limits of NodePool {name}"), e))?;
    Ok(())
}

/// Deletes the NodeClaims of NodePool `name` (Karpenter then drains and terminates their nodes)
/// and counts the nodes of the pool that still exist. Claims already being deleted are left
/// alone, so calling this again while Karpenter drains only counts.
pub(crate) async fn drain_node_pool(client: Client, name: &str) -> PortResult<usize> {
    let selector = format!("{NODEPOOL_LABEL}={name}");
    let by_pool = ListParams::default().labels(&selector);
    let claims = node_claims_api(client.clone());
    let listed = claims
        .list_metadata(&by_pool)
        .await
        .map_err(|e| classify(&format!("listing the NodeClaims of NodePool {name}"), e))?;
    for claim in &listed.items {
        if claim.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let claim_name = claim.metadata.name.as_deref().unwrap_or_default();
        match claims.delete(claim_name, &DeleteParams::default()).await {
            Ok(_) => {}
            // Gone between the list and the delete: that is what we wanted.
            Err(kube::Error::Api(status)) if status.code == 404 => {}
            Err(e) => {
                return Err(classify(
                    &format!("deleting NodeClaim {claim_name} of NodePool {name}"),
                    e,
                ))
            }
        }
    }
    let nodes = Api::<Node>::all(client)
        .list_metadata(&by_pool)
        .await
        .map_err(|e| classify(&format!("listing the nodes of NodePool {name}"), e))?;
    Ok(nodes.items.len())
}
