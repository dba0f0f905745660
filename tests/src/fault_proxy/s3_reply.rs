//! Canned S3 errors: the proxy answers matching S3 calls with an error worded exactly as S3
//! words it, for the errors the local stack never produces (moto does not evaluate KMS, so it
//! never refuses a PUT into an SSE-KMS bucket). Added with [`FaultProxy::reply`], removed like
//! fault rules; they are checked before the fault rules, and counted as faulted calls.

use super::{Fault, FaultProxy, Operation, Protocol, Rule, RuleId, Shared};
use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::http::request::Parts;
use hyper::{Response, StatusCode};

impl FaultProxy {
    /// Answer matching S3 calls with an error worded as S3 words it; it applies from the next
    /// call on and is removed like a fault rule ([`FaultProxy::remove`], [`FaultProxy::clear`]).
    pub fn reply(&self, reply: Reply) -> RuleId {
        let mut state = self.shared.lock();
        state.next_rule += 1;
        let id = RuleId(state.next_rule);
        state.replies.push(ActiveReply {
            id,
            reply,
            matched: 0,
        });
        id
    }
}

/// An S3 error answer: status, code and message, sent as S3's REST-XML error document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Error {
    pub status: u16,
    pub code: String,
    pub message: String,
}

/// Which policy an S3 answer for a KMS denial blames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KmsDenial {
    /// The caller's IAM policy lacks the grant: the key is named.
    IdentityPolicy,
    /// The key policy does not let the caller use the key: KMS then names no key.
    KeyPolicy,
    /// A `Deny` in a policy of this type (`service control`, `identity-based`, ...).
    ExplicitDeny(&'static str),
}

impl S3Error {
    /// S3's answer to a PUT into an SSE-KMS bucket when KMS refuses the caller
    /// `kms:GenerateDataKey` on the bucket's key: 403 `AccessDenied` with IAM's wording. The
    /// forms, as quoted from S3 uploads in public reports (aws/copilot-cli issue #5500 for the
    /// identity-based one, buildkite/docs pull request #2344 for the key-policy one) and in the
    /// IAM user guide ("Troubleshoot access denied error messages") for explicit denies:
    /// - `User: <caller> is not authorized to perform: kms:GenerateDataKey on resource: <key>
    ///   because no identity-based policy allows the kms:GenerateDataKey action`
    /// - `User: <caller> is not authorized to perform: kms:GenerateDataKey on this resource
    ///   because the resource does not exist in this Region, no resource-based policies allow
    ///   access, or a resource-based policy explicitly denies access`
    /// - `User: <caller> is not authorized to perform: kms:GenerateDataKey on resource: <key>
    ///   with an explicit deny in a service control policy`
    pub fn kms_denied(caller: &str, key_arn: &str, denial: KmsDenial) -> S3Error {
        const ACTION: &str = "kms:GenerateDataKey";
        let message = match denial {
            KmsDenial::IdentityPolicy => format!(
                "User: {caller} is not authorized to perform: {ACTION} on resource: {key_arn} because no identity-based policy allows the {ACTION} action"
            ),
            KmsDenial::KeyPolicy => format!(
                "User: {caller} is not authorized to perform: {ACTION} on this resource because the resource does not exist in this Region, no resource-based policies allow access, or a resource-based policy explicitly denies access"
            ),
            KmsDenial::ExplicitDeny(policy) => {
                let article = if policy.starts_with(['a', 'e', 'i', 'o', 'u']) { "an" } else { "a" };
                format!(
                    "User: {caller} is not authorized to perform: {ACTION} on resource: {key_arn} with an explicit deny in {article} {policy} policy"
                )
            }
        };
        S3Error::access_denied(&message)
    }

    /// 403 `AccessDenied` with any message (S3's plain one is `Access Denied`).
    pub fn access_denied(message: &str) -> S3Error {
        S3Error {
            status: 403,
            code: "AccessDenied".into(),
            message: message.into(),
        }
    }

    /// The key is disabled: 400 `KMS.DisabledException` `<key ARN> is disabled.` (as recorded
    /// against AWS in localstack's tests/aws/services/s3/test_s3.snapshot.json,
    /// `test_s3_sse_validate_kms_key_state`, for PutObject).
    pub fn kms_disabled(key_arn: &str) -> S3Error {
        S3Error {
            status: 400,
            code: "KMS.DisabledException".into(),
            message: format!("{key_arn} is disabled."),
        }
    }

    /// The key is scheduled for deletion: 400 `KMS.KMSInvalidStateException` `<key ARN> is
    /// pending deletion.` (same source).
    pub fn kms_pending_deletion(key_arn: &str) -> S3Error {
        S3Error {
            status: 400,
            code: "KMS.KMSInvalidStateException".into(),
            message: format!("{key_arn} is pending deletion."),
        }
    }

    /// No such key in the bucket's region: 400 `KMS.NotFoundException` `Key '<key ARN>' does
    /// not exist` (same source, `test_s3_sse_validate_kms_key`).
    pub fn kms_not_found(key_arn: &str) -> S3Error {
        S3Error {
            status: 400,
            code: "KMS.NotFoundException".into(),
            message: format!("Key '{key_arn}' does not exist"),
        }
    }

    /// S3's REST-XML error document (no body for a HEAD, as S3 answers HEADs).
    pub(super) fn response(&self, head: bool) -> Response<Full<Bytes>> {
        let request_id = "fault-proxy-0000";
        let body = if head {
            String::new()
        } else {
            format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{}</Code><Message>{}</Message><RequestId>{request_id}</RequestId><HostId>fault-proxy</HostId></Error>",
                xml_text(&self.code),
                xml_text(&self.message)
            )
        };
        let mut response = Response::new(Full::new(Bytes::from(body)));
        *response.status_mut() =
            StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/xml"));
        headers.insert("x-amz-request-id", HeaderValue::from_static(request_id));
        headers.insert("x-amz-id-2", HeaderValue::from_static("fault-proxy"));
        response
    }
}

/// Text as XML character data: markup escaped, tabs and line ends as character references (so
/// they survive), other characters XML 1.0 cannot carry replaced (S3 never sends them).
fn xml_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' | '\n' | '\r' => out.push_str(&format!("&#{};", c as u32)),
            c if c.is_control() || ('\u{fffe}'..='\u{ffff}').contains(&c) => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
    out
}

/// A canned S3 error for the calls of one S3 operation (`s3:PutObject`), optionally on one
/// bucket only, for the next N calls or for good.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// `s3:Operation` (or `s3:*`, `*`), as for [`Rule::operation`].
    pub operation: String,
    /// Only calls on this bucket (path-style addressing); `None`: every bucket.
    pub bucket: Option<String>,
    pub error: S3Error,
    /// Calls to answer; `None`: every call, until removed.
    pub times: Option<u32>,
}

impl Reply {
    /// Answer every matching call until the reply is removed.
    pub fn always(operation: &str, error: S3Error) -> Reply {
        Reply {
            operation: operation.to_owned(),
            bucket: None,
            error,
            times: None,
        }
    }

    /// Answer the next `times` matching calls.
    pub fn next(times: u32, operation: &str, error: S3Error) -> Reply {
        Reply {
            times: Some(times),
            ..Reply::always(operation, error)
        }
    }

    /// Only calls on this bucket.
    pub fn on_bucket(mut self, bucket: &str) -> Reply {
        self.bucket = Some(bucket.to_owned());
        self
    }
}

pub(super) struct ActiveReply {
    pub(super) id: RuleId,
    reply: Reply,
    matched: u32,
}

/// The bucket of a path-style S3 request (`/bucket/key`).
fn path_bucket(parts: &Parts) -> &str {
    let path = parts.uri.path().trim_start_matches('/');
    path.split('/').next().unwrap_or_default()
}

impl Shared {
    /// The canned S3 error for this call, if a live reply matches it (counted as faulted).
    pub(super) fn reply_for(&self, operation: &Operation, parts: &Parts) -> Option<S3Error> {
        if operation.protocol != Protocol::RestXml {
            return None;
        }
        let bucket = path_bucket(parts);
        let mut state = self.lock();
        // Operations match as they do for fault rules (`s3:PutObject`, `s3:*`, `*`).
        let pattern = |reply: &Reply| Rule::always(&reply.operation, Fault::InternalError);
        let active = state.replies.iter_mut().find(|active| {
            active
                .reply
                .times
                .is_none_or(|times| active.matched < times)
                && pattern(&active.reply).matches(operation)
                && active.reply.bucket.as_deref().is_none_or(|b| b == bucket)
        })?;
        active.matched += 1;
        let error = active.reply.error.clone();
        let counts = state.counts.entry(operation.name()).or_default();
        counts.calls += 1;
        counts.faulted += 1;
        Some(error)
    }
}

#[cfg(test)]
mod tests {
    use super::super::classify;
    use super::*;
    use hyper::{Method, Request};

    fn parts(method: Method, uri: &str) -> Parts {
        Request::builder()
            .method(method)
            .uri(uri)
            .body(())
            .map(|r| r.into_parts().0)
            .unwrap()
    }

    #[test]
    fn replies_answer_one_operation_on_one_bucket_in_s3_s_error_shape() {
        let shared = Shared::default();
        shared.lock().replies.push(ActiveReply {
            id: RuleId(1),
            reply: Reply::next(
                2,
                "s3:PutObject",
                S3Error::access_denied("a <b> & 'c'\nd\u{1b}"),
            )
            .on_bucket("src"),
            matched: 0,
        });
        let call = |method: Method, uri: &str| {
            let parts = parts(method, uri);
            let operation = classify(&parts, b"");
            shared.reply_for(&operation, &parts)
        };
        assert_eq!(call(Method::PUT, "/other/k?x-id=PutObject"), None);
        assert_eq!(call(Method::HEAD, "/src/k"), None);
        let answered = call(Method::PUT, "/src/replmon-canary/r/run?x-id=PutObject");
        assert_eq!(answered.as_ref().map(|e| e.status), Some(403));
        assert!(call(Method::PUT, "/src/k").is_some());
        assert_eq!(call(Method::PUT, "/src/k"), None, "two calls, then through");
        let counts = shared.lock().counts["s3:PutObject"];
        assert_eq!((counts.calls, counts.faulted), (2, 2));
        let xml = xml_text(&answered.unwrap().message);
        assert_eq!(xml, "a &lt;b&gt; &amp; &apos;c&apos;&#10;d\u{fffd}");
        let denied = S3Error::kms_denied(
            "arn:aws:sts::1:assumed-role/r/s",
            "arn:k",
            KmsDenial::ExplicitDeny("identity-based"),
        );
        assert!(denied
            .message
            .ends_with("with an explicit deny in an identity-based policy"));
    }
}
