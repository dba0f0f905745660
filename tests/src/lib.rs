//! The local AWS stack for tests and the demo: a real moto server on 127.0.0.1 started from the
//! project's virtualenv, provisioned through the real SDK clients, and read back the way an
//! operator would (pages from an SQS queue subscribed to the page topic, the ledger table).

use anyhow::{bail, Context, Result};
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType,
    ScalarAttributeType, TimeToLiveSpecification,
};
use aws_sdk_s3::types::{
    BucketLocationConstraint, BucketVersioningStatus, CreateBucketConfiguration,
    DeleteMarkerReplication, DeleteMarkerReplicationStatus, Destination, ReplicationConfiguration,
    ReplicationRule, ReplicationRuleFilter, ReplicationRuleStatus, ServerSideEncryption,
    ServerSideEncryptionByDefault, ServerSideEncryptionConfiguration, ServerSideEncryptionRule,
    VersioningConfiguration,
};
use aws_sdk_sqs::types::QueueAttributeName;
use std::collections::{BTreeMap, HashMap};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub mod browser;
pub mod event_source;
pub mod fault_proxy;
pub mod iam_record;
pub mod ledger_snapshot;
pub mod regions;
pub mod replication_metrics;
pub mod replication_sim;
pub mod runtime_api;
pub mod s3control_sim;

pub use regions::REPLICA_REGION;

/// The monitor's region, and the source bucket's (the replica is in [`REPLICA_REGION`]).
pub const REGION: &str = "us-east-1";

/// The repository root (this crate lives in `tests/`).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(PathBuf::from)
        .unwrap_or_default()
}

/// A program installed in the project's virtualenv by `scripts/setup`.
pub fn venv_bin(name: &str) -> Result<PathBuf> {
    let path = repo_root().join(".venv/bin").join(name);
    if !path.exists() {
        bail!("{} not found: run `scripts/setup` first (it installs moto server and cargo-lambda into .venv)", path.display());
    }
    Ok(path)
}

/// A free TCP port on 127.0.0.1 (the OS picks; released before use, so a tiny race remains).
pub fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Wait until something accepts connections on the port.
pub fn wait_for_port(port: u16, timeout: Duration) -> Result<()> {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    bail!("nothing listening on 127.0.0.1:{port} after {timeout:?}")
}

/// The child gets SIGTERM when this process dies, even when killed before `Drop` runs, so an
/// interrupted test run leaves no server behind.
pub fn die_with_parent(command: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
    unsafe {
        command.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// `--name N` from a benchmark's arguments, or `default`.
pub fn numeric_option(args: &[String], name: &str, default: u64) -> Result<u64> {
    match args.iter().position(|a| a == name) {
        Some(i) => args
            .get(i + 1)
            .with_context(|| format!("{name} expects a value"))?
            .parse()
            .with_context(|| format!("{name} expects a number")),
        None => Ok(default),
    }
}

/// A moto server process, stopped when dropped.
pub struct MotoServer {
    child: Child,
    pub port: u16,
}

impl MotoServer {
    pub fn start() -> Result<Self> {
        Self::start_with(None)
    }

    /// Serve HTTPS with this certificate and key (PEM files): clients must trust the certificate
    /// (`SSL_CERT_FILE`) and use [`MotoServer::tls_endpoint`].
    pub fn start_tls(certificate: &Path, key: &Path) -> Result<Self> {
        Self::start_with(Some((certificate, key)))
    }

    fn start_with(tls: Option<(&Path, &Path)>) -> Result<Self> {
        let port = free_port()?;
        // moto_server, with each DynamoDB request made atomic as on AWS (tests/moto_server.py).
        let mut command = Command::new(venv_bin("python")?);
        command.arg(repo_root().join("tests/moto_server.py")).args([
            "-H",
            "127.0.0.1",
            "-p",
            &port.to_string(),
        ]);
        if let Some((certificate, key)) = tls {
            command.arg("-c").arg(certificate).arg("-k").arg(key);
        }
        // The IAM proof's recordings, when the run asks for them (scripts/test).
        command.envs(iam_record::moto_recorder_env(port)?);
        command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        die_with_parent(&mut command);
        let child = command.spawn().context("starting moto_server")?;
        let server = MotoServer { child, port };
        wait_for_port(port, Duration::from_secs(30)).context("moto server did not start")?;
        Ok(server)
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The endpoint of a server started with [`MotoServer::start_tls`].
    pub fn tls_endpoint(&self) -> String {
        format!("https://localhost:{}", self.port)
    }

    /// Wipe every resource (moto's own reset API).
    pub async fn reset(&self) -> Result<()> {
        reset(&self.endpoint()).await
    }
}

impl Drop for MotoServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `POST /moto-api/reset` without an HTTP client crate: one request over a socket.
pub async fn reset(endpoint: &str) -> Result<()> {
    use std::io::{Read, Write};
    let address = endpoint.trim_start_matches("http://").to_owned();
    tokio::task::spawn_blocking(move || -> Result<()> {
        let mut stream = TcpStream::connect(&address)?;
        write!(stream, "POST /moto-api/reset HTTP/1.1\r\nHost: {address}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")?;
        let mut response = String::new();
        stream.read_to_string(&mut response)?;
        if !response.starts_with("HTTP/1.1 200") && !response.starts_with("HTTP/1.0 200") {
            bail!("moto reset answered: {}", response.lines().next().unwrap_or(""));
        }
        Ok(())
    })
    .await?
}

/// SDK configuration for the local stack: its endpoint, a fixed region, dummy credentials.
pub async fn sdk_config(endpoint: &str) -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .http_client(replmon_shared::aws::http_client())
        .endpoint_url(endpoint)
        .region(Region::new(REGION))
        .test_credentials()
        .load()
        .await
}

/// S3 against an overridden endpoint needs path-style addressing (no `bucket.localhost` names).
pub fn s3_client(sdk: &SdkConfig) -> aws_sdk_s3::Client {
    let config = aws_sdk_s3::config::Builder::from(sdk)
        .force_path_style(true)
        .build();
    aws_sdk_s3::Client::from_conf(config)
}

/// A bucket with versioning enabled (replication needs it on both sides), in [`REGION`].
pub async fn versioned_bucket(s3: &aws_sdk_s3::Client, bucket: &str) -> Result<()> {
    versioned_bucket_in(s3, bucket, REGION).await
}

/// A versioned bucket located in `region` (its `LocationConstraint`; us-east-1 takes none).
pub async fn versioned_bucket_in(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    region: &str,
) -> Result<()> {
    let location = (region != "us-east-1").then(|| {
        CreateBucketConfiguration::builder()
            .location_constraint(BucketLocationConstraint::from(region))
            .build()
    });
    s3.create_bucket()
        .bucket(bucket)
        .set_create_bucket_configuration(location)
        .send()
        .await
        .with_context(|| format!("creating bucket {bucket}"))?;
    s3.put_bucket_versioning()
        .bucket(bucket)
        .versioning_configuration(
            VersioningConfiguration::builder()
                .status(BucketVersioningStatus::Enabled)
                .build(),
        )
        .send()
        .await?;
    Ok(())
}

/// An enabled rule replicating keys under `prefix` to `replica` (no metrics nor RTC).
pub fn replication_rule(
    id: &str,
    priority: i32,
    prefix: &str,
    replica: &str,
    delete_markers: DeleteMarkerReplicationStatus,
) -> Result<ReplicationRule> {
    Ok(ReplicationRule::builder()
        .id(id)
        .priority(priority)
        .status(ReplicationRuleStatus::Enabled)
        .filter(ReplicationRuleFilter::builder().prefix(prefix).build())
        .delete_marker_replication(
            DeleteMarkerReplication::builder()
                .status(delete_markers)
                .build(),
        )
        .destination(
            Destination::builder()
                .bucket(format!("arn:aws:s3:::{replica}"))
                .build()?,
        )
        .build()?)
}

/// Two versioned buckets, the first (in [`REGION`]) replicating everything to the second (in
/// [`REPLICA_REGION`]) under one rule (no replication metrics nor RTC, as a quick set-up has it).
pub async fn replicated_pair(
    s3: &aws_sdk_s3::Client,
    source: &str,
    replica: &str,
    rule_id: &str,
) -> Result<()> {
    replicated_pair_in(s3, (source, REGION), (replica, REPLICA_REGION), rule_id).await
}

/// [`replicated_pair`] with each bucket's region given (the same twice: same-region replication).
pub async fn replicated_pair_in(
    s3: &aws_sdk_s3::Client,
    (source, source_region): (&str, &str),
    (replica, replica_region): (&str, &str),
    rule_id: &str,
) -> Result<()> {
    versioned_bucket_in(s3, source, source_region).await?;
    versioned_bucket_in(s3, replica, replica_region).await?;
    let rule = replication_rule(
        rule_id,
        1,
        "",
        replica,
        DeleteMarkerReplicationStatus::Enabled,
    )?;
    s3.put_bucket_replication()
        .bucket(source)
        .replication_configuration(
            ReplicationConfiguration::builder()
                .role("arn:aws:iam::123456789012:role/replmon-demo-replication")
                .rules(rule)
                .build()?,
        )
        .send()
        .await
        .context("configuring replication")?;
    Ok(())
}

/// Names of the provisioned resources.
#[derive(Debug, Clone)]
pub struct StackNames {
    pub table: String,
    pub topic_name: String,
    pub inbox_queue: String,
    pub source_bucket: String,
    pub replica_bucket: String,
    pub rule_id: String,
    /// The monitor's and the source bucket's region.
    pub source_region: String,
    /// The replica bucket's region: where S3 publishes `ReplicationLatency` and the pending
    /// metrics, and where their alarms live.
    pub replica_region: String,
}

impl StackNames {
    /// The same stack with the replica in the source's region (same-region replication).
    pub fn same_region(self) -> Self {
        StackNames {
            replica_region: self.source_region.clone(),
            ..self
        }
    }
}

impl Default for StackNames {
    fn default() -> Self {
        // The names the fixtures in events/ use.
        StackNames {
            table: "replmon-ledger".into(),
            topic_name: "replmon-pages".into(),
            inbox_queue: "replmon-pages-inbox".into(),
            source_bucket: "replmon-demo-source".into(),
            replica_bucket: "replmon-demo-replica".into(),
            rule_id: "replicate-everything".into(),
            source_region: REGION.into(),
            replica_region: REPLICA_REGION.into(),
        }
    }
}

/// A provisioned stack and the clients to read it back.
pub struct Stack {
    pub names: StackNames,
    /// The source bucket's default encryption key (SSE-KMS, in the source region), as on the
    /// documented example pair; `None` on a stack attached to rather than provisioned.
    pub source_key_arn: Option<String>,
    pub topic_arn: String,
    pub inbox_url: String,
    pub dynamodb: aws_sdk_dynamodb::Client,
    pub sqs: aws_sdk_sqs::Client,
    pub sns: aws_sdk_sns::Client,
    pub s3: aws_sdk_s3::Client,
}

/// A page as the on-call engineer receives it (SNS envelope read from the inbox queue).
#[derive(Debug, Clone, PartialEq)]
pub struct ReceivedPage {
    pub subject: String,
    pub message: String,
    pub attributes: BTreeMap<String, String>,
}

impl ReceivedPage {
    pub fn attribute(&self, name: &str) -> &str {
        self.attributes.get(name).map(String::as_str).unwrap_or("")
    }
}

impl Stack {
    /// Create the table, topic, inbox queue (subscribed to the topic) and the replicated buckets.
    pub async fn provision(sdk: &SdkConfig, names: StackNames) -> Result<Self> {
        let dynamodb = aws_sdk_dynamodb::Client::new(sdk);
        let sqs = aws_sdk_sqs::Client::new(sdk);
        let sns = aws_sdk_sns::Client::new(sdk);
        let s3 = s3_client(sdk);

        dynamodb
            .create_table()
            .table_name(&names.table)
            .billing_mode(BillingMode::PayPerRequest)
            .attribute_definitions(attribute("pk")?)
            .attribute_definitions(attribute("sk")?)
            .key_schema(
                KeySchemaElement::builder()
                    .attribute_name("pk")
                    .key_type(KeyType::Hash)
                    .build()?,
            )
            .key_schema(
                KeySchemaElement::builder()
                    .attribute_name("sk")
                    .key_type(KeyType::Range)
                    .build()?,
            )
            .send()
            .await
            .context("creating the ledger table")?;
        dynamodb
            .update_time_to_live()
            .table_name(&names.table)
            .time_to_live_specification(
                TimeToLiveSpecification::builder()
                    .attribute_name("expires_at")
                    .enabled(true)
                    .build()?,
            )
            .send()
            .await
            .context("enabling TTL")?;

        let topic_arn = sns
            .create_topic()
            .name(&names.topic_name)
            .send()
            .await?
            .topic_arn
            .context("topic without ARN")?;
        let inbox_url = sqs
            .create_queue()
            .queue_name(&names.inbox_queue)
            .send()
            .await?
            .queue_url
            .context("queue without URL")?;
        let inbox_arn = sqs
            .get_queue_attributes()
            .queue_url(&inbox_url)
            .attribute_names(QueueAttributeName::QueueArn)
            .send()
            .await?
            .attributes
            .and_then(|a| a.get(&QueueAttributeName::QueueArn).cloned())
            .context("queue without ARN")?;
        sns.subscribe()
            .topic_arn(&topic_arn)
            .protocol("sqs")
            .endpoint(&inbox_arn)
            .send()
            .await
            .context("subscribing the inbox")?;

        replicated_pair_in(
            &s3,
            (&names.source_bucket, &names.source_region),
            (&names.replica_bucket, &names.replica_region),
            &names.rule_id,
        )
        .await?;
        // SSE-KMS on both sides with a key of each bucket's region (a KMS key never leaves its
        // region): writing into the source needs kms:GenerateDataKey on its key.
        let source_key =
            regions::kms_key(sdk, &names.source_region, "replmon source bucket").await?;
        let replica_key =
            regions::kms_key(sdk, &names.replica_region, "replmon replica bucket").await?;
        default_kms_encryption(&s3, &names.source_bucket, &source_key).await?;
        default_kms_encryption(&s3, &names.replica_bucket, &replica_key).await?;

        Ok(Stack {
            names,
            source_key_arn: Some(source_key),
            topic_arn,
            inbox_url,
            dynamodb,
            sqs,
            sns,
            s3,
        })
    }

    /// Reconnect to a stack provisioned earlier (by another process).
    pub async fn attach(sdk: &SdkConfig, names: StackNames) -> Result<Self> {
        let sqs = aws_sdk_sqs::Client::new(sdk);
        let sns = aws_sdk_sns::Client::new(sdk);
        // CreateTopic is idempotent: it answers the existing topic's ARN.
        let topic_arn = sns
            .create_topic()
            .name(&names.topic_name)
            .send()
            .await?
            .topic_arn
            .context("topic without ARN")?;
        let inbox_url = sqs
            .get_queue_url()
            .queue_name(&names.inbox_queue)
            .send()
            .await?
            .queue_url
            .context("no inbox queue: provision first")?;
        Ok(Stack {
            names,
            source_key_arn: None,
            topic_arn,
            inbox_url,
            dynamodb: aws_sdk_dynamodb::Client::new(sdk),
            sqs,
            sns,
            s3: s3_client(sdk),
        })
    }

    /// The environment the functions need to run against this stack.
    pub fn function_env(&self, endpoint: &str) -> Vec<(String, String)> {
        [
            ("REPLMON_TABLE", self.names.table.as_str()),
            ("REPLMON_PAGE_TOPIC_ARN", self.topic_arn.as_str()),
            ("REPLMON_CANARY_BUCKETS", self.names.source_bucket.as_str()),
            ("AWS_ENDPOINT_URL", endpoint),
            ("AWS_REGION", REGION),
            ("AWS_ACCESS_KEY_ID", "test"),
            ("AWS_SECRET_ACCESS_KEY", "test"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
    }

    /// Every page delivered so far (removes them from the inbox). Waits briefly for stragglers.
    pub async fn drain_pages(&self) -> Result<Vec<ReceivedPage>> {
        let mut pages = Vec::new();
        let mut empty_polls = 0;
        while empty_polls < 2 {
            let out = self
                .sqs
                .receive_message()
                .queue_url(&self.inbox_url)
                .max_number_of_messages(10)
                .wait_time_seconds(0)
                .send()
                .await?;
            let messages = out.messages.unwrap_or_default();
            if messages.is_empty() {
                empty_polls += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
            for message in messages {
                let body = message.body.unwrap_or_default();
                pages.push(parse_sns_envelope(&body)?);
                if let Some(handle) = message.receipt_handle {
                    self.sqs
                        .delete_message()
                        .queue_url(&self.inbox_url)
                        .receipt_handle(handle)
                        .send()
                        .await?;
                }
            }
        }
        Ok(pages)
    }

    /// Every ledger item, as plain strings (numbers as their text).
    pub async fn ledger_items(&self) -> Result<Vec<BTreeMap<String, String>>> {
        let mut items = Vec::new();
        let mut start: Option<HashMap<String, AttributeValue>> = None;
        loop {
            let out = self
                .dynamodb
                .scan()
                .table_name(&self.names.table)
                .set_exclusive_start_key(start.take())
                .send()
                .await?;
            for item in out.items.unwrap_or_default() {
                items.push(
                    item.into_iter()
                        .map(|(k, v)| (k, attribute_text(&v)))
                        .collect(),
                );
            }
            match out.last_evaluated_key {
                Some(key) if !key.is_empty() => start = Some(key),
                _ => break,
            }
        }
        items.sort_by(|a: &BTreeMap<String, String>, b| {
            (a.get("pk"), a.get("sk")).cmp(&(b.get("pk"), b.get("sk")))
        });
        Ok(items)
    }

    /// The items of one partition (a Query, much cheaper than a scan on a big table).
    pub async fn partition(&self, pk: &str) -> Result<Vec<BTreeMap<String, String>>> {
        let mut items = Vec::new();
        let mut start: Option<HashMap<String, AttributeValue>> = None;
        loop {
            let out = self
                .dynamodb
                .query()
                .table_name(&self.names.table)
                .key_condition_expression("pk = :pk")
                .expression_attribute_values(":pk", AttributeValue::S(pk.to_owned()))
                .set_exclusive_start_key(start.take())
                .send()
                .await?;
            for item in out.items.unwrap_or_default() {
                items.push(
                    item.into_iter()
                        .map(|(k, v)| (k, attribute_text(&v)))
                        .collect(),
                );
            }
            match out.last_evaluated_key {
                Some(key) if !key.is_empty() => start = Some(key),
                _ => return Ok(items),
            }
        }
    }

    /// Ledger items of one entity type (`object`, `incident`, `event`).
    pub async fn ledger_entities(&self, entity: &str) -> Result<Vec<BTreeMap<String, String>>> {
        Ok(self
            .ledger_items()
            .await?
            .into_iter()
            .filter(|i| i.get("entity").map(String::as_str) == Some(entity))
            .collect())
    }
}

/// Default encryption SSE-KMS with `key` and an S3 Bucket Key, as the example pair configures.
async fn default_kms_encryption(s3: &aws_sdk_s3::Client, bucket: &str, key: &str) -> Result<()> {
    let rule = ServerSideEncryptionRule::builder()
        .apply_server_side_encryption_by_default(
            ServerSideEncryptionByDefault::builder()
                .sse_algorithm(ServerSideEncryption::AwsKms)
                .kms_master_key_id(key)
                .build()?,
        )
        .bucket_key_enabled(true)
        .build();
    s3.put_bucket_encryption()
        .bucket(bucket)
        .server_side_encryption_configuration(
            ServerSideEncryptionConfiguration::builder()
                .rules(rule)
                .build()?,
        )
        .send()
        .await
        .with_context(|| format!("configuring default encryption of {bucket}"))?;
    Ok(())
}

fn attribute(name: &str) -> Result<AttributeDefinition> {
    Ok(AttributeDefinition::builder()
        .attribute_name(name)
        .attribute_type(ScalarAttributeType::S)
        .build()?)
}

fn attribute_text(value: &AttributeValue) -> String {
    match value {
        AttributeValue::S(s) | AttributeValue::N(s) => s.clone(),
        AttributeValue::Bool(b) => b.to_string(),
        // A set in a fixed order (DynamoDB keeps none), comma-separated.
        AttributeValue::Ss(set) | AttributeValue::Ns(set) => {
            let mut members = set.clone();
            members.sort();
            members.join(",")
        }
        other => format!("{other:?}"),
    }
}

/// SNS delivers to SQS (without raw delivery) as a JSON envelope with Subject and attributes.
pub fn parse_sns_envelope(body: &str) -> Result<ReceivedPage> {
    let envelope: serde_json::Value =
        serde_json::from_str(body).context("page envelope is not JSON")?;
    let text = |name: &str| {
        envelope
            .get(name)
            .and_then(|v| v.as_str())
            .unwrap_or("")
            .to_owned()
    };
    let attributes = envelope
        .get("MessageAttributes")
        .and_then(|a| a.as_object())
        .map(|map| {
            map.iter()
                .map(|(k, v)| {
                    (
                        k.clone(),
                        v.get("Value")
                            .and_then(|x| x.as_str())
                            .unwrap_or("")
                            .to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    Ok(ReceivedPage {
        subject: text("Subject"),
        message: text("Message"),
        attributes,
    })
}

/// `cargo lambda watch`, stopped (with the function it runs) when dropped.
pub struct Watch {
    child: Child,
    pub port: u16,
}

impl Drop for Watch {
    fn drop(&mut self) {
        // watch runs the function as a child; end the whole process group (the watch leads its
        // own session, so its group ID is its PID). Signalled directly: procps `kill -TERM -PID`
        // reads "-PID" as a signal number and signals process group <first digit of PID> instead
        // (group 1 means every process: that took down whole test runs).
        if let Ok(pid) = i32::try_from(self.child.id()) {
            if pid > 1 {
                // SAFETY: kill has no memory effects; a negative PID names the process group.
                unsafe {
                    libc::kill(-pid, libc::SIGTERM);
                }
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn start_watch(env: &[(String, String)]) -> Result<Watch> {
    use std::os::unix::process::CommandExt;
    let port = free_port()?;
    let vars: Vec<String> = env.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let log =
        std::fs::File::create(std::env::temp_dir().join(format!("replmon-watch-{port}.log")))?;
    let mut command = Command::new(venv_bin("cargo-lambda")?);
    command
        .current_dir(repo_root())
        .args([
            "lambda",
            "watch",
            // The feature set of every other build here (see `build_workspace_binaries`).
            "--all-features",
            "--ignore-changes",
            "-A",
            "127.0.0.1",
            "-P",
            &port.to_string(),
        ])
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    // Its own session (and so its own process group, which Drop ends): watchexec manages process
    // groups and signals of what it runs, and without a controlling terminal nothing it does can
    // reach the terminal or the process group of the test run (or of CI) that started it.
    // SAFETY: setsid and prctl are async-signal-safe and touch no memory of the parent.
    unsafe {
        command.pre_exec(|| {
            if libc::setsid() == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    die_with_parent(&mut command);
    for var in &vars {
        command.args(["--env-var", var]);
    }
    command.env("AWS_LAMBDA_LOG_FORMAT", "JSON");
    let child = command.spawn().context("starting cargo lambda watch")?;
    let watch = Watch { child, port };
    wait_for_port(port, Duration::from_secs(120))?;
    Ok(watch)
}

pub struct Invocation {
    pub success: bool,
    pub stdout: String,
    pub stderr: String,
}

/// `cargo lambda invoke` of one function with a fixture file (path under `events/`).
pub fn invoke(port: u16, function: &str, fixture: &str) -> Result<Invocation> {
    let output = Command::new(venv_bin("cargo-lambda")?)
        .current_dir(repo_root())
        .args([
            "lambda",
            "invoke",
            "-A",
            "127.0.0.1",
            "-P",
            &port.to_string(),
            function,
            "--output-format",
            "json",
            "--data-file",
        ])
        .arg(repo_root().join("events").join(fixture))
        .output()?;
    Ok(Invocation {
        success: output.status.success(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    })
}

/// Build every function binary first, so `cargo lambda watch` does not compile inside the first
/// invocation (which can take minutes on a small machine).
pub fn build_functions() {
    build_workspace_binaries();
}

/// Every binary of the workspace, with the feature set every build of the tests and the demo
/// uses (`--workspace --all-features`, as `cargo test` resolves it, and as `cargo lambda watch`
/// is started with): one build of the dependencies serves them all. A build for fewer packages
/// or other features would resolve the dependencies' features differently and compile the SDK a
/// second time (a few GB of disk, minutes of a CI run).
pub fn build_workspace_binaries() {
    let status = Command::new(env!("CARGO"))
        .current_dir(repo_root())
        .args(WORKSPACE_BUILD)
        .status();
    assert!(
        status.is_ok_and(|s| s.success()),
        "building the workspace's binaries failed"
    );
}

/// `cargo` arguments of [`build_workspace_binaries`] (also in `scripts/demo` and
/// `scripts/iam-proof`).
pub const WORKSPACE_BUILD: [&str; 4] = ["build", "--workspace", "--all-features", "--bins"];

/// Build the `replmon` command line and return its path (beside the test binaries).
pub fn build_replmon() -> PathBuf {
    build_workspace_binaries();
    // Test binaries live in target/<profile>/deps; the command in target/<profile>.
    std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.parent()?.join("replmon")))
        .unwrap_or_else(|| repo_root().join("target/debug/replmon"))
}

/// The replication-events handler with its real AWS adapters.
pub type AwsMonitor = replmon_shared::replication::ReplicationMonitor<
    replmon_shared::aws::DynamoDbLedger,
    replmon_shared::aws::SnsNotifier,
    replmon_shared::clock::SystemClock,
>;

/// A fresh moto server, provisioned, and the monitor wired to it through the real adapters.
/// (The function's own `SdkConfig` path, with `AWS_ENDPOINT_URL`, is what the end-to-end test
/// exercises; here the adapters get the test configuration.)
pub async fn monitor_on_local_stack() -> Result<(MotoServer, Stack, AwsMonitor)> {
    monitor_on_stack(StackNames::default()).await
}

/// [`monitor_on_local_stack`] with other names or regions.
pub async fn monitor_on_stack(names: StackNames) -> Result<(MotoServer, Stack, AwsMonitor)> {
    let moto = MotoServer::start()?;
    let sdk = sdk_config(&moto.endpoint()).await;
    let stack = Stack::provision(&sdk, names).await?;
    let monitor = replmon_shared::replication::ReplicationMonitor::new(
        replmon_shared::aws::DynamoDbLedger::new(&sdk, &stack.names.table),
        replmon_shared::aws::SnsNotifier::new(&sdk, &stack.topic_arn),
        replmon_shared::clock::SystemClock,
        replmon_shared::replication::MonitorSettings::default(),
    );
    Ok((moto, stack, monitor))
}

/// Render a page the way an e-mail or chat subscriber shows it.
pub fn render_page(page: &ReceivedPage) -> String {
    let attributes: Vec<String> = page
        .attributes
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    format!(
        "Subject: {}\nAttributes: {}\n\n{}",
        page.subject,
        attributes.join(", "),
        page.message.trim_end()
    )
}
