//! Text that came from an archive or a document, made safe to print: a
//! name in a tar header can hold terminal escapes (`\x1b[2J`) or
//! right-to-left overrides that would rewrite what the user reads.

/// `s` with control characters and bidirectional overrides written as
/// Rust escapes (`\u{1b}`, `\n`); everything else as it is.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_control() || is_bidi_control(c) {
            out.extend(c.escape_debug());
        } else {
            out.push(c);
        }
    }
    out
}

/// Raw bytes (a tar name, a link target), invalid UTF-8 shown as U+FFFD.
pub fn escape_bytes(b: &[u8]) -> String {
    escape(&String::from_utf8_lossy(b))
}

/// Characters that reorder the text around them when displayed.
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminal_escapes_and_overrides_are_written_out() {
        assert_eq!(escape("a\x1b[31mb\n"), "a\\u{1b}[31mb\\n");
        assert_eq!(escape("x\u{202e}y"), "x\\u{202e}y");
        assert_eq!(escape("plain/ünïcode"), "plain/ünïcode");
        assert_eq!(escape_bytes(b"\xff\x07"), "\u{fffd}\\u{7}");
    }
}
