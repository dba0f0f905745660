//! What AWS allows in the names an event carries, checked where events are parsed. A record
//! that breaks a rule is not S3's (or is corrupted): it is refused with an error naming the
//! field, and its message goes back for retry and then to the dead-letter queue. Checked names
//! also keep ledger keys apart: bucket names, failure codes and version IDs cannot hold the `#`
//! that separates the parts of a key, so no two incidents or objects share one.

/// S3 keys are at most 1,024 bytes (UTF-8, after URL decoding).
pub const MAX_KEY_BYTES: usize = 1024;
/// Replication rule IDs are at most 255 characters.
pub const MAX_RULE_ID_CHARS: usize = 255;
/// S3's failure codes are short words (`DstPutObjectNotPermitted`); room for new ones.
pub const MAX_REASON_CHARS: usize = 128;
/// S3 version IDs are at most 1,024 bytes.
pub const MAX_VERSION_ID_BYTES: usize = 1024;

/// A bucket name as S3 has allowed them: today's rules (3 to 63 lower-case letters, digits, dots
/// and hyphens) and those of us-east-1 buckets created before March 2018, which may still be
/// replicated (upper case and underscores, up to 255 characters). Always starting and ending with
/// a letter or digit, never a space, a `#` or a control character.
pub fn bucket_name(field: &str, name: &str) -> Result<(), String> {
    let fail = |why: &str| Err(format!("`{field}` {why}: {:?}", shortened(name)));
    if !(3..=255).contains(&name.len()) {
        return fail("is not 3 to 255 characters long");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
    {
        return fail("holds characters no bucket name has (letters, digits, '.', '-', '_' only)");
    }
    let edge = |b: Option<u8>| b.is_some_and(|b| b.is_ascii_alphanumeric());
    if !edge(name.bytes().next()) || !edge(name.bytes().last()) {
        return fail("does not start and end with a letter or digit");
    }
    Ok(())
}

/// A replication rule ID: any text, at most 255 characters (empty when S3 leaves it out).
pub fn rule_id(id: &str) -> Result<(), String> {
    if id.chars().count() > MAX_RULE_ID_CHARS {
        return Err(format!(
            "`replicationEventData.replicationRuleId` is longer than {MAX_RULE_ID_CHARS} characters: {:?}",
            shortened(id)
        ));
    }
    Ok(())
}

/// A failure code: letters, digits and `_`, at most [`MAX_REASON_CHARS`].
pub fn failure_reason(reason: &str) -> Result<(), String> {
    if reason.chars().count() > MAX_REASON_CHARS
        || !reason
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_')
    {
        return Err(format!(
            "`replicationEventData.failureReason` is not a failure code (letters, digits and '_', at most {MAX_REASON_CHARS}): {:?}",
            shortened(reason)
        ));
    }
    Ok(())
}

/// An object key after URL decoding: at most [`MAX_KEY_BYTES`] bytes. A key that is not UTF-8
/// is kept URL-encoded (see `event::decode_key`); its bytes are what counts.
pub fn object_key(encoded: &str, decoded: &str) -> Result<(), String> {
    let bytes = if decoded == encoded && encoded.contains('%') {
        percent_encoding::percent_decode_str(encoded).count()
    } else {
        decoded.len()
    };
    if bytes > MAX_KEY_BYTES {
        return Err(format!(
            "`s3.object.key` is {bytes} bytes, more than S3's {MAX_KEY_BYTES}: {:?}",
            shortened(decoded)
        ));
    }
    Ok(())
}

/// A version ID: S3's are URL-safe (letters, digits, `.`, `_`, `-`, `+`, `/`, `=`), at most
/// [`MAX_VERSION_ID_BYTES`].
pub fn version_id(version: &str) -> Result<(), String> {
    if version.len() > MAX_VERSION_ID_BYTES
        || !version
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-_+/=".contains(&b))
    {
        return Err(format!(
            "`s3.object.versionId` is not a version ID: {:?}",
            shortened(version)
        ));
    }
    Ok(())
}

/// An AWS account ID: twelve digits.
pub fn account_id(field: &str, account: &str) -> Result<(), String> {
    if account.len() != 12 || !account.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "`{field}` is not an AWS account ID (12 digits): {:?}",
            shortened(account)
        ));
    }
    Ok(())
}

/// An AWS region name (`us-east-1`, `us-gov-west-1`, `eu-central-2`): lower-case words and a
/// number, joined by hyphens.
pub fn region(field: &str, region: &str) -> Result<(), String> {
    // Words of lowercase letters, then a number: `us-east-1`, `us-gov-west-1`. (Checked for
    // every event: no allocation.)
    let ok = region.len() <= 32
        && region.rsplit_once('-').is_some_and(|(words, number)| {
            !number.is_empty()
                && number.bytes().all(|b| b.is_ascii_digit())
                && words.split('-').count() >= 2
                && words
                    .split('-')
                    .all(|w| !w.is_empty() && w.bytes().all(|b| b.is_ascii_lowercase()))
        });
    if !ok {
        return Err(format!(
            "`{field}` is not an AWS region: {:?}",
            shortened(region)
        ));
    }
    Ok(())
}

/// Enough of a refused value to recognise it in an error, escaped.
fn shortened(value: &str) -> String {
    crate::delivery::text::untrusted_brief(value, 80)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_names_follow_s3_rules() {
        // Today's names, and a legacy us-east-1 one.
        for good in [
            "abc",
            "replmon-demo-source",
            "a.b-c.1",
            &"a".repeat(63),
            "Old_Bucket",
        ] {
            assert!(bucket_name("b", good).is_ok(), "{good}");
        }
        for bad in [
            "ab",
            &"a".repeat(256),
            "a#b",
            "a b",
            "-ab",
            "ab-",
            "a/b",
            "a\nb",
            "a\u{202e}b",
            "",
        ] {
            let error = bucket_name("s3.bucket.name", bad).unwrap_err();
            assert!(error.starts_with("`s3.bucket.name`"), "{error}");
        }
    }

    #[test]
    fn reasons_rules_keys_and_versions_are_bounded() {
        assert!(failure_reason("DstPutObjectNotPermitted").is_ok());
        assert!(failure_reason("Dst#Put").is_err());
        assert!(failure_reason("Fix: x\ny").is_err());
        assert!(failure_reason(&"A".repeat(129)).is_err());
        assert!(rule_id(&"r".repeat(255)).is_ok());
        assert!(rule_id("rule #1 \u{202e}").is_ok());
        assert!(rule_id(&"r".repeat(256)).is_err());
        let long = "k".repeat(1025);
        assert!(object_key(&long, &long).is_err());
        assert!(object_key("k", "k").is_ok());
        // Kept encoded (not UTF-8): 1,024 undecodable bytes are fine, 1,025 are not.
        let encoded = "%FF".repeat(1024);
        assert!(object_key(&encoded, &encoded).is_ok());
        let encoded = "%FF".repeat(1025);
        assert!(object_key(&encoded, &encoded).is_err());
        assert!(
            version_id("3HL4kqtJlcpXroDTDmJ+rmSpXd3dIbrHY+MTRCxf3vjVBH40Nr8X8gdRQBpUMLUo").is_ok()
        );
        assert!(version_id("v1#x").is_err());
    }

    #[test]
    fn accounts_and_regions() {
        assert!(account_id("a", "123456789012").is_ok());
        assert!(account_id("a", "12345678901").is_err());
        assert!(account_id("a", "12345678901x").is_err());
        for good in [
            "us-east-1",
            "us-gov-west-1",
            "eu-central-2",
            "ap-southeast-3",
        ] {
            assert!(region("r", good).is_ok(), "{good}");
        }
        for bad in ["us-east", "US-EAST-1", "us-east-1#x", "us east 1", "x", ""] {
            assert!(region("r", bad).is_err(), "{bad}");
        }
    }
}
