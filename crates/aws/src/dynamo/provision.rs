//! Creating the state table (local mode and tests; in AWS the CDK hub stack owns it).

use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection,
    ProjectionType, ScalarAttributeType,
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
    GlobalSecondaryIndex::builder()
        .index_name(name)
        .key_schema(key(&format!("{name}pk"), KeyType::Hash)?)
        .key_schema(key(&format!("{name}sk"), KeyType::Range)?)
        .projection(
            Projection::builder()
                .projection_type(ProjectionType::All)
                .build(),
        )
        .build()
        .map_err(|e| PortError::with_source(ErrorKind::Invalid, "building an index", e))
}

/// Creates the state table with the same keys and indexes as the hub stack. Idempotent: an
/// existing table is left as it is.
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
        .global_secondary_indexes(index("gsi1")?)
        .global_secondary_indexes(index("gsi2")?)
        .send()
        .await;
    match result {
        Ok(_) => Ok(()),
        Err(e) => {
            let e = classify("creating the state table", e);
            if e.kind == ErrorKind::InUse {
                Ok(())
            } else {
                Err(e)
            }
        }
    }
}
