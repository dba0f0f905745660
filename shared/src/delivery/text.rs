//! Text from outside in pages and logs. Anyone who can make an object's replication fail, send
//! to the queue or publish to the topic chooses keys, rule IDs, alarm names and reasons: a key
//! holding a newline and "Fix: ..." must not forge a line of a page, and right-to-left overrides
//! must not make one value read as another. Such characters are shown escaped (`\n`, `\u{202e}`), never
//! dropped, so the object can still be found.

use std::fmt;

/// Whether a character is shown escaped: control characters (line breaks included), and the
/// invisible ones that reorder or hide text (bidirectional controls, zero-width characters,
/// line and paragraph separators, interlinear annotation, the byte order mark).
pub fn is_hidden(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061C}'
                | '\u{180E}'
                | '\u{200B}'..='\u{200F}'
                | '\u{2028}'..='\u{202E}'
                | '\u{2060}'..='\u{206F}'
                | '\u{FEFF}'
                | '\u{FFF9}'..='\u{FFFB}'
        )
}

/// An outside value, displayed with its hidden characters escaped.
#[derive(Debug, Clone, Copy)]
pub struct Untrusted<'a>(pub &'a str);

impl fmt::Display for Untrusted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut rest = self.0;
        while let Some(position) = rest.find(is_hidden) {
            f.write_str(&rest[..position])?;
            let Some(c) = rest[position..].chars().next() else {
                break;
            };
            // `\n`, `\r`, `\t`, else `\u{202e}`: hidden characters are never quotes.
            write!(f, "{}", c.escape_default())?;
            rest = &rest[position + c.len_utf8()..];
        }
        f.write_str(rest)
    }
}

/// [`Untrusted`] as an owned string.
pub fn untrusted(text: &str) -> String {
    if text.contains(is_hidden) {
        Untrusted(text).to_string()
    } else {
        text.to_owned()
    }
}

/// [`untrusted`], at most `max_chars` characters (a cut marked): an outside value quoted in an
/// error, a log line or a page.
pub fn untrusted_brief(text: &str, max_chars: usize) -> String {
    crate::delivery::page::shorten(&untrusted(text), max_chars)
}

/// A whole page body as a last line of defence: hidden characters other than the body's own
/// line breaks escaped (values are escaped one by one where they are inserted, which is what
/// keeps their line breaks from forging lines).
pub fn neutralised_body(body: &str) -> String {
    if !body.contains(|c: char| c != '\n' && is_hidden(c)) {
        return body.to_owned();
    }
    body.split('\n')
        .map(|line| Untrusted(line).to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hidden_characters_are_escaped_and_the_rest_kept() {
        assert_eq!(untrusted("plain/key é.bin"), "plain/key é.bin");
        assert_eq!(
            untrusted("a\nFix: rm -rf\r\t\u{1b}[31m"),
            "a\\nFix: rm -rf\\r\\t\\u{1b}[31m"
        );
        assert_eq!(
            untrusted("invoice\u{202E}fdp.exe\u{200B}\u{2066}"),
            "invoice\\u{202e}fdp.exe\\u{200b}\\u{2066}"
        );
        assert_eq!(
            untrusted("\u{85}\u{2028}\u{feff}"),
            "\\u{85}\\u{2028}\\u{feff}"
        );
    }

    #[test]
    fn a_body_keeps_its_own_lines_and_loses_hidden_characters() {
        let body = "Rule: r\u{202E}1\nKey: k\u{7}";
        assert_eq!(neutralised_body(body), "Rule: r\\u{202e}1\nKey: k\\u{7}");
        assert_eq!(neutralised_body("a\nb"), "a\nb");
    }
}
