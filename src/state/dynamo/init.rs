//! `state init`: the table created with the state's key schema (`pk` and `sk`, both strings),
//! on-demand capacity and `expires` as its TTL attribute; a table that exists already is left
//! as it is, and is the answer only if its key schema is the state's. Must change nothing of
//! a table it did not create.

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_dynamodb::operation::create_table::builders::CreateTableFluentBuilder;
use aws_sdk_dynamodb::operation::describe_table::DescribeTableOutput;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
    TimeToLiveSpecification,
};

use super::client::{client, runtime, sdk_error, wait};
use crate::error::Error;
use crate::state::Table;
use crate::state::paced::{Answer, Db};

/// `state init`: creates the table (on-demand capacity, `expires` as its TTL attribute) and
/// waits until it is active. An existing table is an error, so nothing is changed by mistake.
pub fn init_table(table: &Table) -> Result<String, Error> {
    let rt = runtime()?;
    let t = table.clone();
    let result = wait(&rt, async move {
        let c = Db::new(client(&t).await, t.rate);
        match create(&c, &t.name).await {
            Ok(_) => {}
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_resource_in_use_exception()) =>
            {
                return existing(&c, &t.name).await;
            }
            Err(e) => return Err(sdk_error("cannot create the table", &e)),
        }
        wait_until_active(&c, &t.name).await?;
        turn_on_ttl(&c, &t.name).await?;
        Ok::<_, String>(format!(
            "created the DynamoDB table {} (on-demand capacity, TTL on `expires`); turn on \
             point-in-time recovery for it: aws dynamodb update-continuous-backups --table-name {} \
             --point-in-time-recovery-specification PointInTimeRecoveryEnabled=true",
            t.name, t.name
        ))
    });
    result.map_err(Error::State)
}

/// Asks for the table with the state's key schema: the one call that may find it exists.
async fn create(c: &Db, name: &str) -> Answer<CreateTableFluentBuilder> {
    let attr = |name: &str| {
        AttributeDefinition::builder()
            .attribute_name(name)
            .attribute_type(ScalarAttributeType::S)
            .build()
            .expect("name and type are set")
    };
    let key = |name: &str, kind| {
        KeySchemaElement::builder()
            .attribute_name(name)
            .key_type(kind)
            .build()
            .expect("name and type are set")
    };
    c.call(
        c.create_table()
            .table_name(name)
            .attribute_definitions(attr("pk"))
            .attribute_definitions(attr("sk"))
            .key_schema(key("pk", KeyType::Hash))
            .key_schema(key("sk", KeyType::Range))
            .billing_mode(BillingMode::PayPerRequest),
    )
    .await
}

/// The answer for a table that exists already. An init container or a pipeline runs `state
/// init` every time: a table this command made before is its answer, not an error. One with
/// another key schema is someone else's table, and stays an error.
async fn existing(c: &Db, name: &str) -> Result<String, String> {
    let d = c
        .call(c.describe_table().table_name(name))
        .await
        .map_err(|e| sdk_error("cannot read the existing table", &e))?;
    let (keys, types) = schema_of(&d);
    if state_key_schema(&keys, &types) {
        Ok(format!(
            "the table {name} exists already with the state's key schema (pk, sk); nothing was \
             changed"
        ))
    } else {
        Err(format!(
            "the table {name} exists already with another key schema ({}): it is not a \
             cognito-onboard state table; nothing was changed",
            keys.iter()
                .map(|(n, k)| format!("{n} {k}"))
                .collect::<Vec<_>>()
                .join(", ")
        ))
    }
}

/// A described table's key (attribute, key type) and its attributes' types, in words.
fn schema_of(d: &DescribeTableOutput) -> (Vec<(String, String)>, HashMap<String, String>) {
    let keys = d
        .table()
        .map(|t| t.key_schema())
        .unwrap_or_default()
        .iter()
        .map(|k| {
            (
                k.attribute_name().to_string(),
                k.key_type().as_str().to_string(),
            )
        })
        .collect();
    let types = d
        .table()
        .map(|t| t.attribute_definitions())
        .unwrap_or_default()
        .iter()
        .map(|a| {
            (
                a.attribute_name().to_string(),
                a.attribute_type().as_str().to_string(),
            )
        })
        .collect();
    (keys, types)
}

/// Waits (up to two minutes) for a new table to be active: its TTL cannot be set before.
async fn wait_until_active(c: &Db, name: &str) -> Result<(), String> {
    for _ in 0..120 {
        let d = c
            .call(c.describe_table().table_name(name))
            .await
            .map_err(|e| sdk_error("cannot read the new table", &e))?;
        if d.table()
            .and_then(|t| t.table_status())
            .is_some_and(|s| s.as_str() == "ACTIVE")
        {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    Ok(())
}

/// Makes `expires` the table's TTL attribute, which deletes old runs and ledger entries.
async fn turn_on_ttl(c: &Db, name: &str) -> Result<(), String> {
    c.call(
        c.update_time_to_live()
            .table_name(name)
            .time_to_live_specification(
                TimeToLiveSpecification::builder()
                    .enabled(true)
                    .attribute_name("expires")
                    .build()
                    .expect("name and flag are set"),
            ),
    )
    .await
    .map(drop)
    .map_err(|e| sdk_error("cannot turn on the table's TTL", &e))
}

/// Whether a table's key is the state's: `pk` (hash) and `sk` (range), both strings.
fn state_key_schema(keys: &[(String, String)], types: &HashMap<String, String>) -> bool {
    let mut keys = keys.to_vec();
    keys.sort();
    keys == [("pk".into(), "HASH".into()), ("sk".into(), "RANGE".into())]
        && ["pk", "sk"]
            .iter()
            .all(|k| types.get(*k).map(String::as_str) == Some("S"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema(keys: &[(&str, &str)], types: &[(&str, &str)]) -> bool {
        let keys: Vec<(String, String)> = keys
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        let types = types
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        state_key_schema(&keys, &types)
    }

    #[test]
    fn only_the_states_own_key_schema_is_taken_for_a_table_init_made() {
        let strings = [("pk", "S"), ("sk", "S")];
        assert!(schema(&[("pk", "HASH"), ("sk", "RANGE")], &strings));
        assert!(schema(&[("sk", "RANGE"), ("pk", "HASH")], &strings));
        assert!(!schema(&[("pk", "HASH")], &strings), "no range key");
        assert!(!schema(&[("id", "HASH"), ("sk", "RANGE")], &strings));
        assert!(!schema(&[("sk", "HASH"), ("pk", "RANGE")], &strings));
        assert!(!schema(
            &[("pk", "HASH"), ("sk", "RANGE")],
            &[("pk", "S"), ("sk", "N")]
        ));
    }
}
