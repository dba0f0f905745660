//! What a finished batch job leaves in S3, read back: the generated manifest (which object
//! versions were in the job) and the completion report (which of them failed, and why).
//!
//! Formats as AWS documents them: a generated manifest is an S3 Inventory-style
//! `manifest.json` (`S3InventoryReport_CSV_20211130`) listing CSV data files (gzip-compressed
//! `.csv.gz`, or plain), rows `bucket,key,version id`; a completion report is a `manifest.json`
//! (`Report_CSV_20180820`) listing one CSV per task status, rows
//! `bucket,key,version id,task status,error code,HTTP status,result message`. Keys in both are
//! URL-encoded. Everything here is outside data: a malformed file is an error naming the file,
//! never a guess.

use serde::Deserialize;
use std::io::Read;

/// One object version a job took.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct JobObject {
    pub bucket: String,
    pub key: String,
    /// `None`: an unversioned object (the CSV column empty).
    pub version_id: Option<String>,
}

/// One failed task of a completion report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailedTask {
    pub object: JobObject,
    /// The report's error code (`PermanentFailure`, an S3 error code, ...).
    pub error_code: String,
    pub http_status: Option<u16>,
    /// What the task said, verbatim (outside text: escape before showing it).
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}: {detail}")]
pub struct FileError {
    pub file: String,
    pub detail: String,
}

fn error(file: &str, detail: impl Into<String>) -> FileError {
    FileError {
        file: file.to_owned(),
        detail: detail.into(),
    }
}

/// A generated manifest's `manifest.json`: where its data files are.
#[derive(Debug, Deserialize)]
struct ManifestJson {
    #[serde(rename = "fileFormat")]
    file_format: Option<String>,
    files: Vec<ManifestFile>,
}

#[derive(Debug, Deserialize)]
struct ManifestFile {
    key: String,
}

/// The data files a generated manifest lists (keys in the manifest's bucket).
pub fn manifest_data_files(name: &str, text: &str) -> Result<Vec<String>, FileError> {
    let manifest: ManifestJson = serde_json::from_str(text)
        .map_err(|e| error(name, format!("not a generated manifest: {e}")))?;
    if let Some(format) = manifest
        .file_format
        .as_deref()
        .filter(|f| !f.eq_ignore_ascii_case("CSV"))
    {
        return Err(error(
            name,
            format!("file format {format:?}; only CSV is read"),
        ));
    }
    Ok(manifest.files.into_iter().map(|f| f.key).collect())
}

/// A completion report's `manifest.json`: its CSV files and the task status of each.
#[derive(Debug, Deserialize)]
struct ReportJson {
    #[serde(rename = "Format")]
    format: String,
    #[serde(rename = "Results", default)]
    results: Vec<ReportResult>,
}

#[derive(Debug, Deserialize)]
struct ReportResult {
    #[serde(rename = "TaskExecutionStatus")]
    status: String,
    #[serde(rename = "Bucket")]
    bucket: String,
    #[serde(rename = "Key")]
    key: String,
}

/// A report file: its bucket, key, and whether it lists failed tasks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportFile {
    pub bucket: String,
    pub key: String,
    pub failed: bool,
}

pub fn report_files(name: &str, text: &str) -> Result<Vec<ReportFile>, FileError> {
    let report: ReportJson = serde_json::from_str(text)
        .map_err(|e| error(name, format!("not a completion report manifest: {e}")))?;
    if report.format != "Report_CSV_20180820" {
        return Err(error(name, format!("report format {:?}", report.format)));
    }
    Ok(report
        .results
        .into_iter()
        .map(|r| ReportFile {
            failed: r.status.eq_ignore_ascii_case("failed"),
            bucket: r.bucket,
            key: r.key,
        })
        .collect())
}

/// The text of a data file: gunzipped when it is gzip (by its magic bytes, whatever its name).
pub fn file_text(name: &str, bytes: &[u8]) -> Result<String, FileError> {
    let bytes = if bytes.starts_with(&[0x1f, 0x8b]) {
        let mut text = Vec::new();
        flate2::read::MultiGzDecoder::new(bytes)
            .read_to_end(&mut text)
            .map_err(|e| error(name, format!("not readable gzip: {e}")))?;
        text
    } else {
        bytes.to_vec()
    };
    String::from_utf8(bytes).map_err(|_| error(name, "not UTF-8 text"))
}

/// The object versions of a generated manifest's data file.
pub fn manifest_objects(name: &str, text: &str) -> Result<Vec<JobObject>, FileError> {
    csv_rows(name, text)?
        .into_iter()
        .enumerate()
        .map(|(line, row)| object_of(name, line, &row))
        .collect()
}

/// The failed tasks of a completion report file (rows whose status is not `failed` skipped).
pub fn failed_tasks(name: &str, text: &str) -> Result<Vec<FailedTask>, FileError> {
    let mut failed = Vec::new();
    for (line, row) in csv_rows(name, text)?.into_iter().enumerate() {
        let object = object_of(name, line, &row)?;
        let status = row.get(3).map(String::as_str).unwrap_or("");
        if !status.eq_ignore_ascii_case("failed") {
            continue;
        }
        // AWS's own examples put the HTTP status before the error code, its schema after:
        // whichever of the two columns is a number is the HTTP status.
        let (a, b) = (
            row.get(4).cloned().unwrap_or_default(),
            row.get(5).cloned().unwrap_or_default(),
        );
        let (error_code, http_status) = match (a.parse::<u16>(), b.parse::<u16>()) {
            (Ok(status), Err(_)) => (b, Some(status)),
            (Err(_), Ok(status)) => (a, Some(status)),
            _ => (a, None),
        };
        failed.push(FailedTask {
            object,
            error_code: if error_code.is_empty() {
                "Unknown".to_owned()
            } else {
                error_code
            },
            http_status,
            message: row.get(6).cloned().unwrap_or_default(),
        });
    }
    Ok(failed)
}

fn object_of(name: &str, line: usize, row: &[String]) -> Result<JobObject, FileError> {
    let (Some(bucket), Some(key)) = (row.first(), row.get(1)) else {
        return Err(error(
            name,
            format!("row {}: fewer than two columns", line + 1),
        ));
    };
    if bucket.is_empty() || key.is_empty() {
        return Err(error(name, format!("row {}: no bucket or key", line + 1)));
    }
    let key = percent_encoding::percent_decode_str(&key.replace('+', " "))
        .decode_utf8()
        .map_err(|_| error(name, format!("row {}: key is not UTF-8", line + 1)))?
        .into_owned();
    Ok(JobObject {
        bucket: bucket.clone(),
        key,
        version_id: row.get(2).filter(|v| !v.is_empty()).cloned(),
    })
}

/// RFC 4180 rows: fields separated by commas, quoted fields may hold commas, line breaks and
/// doubled quotes. Empty lines are skipped.
fn csv_rows(name: &str, text: &str) -> Result<Vec<Vec<String>>, FileError> {
    let mut rows = Vec::new();
    let mut row: Vec<String> = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            (true, '"') => quoted = false,
            (true, c) => field.push(c),
            (false, '"') if field.is_empty() => quoted = true,
            (false, ',') => row.push(std::mem::take(&mut field)),
            (false, '\r') => {}
            (false, '\n') => {
                row.push(std::mem::take(&mut field));
                if row.iter().any(|f| !f.is_empty()) {
                    rows.push(std::mem::take(&mut row));
                } else {
                    row.clear();
                }
            }
            (false, c) => field.push(c),
        }
    }
    if quoted {
        return Err(error(name, "a quoted field is not closed"));
    }
    row.push(field);
    if row.iter().any(|f| !f.is_empty()) {
        rows.push(row);
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn generated_manifest_files_and_rows() {
        let manifest = r#"{"sourceBucket":"src","destinationBucket":"arn:aws:s3:::reports",
            "version":"2021-11-30","creationTimestamp":"1700000000000","fileFormat":"CSV",
            "fileSchema":"Bucket, Key, VersionId",
            "files":[{"key":"redrive/job-1/data/a.csv.gz","size":10,"MD5checksum":"x"}]}"#;
        assert_eq!(
            manifest_data_files("m", manifest).unwrap(),
            ["redrive/job-1/data/a.csv.gz"]
        );
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(b"src,data/a+b%2Cc.txt,v1\nsrc,plain,\n")
            .unwrap();
        let text = file_text("d", &gz.finish().unwrap()).unwrap();
        let objects = manifest_objects("d", &text).unwrap();
        assert_eq!(objects[0].key, "data/a b,c.txt");
        assert_eq!(objects[0].version_id.as_deref(), Some("v1"));
        assert_eq!(objects[1].version_id, None);
        assert!(manifest_data_files("m", r#"{"fileFormat":"ORC","files":[]}"#).is_err());
        assert!(manifest_data_files("m", "[]").is_err());
    }

    #[test]
    fn completion_report_failed_rows_either_column_order() {
        let report = r#"{"Format":"Report_CSV_20180820","ReportCreationDate":"2026-12-07T10:00:00Z",
            "Results":[{"TaskExecutionStatus":"failed","Bucket":"reports","MD5Checksum":"x",
            "Key":"redrive/job-1/results/f.csv"}],"ReportSchema":"Bucket, Key, VersionId, TaskStatus, ErrorCode, HTTPStatusCode, ResultMessage"}"#;
        let files = report_files("r", report).unwrap();
        assert!(files[0].failed && files[0].key.ends_with("f.csv"));
        let csv = "src,k1,v1,failed,PermanentFailure,403,\"Access Denied, \"\"kms\"\"\"\n\
                   src,k2,v2,failed,400,InvalidRequest,msg\nsrc,k3,v3,succeeded,,200,\n";
        let failed = failed_tasks("f", csv).unwrap();
        assert_eq!(failed.len(), 2);
        assert_eq!(failed[0].error_code, "PermanentFailure");
        assert_eq!(failed[0].http_status, Some(403));
        assert_eq!(failed[0].message, "Access Denied, \"kms\"");
        assert_eq!(
            (failed[1].error_code.as_str(), failed[1].http_status),
            ("InvalidRequest", Some(400))
        );
        assert!(report_files("r", r#"{"Format":"Other","Results":[]}"#).is_err());
        assert!(failed_tasks("f", "src,\"open").is_err());
        assert!(manifest_objects("f", "onlybucket\n").is_err());
    }
}
