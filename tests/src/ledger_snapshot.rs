//! Ledger tables as DynamoDB JSON (`{"S": ...}`, `{"N": ...}`, ...), the shape `aws dynamodb scan`
//! prints: how a table written by one release is kept as a fixture and loaded into the local stack
//! to test that a later release reads it (`tests/fixtures/ledger-*.json`).

use anyhow::{bail, Context, Result};
use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_dynamodb::Client;
use serde_json::{json, Map, Value};
use std::collections::HashMap;

pub type Item = HashMap<String, AttributeValue>;

/// One attribute in DynamoDB JSON.
pub fn to_json(value: &AttributeValue) -> Value {
    match value {
        AttributeValue::S(s) => json!({ "S": s }),
        AttributeValue::N(n) => json!({ "N": n }),
        AttributeValue::Bool(b) => json!({ "BOOL": b }),
        AttributeValue::Null(_) => json!({ "NULL": true }),
        AttributeValue::Ss(set) => json!({ "SS": set }),
        AttributeValue::Ns(set) => json!({ "NS": set }),
        AttributeValue::L(list) => json!({ "L": list.iter().map(to_json).collect::<Vec<_>>() }),
        AttributeValue::M(map) => json!({ "M": item_to_json(map) }),
        AttributeValue::B(blob) => {
            json!({ "B": blob.as_ref().iter().map(|b| format!("{b:02x}")).collect::<String>() })
        }
        other => json!({ "UNSUPPORTED": format!("{other:?}") }),
    }
}

/// One item in DynamoDB JSON, attributes in name order.
pub fn item_to_json(item: &Item) -> Value {
    let mut names: Vec<&String> = item.keys().collect();
    names.sort();
    Value::Object(
        names
            .into_iter()
            .map(|name| (name.clone(), to_json(&item[name])))
            .collect::<Map<_, _>>(),
    )
}

/// The reverse of [`to_json`].
pub fn from_json(value: &Value) -> Result<AttributeValue> {
    let Some((tag, inner)) = value.as_object().and_then(|o| o.iter().next()) else {
        bail!("not a DynamoDB JSON attribute: {value}");
    };
    let text = |v: &Value| v.as_str().map(str::to_owned).context("expected a string");
    let texts = |v: &Value| -> Result<Vec<String>> {
        v.as_array()
            .context("expected a list")?
            .iter()
            .map(text)
            .collect()
    };
    Ok(match tag.as_str() {
        "S" => AttributeValue::S(text(inner)?),
        "N" => AttributeValue::N(text(inner)?),
        "BOOL" => AttributeValue::Bool(inner.as_bool().context("expected a boolean")?),
        "NULL" => AttributeValue::Null(true),
        "SS" => AttributeValue::Ss(texts(inner)?),
        "NS" => AttributeValue::Ns(texts(inner)?),
        "L" => AttributeValue::L(
            inner
                .as_array()
                .context("expected a list")?
                .iter()
                .map(from_json)
                .collect::<Result<_>>()?,
        ),
        "M" => AttributeValue::M(item_from_json(inner)?),
        "B" => {
            let hex = text(inner)?;
            let bytes = (0..hex.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(hex.get(i..i + 2).unwrap_or("zz"), 16))
                .collect::<Result<Vec<u8>, _>>()
                .context("binary attribute is not hex")?;
            AttributeValue::B(Blob::new(bytes))
        }
        other => bail!("unsupported DynamoDB JSON type {other}"),
    })
}

pub fn item_from_json(value: &Value) -> Result<Item> {
    value
        .as_object()
        .context("an item is a JSON object")?
        .iter()
        .map(|(name, v)| Ok((name.clone(), from_json(v)?)))
        .collect()
}

/// Every item of a table, sorted by key.
pub async fn scan(client: &Client, table: &str) -> Result<Vec<Item>> {
    let mut items = Vec::new();
    let mut start: Option<Item> = None;
    loop {
        let out = client
            .scan()
            .table_name(table)
            .set_exclusive_start_key(start.take())
            .send()
            .await
            .context("scanning the ledger")?;
        items.extend(out.items.unwrap_or_default());
        match out.last_evaluated_key {
            Some(key) if !key.is_empty() => start = Some(key),
            _ => break,
        }
    }
    let key = |item: &Item| {
        let text = |name: &str| {
            item.get(name)
                .and_then(|v| v.as_s().ok())
                .cloned()
                .unwrap_or_default()
        };
        (text("pk"), text("sk"))
    };
    items.sort_by_key(key);
    Ok(items)
}

/// Put every item of a snapshot into a table (one PutItem each: fixtures are small).
pub async fn load(client: &Client, table: &str, snapshot: &Value) -> Result<usize> {
    let items = snapshot
        .get("items")
        .and_then(Value::as_array)
        .context("a snapshot has an `items` list")?;
    for item in items {
        client
            .put_item()
            .table_name(table)
            .set_item(Some(item_from_json(item)?))
            .send()
            .await
            .context("loading a snapshot item")?;
    }
    Ok(items.len())
}
