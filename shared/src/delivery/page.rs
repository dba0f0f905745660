//! Pages and notices for on-call, and the port that delivers them.
//!
//! Every function builds its messages with [`Page`], so subject length, body size and the message
//! attributes subscribers filter on are the same everywhere.

use crate::delivery::text::neutralised_body;
use crate::severity::Severity;
use std::future::Future;

/// SNS rejects subjects over 100 characters, and only printable ASCII is safe in every client.
pub const SUBJECT_MAX_CHARS: usize = 100;
/// SNS allows 256 KiB; pages stay far below so e-mail and chat integrations show them whole.
pub const BODY_MAX_BYTES: usize = 16 * 1024;

/// Whether a message should wake someone or just be seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Urgency {
    /// Wake the on-call engineer.
    Page,
    /// For the channel or mailbox: no action needed now.
    Notice,
}

impl Urgency {
    pub fn as_str(self) -> &'static str {
        match self {
            Urgency::Page => "page",
            Urgency::Notice => "notice",
        }
    }
}

/// A message for on-call, ready to publish.
#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    subject: String,
    body: String,
    pub severity: Severity,
    pub urgency: Urgency,
    /// What the message is about, e.g. `replication-failure` (the `kind` attribute).
    pub kind: String,
    pub source_bucket: Option<String>,
    /// Further attributes (e.g. `incident_id`); names are lower snake case.
    pub extra_attributes: Vec<(String, String)>,
}

impl Page {
    pub fn new(
        severity: Severity,
        urgency: Urgency,
        kind: &str,
        subject: &str,
        body: &str,
    ) -> Self {
        Page {
            subject: bounded_subject(subject),
            body: bounded_body(&neutralised_body(body)),
            severity,
            urgency,
            kind: kind.to_owned(),
            source_bucket: None,
            extra_attributes: Vec::new(),
        }
    }

    pub fn with_source_bucket(mut self, bucket: &str) -> Self {
        self.source_bucket = Some(bucket.to_owned());
        self
    }

    /// The body with a note of ours at its end (still within the size bound).
    pub fn with_note(mut self, note: &str) -> Self {
        self.body = bounded_body(&format!("{}\n\n{note}", self.body));
        self
    }

    pub fn with_attribute(mut self, name: &str, value: &str) -> Self {
        self.extra_attributes
            .push((name.to_owned(), value.to_owned()));
        self
    }

    pub fn subject(&self) -> &str {
        &self.subject
    }

    pub fn body(&self) -> &str {
        &self.body
    }

    /// The SNS message attributes: `severity`, `kind`, `urgency`, `source_bucket` and extras.
    /// Empty values are left out (SNS rejects them).
    pub fn attributes(&self) -> Vec<(String, String)> {
        let mut attributes = vec![
            ("severity".to_owned(), self.severity.as_str().to_owned()),
            ("kind".to_owned(), self.kind.clone()),
            ("urgency".to_owned(), self.urgency.as_str().to_owned()),
        ];
        if let Some(bucket) = &self.source_bucket {
            attributes.push(("source_bucket".to_owned(), bucket.clone()));
        }
        attributes.extend(self.extra_attributes.iter().cloned());
        attributes.retain(|(_, value)| !value.is_empty());
        attributes
    }
}

/// Printable ASCII only, one line, at most [`SUBJECT_MAX_CHARS`]; an ellipsis marks a cut.
pub fn bounded_subject(subject: &str) -> String {
    let mut clean: String = subject
        .chars()
        .map(|c| match c {
            ' '..='~' => c,
            '\n' | '\r' | '\t' => ' ',
            _ => '?',
        })
        .collect();
    clean = clean.trim().to_owned();
    if clean.is_empty() {
        clean = "S3 replication monitor".to_owned();
    }
    if clean.len() > SUBJECT_MAX_CHARS {
        clean.truncate(SUBJECT_MAX_CHARS - 3);
        clean.push_str("...");
    }
    clean
}

/// Text that would push the body over [`BODY_MAX_BYTES`] is cut at a character boundary.
pub fn bounded_body(body: &str) -> String {
    bounded_body_to(body, BODY_MAX_BYTES)
}

/// [`bounded_body`] to `max_bytes` (at least the length of the note that marks the cut).
pub fn bounded_body_to(body: &str, max_bytes: usize) -> String {
    const CUT_NOTE: &str = "\n[... message shortened to stay within the SNS size limit]";
    if body.len() <= max_bytes {
        return body.to_owned();
    }
    let mut end = max_bytes.saturating_sub(CUT_NOTE.len());
    while !body.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}{CUT_NOTE}", &body[..end])
}

/// Shorten one value (a key, a bucket name) for display, marking the cut.
pub fn shorten(text: &str, max_chars: usize) -> String {
    if text.chars().count() <= max_chars {
        return text.to_owned();
    }
    let kept: String = text.chars().take(max_chars.saturating_sub(3)).collect();
    format!("{kept}...")
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotifyError {
    /// The topic could not be reached or refused for a reason that may pass (throttling, 5xx).
    #[error("publishing the page failed and may succeed on retry: {0}")]
    Unavailable(String),
    /// The topic does not exist or the function may not publish to it: a retry will not help.
    #[error("publishing the page was refused: {0}")]
    Refused(String),
}

impl NotifyError {
    pub fn retryable(&self) -> bool {
        matches!(self, NotifyError::Unavailable(_))
    }
}

/// Delivers pages (SNS in production).
pub trait Notifier: Send + Sync {
    fn publish(&self, page: &Page) -> impl Future<Output = Result<(), NotifyError>> + Send;
}

/// Lets a handler borrow a port it does not own.
impl<T: Notifier> Notifier for &T {
    fn publish(
        &self,
        page: &Page,
    ) -> impl std::future::Future<Output = Result<(), NotifyError>> + Send {
        (**self).publish(page)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subject_is_bounded_printable_ascii() {
        let subject = bounded_subject(&format!("[HIGH] caf\u{e9}\n{}", "x".repeat(300)));
        assert_eq!(subject.len(), SUBJECT_MAX_CHARS);
        assert!(subject.chars().all(|c| (' '..='~').contains(&c)));
        assert!(subject.ends_with("..."));
        assert!(subject.starts_with("[HIGH] caf? x"));
        assert_eq!(bounded_subject(" \n "), "S3 replication monitor");
    }

    #[test]
    fn body_is_bounded_on_char_boundary() {
        let body = bounded_body(&"\u{e9}".repeat(BODY_MAX_BYTES));
        assert!(body.len() <= BODY_MAX_BYTES);
        assert!(body.ends_with("SNS size limit]"));
        assert_eq!(bounded_body("short"), "short");
    }

    #[test]
    fn attributes_leave_out_empty_values() {
        let page = Page::new(Severity::High, Urgency::Page, "k", "s", "b")
            .with_source_bucket("src")
            .with_attribute("incident_id", "");
        let names: Vec<_> = page.attributes().into_iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["severity", "kind", "urgency", "source_bucket"]);
    }

    #[test]
    fn shorten_marks_cut() {
        assert_eq!(shorten("abcdef", 5), "ab...");
        assert_eq!(shorten("abc", 5), "abc");
    }
}
