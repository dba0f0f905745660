//! `iam-requests`: moto's request recordings of a run -> the authorizations each function needed
//! (see `replmon_tests::iam_record`), as JSON for `tools/iam-proof/prove.mjs`.
//!
//!     iam-requests --recordings .local/iam/recordings --out .local/iam/requests.json
//!
//! It judges nothing: unknown operations and unreadable documents are written out as problems
//! for the evaluator to fail on.

use anyhow::{bail, Context, Result};
use replmon_tests::iam_record::Recording;
use serde_json::json;
use std::path::PathBuf;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let option = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .map(PathBuf::from)
    };
    let (Some(recordings), Some(out)) = (option("--recordings"), option("--out")) else {
        bail!("usage: iam-requests --recordings DIR --out FILE");
    };
    let recording = Recording::read_dir(&recordings)?;
    let authorizations: Vec<serde_json::Value> = recording
        .authorizations
        .iter()
        .map(|(row, requests)| {
            let mut value = json!(row);
            value["requests"] = json!(requests);
            value
        })
        .collect();
    let document = json!({
        "files": recording.files,
        "requests": recording.requests,
        "requests_by_caller": recording.requests_by_caller,
        "untagged": recording.untagged,
        "unreadable": recording.unreadable,
        "authorizations": authorizations,
    });
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&out, serde_json::to_string_pretty(&document)?)
        .with_context(|| format!("writing {}", out.display()))?;
    println!(
        "iam-requests: {} requests in {} recordings ({} from the functions and the CLI, {} untagged harness requests, {} unreadable); {} distinct authorizations -> {}",
        recording.requests,
        recording.files,
        recording.requests_by_caller.values().sum::<u64>(),
        recording.untagged,
        recording.unreadable.len(),
        recording.authorizations.len(),
        out.display()
    );
    Ok(())
}
