//! The canary's object store on S3. Buckets in other regions get their own client (built once per
//! region from the same `SdkConfig`), so a destination in a second region is polled there.

use super::{describe, is_transient};
use crate::canary::kms::KmsRefusal;
use crate::canary::ports::{
    BucketFacts, BucketRef, DefaultEncryption, ObjectFacts, ObjectStore, ProbeObject, StoreError,
    Versioning,
};
use crate::canary::probe::probe_token;
use crate::canary::setup::{bucket_from_arn, ReplicationRule, ReplicationSetup, RuleFilter};
use crate::delivery::text::Untrusted;
use aws_config::SdkConfig;
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::config::Region;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{
    BucketVersioningStatus, MetricsStatus, ReplicationRuleStatus, ReplicationTimeStatus,
    ServerSideEncryption, SseKmsEncryptedObjectsStatus,
};
use aws_sdk_s3::Client;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use std::collections::HashMap;
use std::sync::Mutex;

/// Characters left as they are in the `x-amz-tagging` query-string form.
const TAG_SAFE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

pub struct S3ObjectStore {
    sdk: SdkConfig,
    home: Client,
    regional: Mutex<HashMap<String, Client>>,
    /// Bucket regions learned from HeadBucket, for calls that do not name one.
    regions: Mutex<HashMap<String, String>>,
}

impl S3ObjectStore {
    pub fn new(sdk: &SdkConfig) -> Self {
        S3ObjectStore {
            home: client(sdk, None),
            sdk: sdk.clone(),
            regional: Mutex::new(HashMap::new()),
            regions: Mutex::new(HashMap::new()),
        }
    }

    /// Warm-up during init (see [`super::warm_up`]): learn the bucket's region (which the
    /// run needs anyway) over the connection the run will use.
    pub async fn warm_up(&self, bucket: &str) -> Result<(), String> {
        self.learn_region(bucket)
            .await
            .map(|_| ())
            .map_err(|error| error.to_string())
    }

    /// HeadBucket answers the region even from another region's endpoint; remember it.
    async fn learn_region(&self, bucket: &str) -> Result<Option<String>, StoreError> {
        let region = match self.home.head_bucket().bucket(bucket).send().await {
            Ok(out) => out.bucket_region,
            Err(e) => {
                let moved = e
                    .raw_response()
                    .and_then(|r| r.headers().get("x-amz-bucket-region"))
                    .map(str::to_owned);
                match moved {
                    Some(region) => Some(region),
                    None => return Err(store_error("HeadBucket", bucket, &e)),
                }
            }
        };
        if let Some(region) = &region {
            self.regions
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(bucket.to_owned(), region.clone());
        }
        Ok(region)
    }

    /// The client for a bucket: its given region, else the one learned for it, else home.
    fn client_for(&self, bucket: BucketRef<'_>) -> Client {
        let learned = match bucket.region {
            Some(_) => None,
            None => self
                .regions
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(bucket.bucket)
                .cloned(),
        };
        self.client(bucket.region.or(learned.as_deref()))
    }

    /// The client for a region (the function's own when unknown or the same).
    fn client(&self, region: Option<&str>) -> Client {
        let home = self.sdk.region().map(|r| r.as_ref());
        match region {
            Some(region) if Some(region) != home => {
                let mut clients = self.regional.lock().unwrap_or_else(|p| p.into_inner());
                clients
                    .entry(region.to_owned())
                    .or_insert_with(|| client(&self.sdk, Some(region)))
                    .clone()
            }
            _ => self.home.clone(),
        }
    }
}

fn client(sdk: &SdkConfig, region: Option<&str>) -> Client {
    let mut config = aws_sdk_s3::config::Builder::from(sdk);
    if let Some(region) = region {
        config = config.region(Region::new(region.to_owned()));
    }
    // An overridden endpoint (the local stack) has no per-bucket host names.
    if sdk.endpoint_url().is_some() {
        config = config.force_path_style(true);
    }
    Client::from_conf(config.build())
}

fn store_error<E: ProvideErrorMetadata + std::error::Error + 'static>(
    operation: &'static str,
    bucket: &str,
    error: &SdkError<E, HttpResponse>,
) -> StoreError {
    let bucket = bucket.to_owned();
    let detail = describe(error);
    let status = error.raw_response().map(|r| r.status().as_u16());
    let code = error.code().unwrap_or_default();
    // KMS refusals come as S3 errors: 403 AccessDenied naming a kms: action, or 400 KMS.* codes
    // (shapes and sources in crate::canary::kms). HEAD answers carry no message to read; an
    // answer that may pass (5xx, throttling) stays one.
    let kms = (!is_transient(error))
        .then(|| KmsRefusal::from_s3_answer(code, error.message().unwrap_or_default()))
        .flatten();
    if let Some(refusal) = kms {
        StoreError::Kms {
            operation,
            bucket,
            refusal: Box::new(refusal),
        }
    } else if code == "NoSuchBucket" || (status == Some(404) && operation == "HeadBucket") {
        StoreError::NoSuchBucket { operation, bucket }
    } else if status == Some(403) || code == "AccessDenied" {
        StoreError::Denied {
            operation,
            bucket,
            detail,
        }
    } else if is_transient(error) {
        StoreError::Unreachable {
            operation,
            bucket,
            detail,
        }
    } else {
        StoreError::Refused {
            operation,
            bucket,
            detail,
        }
    }
}

fn rule_from_sdk(rule: &aws_sdk_s3::types::ReplicationRule) -> ReplicationRule {
    let filter = match rule.filter() {
        Some(filter) => match (filter.and(), filter.tag()) {
            (Some(and), _) => RuleFilter {
                prefix: and.prefix().unwrap_or_default().to_owned(),
                tags: and
                    .tags()
                    .iter()
                    .map(|t| (t.key().to_owned(), t.value().to_owned()))
                    .collect(),
            },
            (None, Some(tag)) => RuleFilter {
                prefix: String::new(),
                tags: vec![(tag.key().to_owned(), tag.value().to_owned())],
            },
            (None, None) => RuleFilter {
                prefix: filter.prefix().unwrap_or_default().to_owned(),
                tags: Vec::new(),
            },
        },
        // Version 1 configurations put the prefix on the rule itself (deprecated, still served).
        #[allow(deprecated)]
        None => RuleFilter {
            prefix: rule.prefix().unwrap_or_default().to_owned(),
            tags: Vec::new(),
        },
    };
    let destination = rule.destination();
    ReplicationRule {
        id: rule
            .id()
            .filter(|id| !id.is_empty())
            .map(str::to_owned)
            .unwrap_or_else(|| format!("priority-{}", rule.priority().unwrap_or_default())),
        priority: rule.priority(),
        enabled: *rule.status() == ReplicationRuleStatus::Enabled,
        filter,
        destination_bucket: destination
            .map(|d| bucket_from_arn(d.bucket()).to_owned())
            .unwrap_or_default(),
        destination_account: destination.and_then(|d| d.account()).map(str::to_owned),
        metrics_enabled: destination
            .and_then(|d| d.metrics())
            .is_some_and(|m| *m.status() == MetricsStatus::Enabled),
        rtc_enabled: destination
            .and_then(|d| d.replication_time())
            .is_some_and(|t| *t.status() == ReplicationTimeStatus::Enabled),
        replicates_kms_objects: rule
            .source_selection_criteria()
            .and_then(|c| c.sse_kms_encrypted_objects())
            .is_some_and(|o| *o.status() == SseKmsEncryptedObjectsStatus::Enabled),
    }
}

impl ObjectStore for S3ObjectStore {
    async fn replication(
        &self,
        bucket: BucketRef<'_>,
    ) -> Result<Option<ReplicationSetup>, StoreError> {
        let client = self.client_for(bucket);
        let bucket = bucket.bucket;
        match client.get_bucket_replication().bucket(bucket).send().await {
            Ok(out) => Ok(out
                .replication_configuration
                .map(|config| ReplicationSetup {
                    role: config.role().to_owned(),
                    rules: config.rules().iter().map(rule_from_sdk).collect(),
                })),
            Err(e) if e.code() == Some("ReplicationConfigurationNotFoundError") => Ok(None),
            Err(e) => Err(store_error("GetBucketReplication", bucket, &e)),
        }
    }

    async fn facts(
        &self,
        bucket: &str,
        with_notifications: bool,
    ) -> Result<BucketFacts, StoreError> {
        let region = self.learn_region(bucket).await?;
        let client = self.client(region.as_deref());
        let versioning = match client.get_bucket_versioning().bucket(bucket).send().await {
            Ok(out) => match out.status {
                Some(BucketVersioningStatus::Enabled) => Versioning::Enabled,
                Some(BucketVersioningStatus::Suspended) => Versioning::Suspended,
                Some(_) => Versioning::Unknown,
                None => Versioning::NeverEnabled,
            },
            Err(e) => match store_error("GetBucketVersioning", bucket, &e) {
                missing @ StoreError::NoSuchBucket { .. } => return Err(missing),
                // Unreadable (denied, or an answer the client cannot parse, as the local
                // emulator's): the audit skips the versioning check rather than guess.
                _ => Versioning::Unknown,
            },
        };
        let encryption = match client.get_bucket_encryption().bucket(bucket).send().await {
            Ok(out) => out
                .server_side_encryption_configuration
                .and_then(|c| c.rules.into_iter().next())
                .and_then(|r| r.apply_server_side_encryption_by_default)
                .map(|d| match d.sse_algorithm {
                    ServerSideEncryption::Aes256 => DefaultEncryption::S3Managed,
                    other => DefaultEncryption::Kms {
                        algorithm: other.as_str().to_owned(),
                        key_id: d.kms_master_key_id,
                    },
                }),
            Err(e) if e.code() == Some("ServerSideEncryptionConfigurationNotFoundError") => None,
            // Not knowing the default only means the PUT names no encryption.
            Err(_) => None,
        };
        let notifications = if with_notifications {
            // Unreadable (denied, or the local emulator's answer with the wrong root element):
            // the audit skips the check rather than guess.
            client
                .get_bucket_notification_configuration()
                .bucket(bucket)
                .send()
                .await
                .ok()
        } else {
            None
        };
        let replication_events_configured = notifications.map(|out| {
            let mut events = out
                .queue_configurations()
                .iter()
                .flat_map(|c| c.events())
                .chain(out.topic_configurations().iter().flat_map(|c| c.events()))
                .chain(
                    out.lambda_function_configurations()
                        .iter()
                        .flat_map(|c| c.events()),
                );
            events.any(|e| e.as_str().starts_with("s3:Replication:"))
        });
        Ok(BucketFacts {
            region,
            versioning,
            encryption,
            replication_events_configured,
        })
    }

    async fn put(
        &self,
        bucket: BucketRef<'_>,
        object: ProbeObject<'_>,
    ) -> Result<Option<String>, StoreError> {
        let mut request = self
            .client_for(bucket)
            .put_object()
            .bucket(bucket.bucket)
            .key(object.key)
            .content_type("application/json")
            .metadata("replmon-probe", probe_token(object.key))
            .body(ByteStream::from(object.body.as_bytes().to_vec()));
        if !object.tags.is_empty() {
            let tagging: Vec<String> = object
                .tags
                .iter()
                .map(|(k, v)| {
                    format!(
                        "{}={}",
                        utf8_percent_encode(k, TAG_SAFE),
                        utf8_percent_encode(v, TAG_SAFE)
                    )
                })
                .collect();
            request = request.tagging(tagging.join("&"));
        }
        match object.encryption {
            Some(DefaultEncryption::S3Managed) => {
                request = request.server_side_encryption(ServerSideEncryption::Aes256);
            }
            Some(DefaultEncryption::Kms { algorithm, key_id }) => {
                request = request
                    .server_side_encryption(ServerSideEncryption::from(algorithm.as_str()))
                    .set_ssekms_key_id(key_id.clone());
            }
            None => {}
        }
        request
            .send()
            .await
            .map(|out| out.version_id)
            .map_err(|e| store_error("PutObject", bucket.bucket, &e))
    }

    async fn head(
        &self,
        bucket: BucketRef<'_>,
        key: &str,
        version_id: Option<&str>,
    ) -> Result<Option<ObjectFacts>, StoreError> {
        let result = self
            .client_for(bucket)
            .head_object()
            .bucket(bucket.bucket)
            .key(key)
            .set_version_id(version_id.map(str::to_owned))
            .send()
            .await;
        match result {
            Ok(out) => Ok(Some(ObjectFacts {
                probe_token: out
                    .metadata
                    .as_ref()
                    .and_then(|m| m.get("replmon-probe"))
                    .cloned(),
                version_id: out.version_id,
                replication_status: out.replication_status.map(|s| s.as_str().to_owned()),
            })),
            Err(e) if e.as_service_error().is_some_and(|se| se.is_not_found()) => Ok(None),
            Err(e) => Err(store_error("HeadObject", bucket.bucket, &e)),
        }
    }

    async fn delete_probe(
        &self,
        bucket: BucketRef<'_>,
        key: &str,
        version_id: Option<&str>,
    ) -> Result<u32, StoreError> {
        let client = self.client_for(bucket);
        let versions: Vec<String> = match version_id {
            Some(version) => vec![version.to_owned()],
            None => self.versions_of(bucket, key).await?,
        };
        let token = probe_token(key);
        let mut deleted = 0;
        for version in versions {
            // Only a version that carries this probe's token: never one someone else wrote.
            let Some(facts) = self.head(bucket, key, Some(&version)).await? else {
                continue;
            };
            if facts.probe_token.as_deref() != Some(token.as_str()) {
                tracing::warn!(bucket = %bucket.bucket, key = %Untrusted(key), version = %Untrusted(&version), "a version at the probe key is not this probe's; left alone");
                continue;
            }
            client
                .delete_object()
                .bucket(bucket.bucket)
                .key(key)
                .version_id(&version)
                .send()
                .await
                .map_err(|e| store_error("DeleteObject", bucket.bucket, &e))?;
            deleted += 1;
        }
        Ok(deleted)
    }
}

impl S3ObjectStore {
    /// The object versions of exactly this key (delete markers carry no metadata and are never
    /// the canary's: it deletes by version only).
    async fn versions_of(
        &self,
        bucket: BucketRef<'_>,
        key: &str,
    ) -> Result<Vec<String>, StoreError> {
        let client = self.client_for(bucket);
        let mut versions = Vec::new();
        let (mut key_marker, mut version_marker) = (None, None);
        loop {
            let out = client
                .list_object_versions()
                .bucket(bucket.bucket)
                .prefix(key)
                .set_key_marker(key_marker.take())
                .set_version_id_marker(version_marker.take())
                .send()
                .await
                .map_err(|e| store_error("ListObjectVersions", bucket.bucket, &e))?;
            // Only this exact key: the prefix also matches longer keys.
            versions.extend(
                out.versions()
                    .iter()
                    .filter(|v| v.key() == Some(key))
                    .filter_map(|v| v.version_id().map(str::to_owned)),
            );
            if out.is_truncated() != Some(true) {
                break;
            }
            key_marker = out.next_key_marker;
            version_marker = out.next_version_id_marker;
            if key_marker.is_none() {
                break;
            }
        }
        Ok(versions)
    }
}

/// A re-drive job's manifest and report, read from the bucket's region.
impl crate::redrive::JobFiles for S3ObjectStore {
    async fn get(
        &self,
        bucket: &str,
        key: &str,
    ) -> Result<Option<Vec<u8>>, crate::redrive::ports::FilesError> {
        use crate::redrive::ports::FilesError;
        if self
            .regions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(bucket)
            .is_none()
        {
            // Unknown region: ask once (a failure leaves the home region's client).
            let _ = self.learn_region(bucket).await;
        }
        let client = self.client_for(BucketRef {
            bucket,
            region: None,
        });
        match client.get_object().bucket(bucket).key(key).send().await {
            Ok(out) => out
                .body
                .collect()
                .await
                .map(|bytes| Some(bytes.to_vec()))
                .map_err(|e| FilesError::Unavailable {
                    bucket: bucket.to_owned(),
                    key: key.to_owned(),
                    detail: e.to_string(),
                }),
            Err(error) if error.code() == Some("NoSuchKey") => Ok(None),
            Err(error) if is_transient(&error) => Err(FilesError::Unavailable {
                bucket: bucket.to_owned(),
                key: key.to_owned(),
                detail: describe(&error),
            }),
            Err(error) => Err(FilesError::Refused {
                bucket: bucket.to_owned(),
                key: key.to_owned(),
                detail: describe(&error),
            }),
        }
    }
}
