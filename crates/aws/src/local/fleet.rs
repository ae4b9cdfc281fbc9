//! Seeding spoke fleets (ASGs and EKS node groups) in emulated accounts, reached the way the
//! hub reaches them: AssumeRole into each account.

use std::collections::BTreeMap;

use aws_config::{Region, SdkConfig};
use aws_credential_types::Credentials;
use curfew_core::ports::{ErrorKind, PortError, PortResult};
use curfew_core::target::{Sizes, Target, TargetKind};

use crate::error::classify;

/// One target to create.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FleetTarget {
    /// Spoke account.
    pub account: String,
    /// Region.
    pub region: String,
    /// ASG or node group.
    pub kind: TargetKind,
    /// Cluster (node groups).
    pub cluster: Option<String>,
    /// Name.
    pub name: String,
    /// Initial sizes.
    pub sizes: Sizes,
    /// Tags on the resource.
    pub tags: BTreeMap<String, String>,
    /// Tags on the cluster (node groups).
    pub cluster_tags: BTreeMap<String, String>,
}

impl FleetTarget {
    /// The curfew target this creates (what discovery will find).
    pub fn target(&self) -> Target {
        Target {
            account: self.account.clone(),
            region: self.region.clone(),
            kind: self.kind,
            cluster: self.cluster.clone(),
            name: self.name.clone(),
            tags: self.tags.clone(),
            cluster_tags: self.cluster_tags.clone(),
            instance_types: Vec::new(),
        }
    }
}

/// The spoke role every emulated account uses.
pub fn spoke_role_arn(account: &str) -> String {
    format!("arn:aws:iam::{account}:role/curfew-spoke")
}

fn tags(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// A deterministic demo fleet: in every account and region, `asgs` ASGs (alternating
/// env=dev/env=prod, assorted sizes) and two clusters (`dev-*` tagged env=dev, `prod-*`
/// env=prod) with `nodegroups` node groups each.
pub fn demo_fleet(
    accounts: &[String],
    regions: &[String],
    asgs: usize,
    nodegroups: usize,
) -> Vec<FleetTarget> {
    let mut fleet = Vec::new();
    let mut n = 0i32;
    for account in accounts {
        for region in regions {
            for i in 0..asgs {
                n += 1;
                let env = if i % 2 == 0 { "dev" } else { "prod" };
                let max = 2 + n % 7;
                let min = n % 3;
                let desired = min + (n % (max - min + 1));
                fleet.push(FleetTarget {
                    account: account.clone(),
                    region: region.clone(),
                    kind: TargetKind::Asg,
                    cluster: None,
                    name: format!("{env}-web-{i:02}"),
                    sizes: Sizes::new(min, max, desired),
                    tags: tags(&[
                        ("env", env),
                        ("team", if i % 3 == 0 { "data" } else { "web" }),
                    ]),
                    cluster_tags: BTreeMap::new(),
                });
            }
            for env in ["dev", "prod"] {
                for j in 0..nodegroups {
                    n += 1;
                    let max = 3 + n % 6;
                    let min = 1 + n % 2;
                    let desired = min + (n % (max - min + 1));
                    fleet.push(FleetTarget {
                        account: account.clone(),
                        region: region.clone(),
                        kind: TargetKind::Nodegroup,
                        cluster: Some(format!("{env}-cluster")),
                        name: format!("workers-{j}"),
                        sizes: Sizes::new(min, max, desired),
                        tags: tags(&[("pool", if j % 2 == 0 { "general" } else { "spot" })]),
                        cluster_tags: tags(&[("env", env)]),
                    });
                }
            }
        }
    }
    fleet
}

async fn assume(sdk: &SdkConfig, account: &str) -> PortResult<Credentials> {
    let out = aws_sdk_sts::Client::new(sdk)
        .assume_role()
        .role_arn(spoke_role_arn(account))
        .role_session_name("curfew-seed")
        .send()
        .await
        .map_err(|e| classify("assuming the spoke role to seed", e))?;
    let c = out
        .credentials
        .ok_or_else(|| PortError::new(ErrorKind::Other, "no credentials"))?;
    Ok(Credentials::new(
        c.access_key_id,
        c.secret_access_key,
        Some(c.session_token),
        None,
        "curfew-seed",
    ))
}

/// Creates every target of `fleet` in its account (through AssumeRole, once per account) and
/// region.
pub async fn seed_fleet(sdk: &SdkConfig, fleet: &[FleetTarget]) -> PortResult<()> {
    let mut clusters_made = std::collections::HashSet::new();
    let mut configs_made = std::collections::HashSet::new();
    let mut sessions: std::collections::HashMap<&str, Credentials> =
        std::collections::HashMap::new();
    for t in fleet {
        let creds = match sessions.get(t.account.as_str()) {
            Some(creds) => creds.clone(),
            None => {
                let creds = assume(sdk, &t.account).await?;
                sessions.insert(&t.account, creds.clone());
                creds
            }
        };
        let region = Region::new(t.region.clone());
        match t.kind {
            TargetKind::Asg => {
                let asg = aws_sdk_autoscaling::Client::from_conf(
                    aws_sdk_autoscaling::config::Builder::from(sdk)
                        .region(region)
                        .credentials_provider(creds)
                        .build(),
                );
                if configs_made.insert((t.account.clone(), t.region.clone())) {
                    asg.create_launch_configuration()
                        .launch_configuration_name("curfew-demo")
                        .image_id("ami-12c6146b")
                        .instance_type("t3.micro")
                        .send()
                        .await
                        .map_err(|e| classify("creating a launch configuration", e))?;
                }
                let mut request = asg
                    .create_auto_scaling_group()
                    .auto_scaling_group_name(&t.name)
                    .launch_configuration_name("curfew-demo")
                    .availability_zones(format!("{}a", t.region))
                    .min_size(t.sizes.min)
                    .max_size(t.sizes.max)
                    .desired_capacity(t.sizes.desired);
                for (k, v) in &t.tags {
                    request = request.tags(
                        aws_sdk_autoscaling::types::Tag::builder()
                            .key(k)
                            .value(v)
                            .resource_id(&t.name)
                            .resource_type("auto-scaling-group")
                            .propagate_at_launch(true)
                            .build(),
                    );
                }
                request
                    .send()
                    .await
                    .map_err(|e| classify(&format!("creating ASG {}", t.name), e))?;
            }
            TargetKind::Nodegroup => {
                let eks = aws_sdk_eks::Client::from_conf(
                    aws_sdk_eks::config::Builder::from(sdk)
                        .region(region)
                        .credentials_provider(creds)
                        .build(),
                );
                let cluster = t.cluster.clone().unwrap_or_else(|| "default".into());
                if clusters_made.insert((t.account.clone(), t.region.clone(), cluster.clone())) {
                    eks.create_cluster()
                        .name(&cluster)
                        .role_arn(format!("arn:aws:iam::{}:role/eks-cluster", t.account))
                        .resources_vpc_config(
                            aws_sdk_eks::types::VpcConfigRequest::builder()
                                .subnet_ids("subnet-12345678")
                                .build(),
                        )
                        .set_tags(Some(t.cluster_tags.clone().into_iter().collect()))
                        .send()
                        .await
                        .map_err(|e| classify(&format!("creating cluster {cluster}"), e))?;
                }
                eks.create_nodegroup()
                    .cluster_name(&cluster)
                    .nodegroup_name(&t.name)
                    .node_role(format!("arn:aws:iam::{}:role/eks-node", t.account))
                    .subnets("subnet-12345678")
                    .scaling_config(
                        aws_sdk_eks::types::NodegroupScalingConfig::builder()
                            .min_size(t.sizes.min)
                            .max_size(t.sizes.max)
                            .desired_size(t.sizes.desired)
                            .build(),
                    )
                    .set_tags(Some(t.tags.clone().into_iter().collect()))
                    .send()
                    .await
                    .map_err(|e| {
                        classify(&format!("creating node group {cluster}/{}", t.name), e)
                    })?;
            }
        }
    }
    Ok(())
}
