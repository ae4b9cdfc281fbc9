//! Creating the state table (local mode and tests; in AWS the CDK hub stack owns it).

use aws_sdk_dynamodb::types::builders::ProjectionBuilder;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, CreateGlobalSecondaryIndexAction, GlobalSecondaryIndex,
    GlobalSecondaryIndexUpdate, KeySchemaElement, KeyType, Projection, ProjectionType,
    ScalarAttributeType,
};
use aws_sdk_dynamodb::Client;
use curfew_core::ports::{ErrorKind, PortError, PortResult};

use crate::error::classify;

fn key(name: &str, kind: KeyType) -> PortResult<KeySchemaElement> {
    KeySchemaElement::builder()
        .attribute_name(name)
        .key_type(kind)
        .build()
        .map_err(|e| PortError::with_source(ErrorKind::Invalid, "building the key schema", e))
}

fn attr(name: &str) -> PortResult<AttributeDefinition> {
    AttributeDefinition::builder()
        .attribute_name(name)
        .attribute_type(ScalarAttributeType::S)
        .build()
        .map_err(|e| PortError::with_source(ErrorKind::Invalid, "building the key schema", e))
}

fn index(name: &str) -> PortResult<GlobalSecondaryIndex> {
    indexed(
        name,
        Projection::builder().projection_type(ProjectionType::All),
    )
}

/// The asleep index: the baselines lease items carry, and nothing else of them, so a lease's
/// own writes never rewrite its entry (see `baselines.rs`).
fn asleep_index() -> PortResult<GlobalSecondaryIndex> {
    indexed(
        ASLEEP_INDEX,
        Projection::builder()
            .projection_type(ProjectionType::Include)
            .non_key_attributes("baseline"),
    )
}

fn indexed(name: &str, projection: ProjectionBuilder) -> PortResult<GlobalSecondaryIndex> {
    GlobalSecondaryIndex::builder()
        .index_name(name)
        .key_schema(key(&format!("{name}pk"), KeyType::Hash)?)
        .key_schema(key(&format!("{name}sk"), KeyType::Range)?)
        .projection(projection.build())
        .build()
        .map_err(|e| PortError::with_source(ErrorKind::Invalid, "building an index", e))
}

/// The index a table made before it had one gains on its next `create_table`.
const ASLEEP_INDEX: &str = "gsi3";

/// Creates the state table with the same keys and indexes as the hub stack. Idempotent: an
/// existing table is left as it is, but for the asleep index (gsi3), which one made by an
/// earlier version gains.
pub async fn create_table(client: &Client, table: &str) -> PortResult<()> {
    let result = client
        .create_table()
        .table_name(table)
        .billing_mode(BillingMode::PayPerRequest)
        .key_schema(key("pk", KeyType::Hash)?)
        .key_schema(key("sk", KeyType::Range)?)
        .attribute_definitions(attr("pk")?)
        .attribute_definitions(attr("sk")?)
        .attribute_definitions(attr("gsi1pk")?)
        .attribute_definitions(attr("gsi1sk")?)
        .attribute_definitions(attr("gsi2pk")?)
        .attribute_definitions(attr("gsi2sk")?)
        .attribute_definitions(attr("gsi3pk")?)
        .attribute_definitions(attr("gsi3sk")?)
        .global_secondary_indexes(index("gsi1")?)
        .global_secondary_indexes(index("gsi2")?)
        .global_secondary_indexes(asleep_index()?)
        .send()
        .await;
    match result {
        Ok(_) => Ok(()),
        Err(e) => {
            let e = classify("creating the state table", e);
            if e.kind == ErrorKind::InUse {
                add_asleep_index(client, table).await
            } else {
                Err(e)
            }
        }
    }
}

/// Adds the asleep index to an existing table that lacks it.
async fn add_asleep_index(client: &Client, table: &str) -> PortResult<()> {
    let described = client
        .describe_table()
        .table_name(table)
        .send()
        .await
        .map_err(|e| classify("describing the state table", e))?;
    let has_it = described
        .table()
        .map(|t| t.global_secondary_indexes())
        .unwrap_or_default()
        .iter()
        .any(|i| i.index_name() == Some(ASLEEP_INDEX));
    if has_it {
        return Ok(());
    }
    let gsi = asleep_index()?;
    let create = CreateGlobalSecondaryIndexAction::builder()
        .index_name(ASLEEP_INDEX)
        .set_key_schema(Some(gsi.key_schema().to_vec()))
        .set_projection(gsi.projection().cloned())
        .build()
        .map_err(|e| PortError::with_source(ErrorKind::Invalid, "building an index", e))?;
    client
        .update_table()
        .table_name(table)
        .attribute_definitions(attr("gsi3pk")?)
        .attribute_definitions(attr("gsi3sk")?)
        .global_secondary_index_updates(
            GlobalSecondaryIndexUpdate::builder().create(create).build(),
        )
        .send()
        .await
        .map_err(|e| classify("adding the asleep index to the state table", e))?;
    Ok(())
}
