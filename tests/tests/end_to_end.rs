//! End to end: the real `replication-events` binary under `cargo lambda watch`, invoked with
//! `cargo lambda invoke --data-file` for every fixture in events/manifest.json, against a fresh
//! local stack each time. Each fixture is delivered three times: pages and ledger must be exactly
//! what one delivery gives (at-least-once delivery is harmless).

use anyhow::{bail, Context, Result};
use replmon_tests::{
    build_functions, invoke, repo_root, sdk_config, start_watch, MotoServer, Stack, StackNames,
};
use serde::Deserialize;
use std::collections::BTreeSet;

#[derive(Debug, Deserialize)]
struct Manifest {
    fixtures: Vec<Fixture>,
}

#[derive(Debug, Deserialize)]
struct Fixture {
    file: String,
    outcome: String,
    batch_item_failures: Vec<String>,
    pages: Vec<ExpectedPage>,
    notices: Vec<ExpectedPage>,
    ledger_objects: Vec<ExpectedObject>,
}

#[derive(Debug, Deserialize)]
struct ExpectedPage {
    kind: String,
    severity: String,
    #[serde(default)]
    reason: Option<String>,
}

#[derive(Debug, Deserialize, PartialEq, Eq, PartialOrd, Ord)]
struct ExpectedObject {
    key: String,
    version_id: String,
    destination_bucket: String,
    status: String,
}

fn batch_failures(stdout: &str) -> Result<Vec<String>> {
    let value: serde_json::Value = serde_json::from_str(stdout.trim())
        .with_context(|| format!("response is not JSON: {stdout}"))?;
    Ok(value["batchItemFailures"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|f| f["itemIdentifier"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default())
}

async fn check_fixture(moto: &MotoServer, port: u16, fixture: &Fixture) -> Result<()> {
    moto.reset().await?;
    let sdk = sdk_config(&moto.endpoint()).await;
    let stack = Stack::provision(&sdk, StackNames::default()).await?;

    let first = invoke(port, "replication-events", &fixture.file)?;
    match fixture.outcome.as_str() {
        "ok" if !first.success => bail!(
            "expected success, got failure: {}{}",
            first.stdout,
            first.stderr
        ),
        "error" if first.success => bail!("expected the invocation to fail, got: {}", first.stdout),
        _ => {}
    }
    if first.success {
        let mut failures = batch_failures(&first.stdout)?;
        failures.sort();
        let mut expected = fixture.batch_item_failures.clone();
        expected.sort();
        if failures != expected {
            bail!("batchItemFailures {failures:?}, expected {expected:?}");
        }
    }

    let pages = stack.drain_pages().await?;
    let summarize = |urgency: &str| -> BTreeSet<(String, String, String)> {
        pages
            .iter()
            .filter(|p| p.attribute("urgency") == urgency)
            .map(|p| {
                (
                    p.attribute("kind").to_owned(),
                    p.attribute("severity").to_owned(),
                    p.attribute("reason").to_owned(),
                )
            })
            .collect()
    };
    let expect = |list: &[ExpectedPage]| -> BTreeSet<(String, String, String)> {
        list.iter()
            .map(|p| {
                (
                    p.kind.clone(),
                    p.severity.clone(),
                    p.reason.clone().unwrap_or_default(),
                )
            })
            .collect()
    };
    let page_count = pages
        .iter()
        .filter(|p| p.attribute("urgency") == "page")
        .count();
    if page_count != fixture.pages.len() || summarize("page") != expect(&fixture.pages) {
        bail!(
            "pages {:?}, expected {:?}",
            summarize("page"),
            fixture.pages
        );
    }
    if summarize("notice") != expect(&fixture.notices) {
        bail!(
            "notices {:?}, expected {:?}",
            summarize("notice"),
            fixture.notices
        );
    }
    for page in &pages {
        if page.subject.len() > 100
            || page.message.len() > 16 * 1024
            || page.attribute("source_bucket").is_empty()
        {
            bail!("page out of bounds or without attributes: {page:?}");
        }
    }

    let objects: BTreeSet<ExpectedObject> = stack
        .ledger_entities("object")
        .await?
        .into_iter()
        .map(|o| ExpectedObject {
            key: o.get("key").cloned().unwrap_or_default(),
            version_id: o.get("version_id").cloned().unwrap_or_default(),
            destination_bucket: o.get("destination_bucket").cloned().unwrap_or_default(),
            status: o.get("status").cloned().unwrap_or_default(),
        })
        .collect();
    let expected: BTreeSet<ExpectedObject> = fixture
        .ledger_objects
        .iter()
        .map(|o| ExpectedObject {
            key: o.key.clone(),
            version_id: o.version_id.clone(),
            destination_bucket: o.destination_bucket.clone(),
            status: o.status.clone(),
        })
        .collect();
    if objects != expected {
        bail!("ledger objects {objects:?}, expected {expected:?}");
    }

    // Two more deliveries of the same payload: same response kind, no new pages, same ledger.
    let ledger_once = stack.ledger_items().await?;
    for _ in 0..2 {
        let again = invoke(port, "replication-events", &fixture.file)?;
        if again.success != first.success {
            bail!(
                "redelivery answered differently: {}{}",
                again.stdout,
                again.stderr
            );
        }
    }
    let extra = stack.drain_pages().await?;
    if !extra.is_empty() {
        bail!(
            "redelivery paged again: {:?}",
            extra.iter().map(|p| &p.subject).collect::<Vec<_>>()
        );
    }
    if stack.ledger_items().await? != ledger_once {
        bail!("redelivery changed the ledger");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_fixture_under_cargo_lambda_watch() {
    let manifest: Manifest = serde_json::from_str(
        &std::fs::read_to_string(repo_root().join("events/manifest.json")).unwrap(),
    )
    .unwrap();
    assert!(manifest.fixtures.len() >= 20);

    build_functions();

    let moto = MotoServer::start().unwrap();
    let sdk = sdk_config(&moto.endpoint()).await;
    let stack = Stack::provision(&sdk, StackNames::default()).await.unwrap();
    let watch = start_watch(&stack.function_env(&moto.endpoint())).unwrap();

    let mut failures = Vec::new();
    for fixture in &manifest.fixtures {
        match check_fixture(&moto, watch.port, fixture).await {
            Ok(()) => eprintln!("ok    {}", fixture.file),
            Err(error) => {
                eprintln!("FAIL  {}: {error:#}", fixture.file);
                failures.push(format!("{}: {error:#}", fixture.file));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} fixtures failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
