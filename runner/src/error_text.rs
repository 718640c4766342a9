//! How the runner shows an error to its user: one line, the error and its
//! causes outermost first, each said once.
//!
//! Our own errors keep the cause out of their Display (it is the `source`),
//! but not every library's do: an error whose message already ends with its
//! cause's text would print it twice with anyhow's `{:#}` (`open x:
//! Permission denied (os error 13): Permission denied (os error 13)`). A
//! cause the line already ends with is left out.
//!
//! An error can quote what a registry, an archive or an image said (a
//! media type, a digest a parser refused), so the line is escaped as a
//! whole: a terminal escape in it is shown, never obeyed, and the line
//! stays one line.

/// The error and its causes, joined with `: `, each once, escaped.
pub fn describe(err: &anyhow::Error) -> String {
    layerdb::escape::escape(&join_causes(err.chain().map(ToString::to_string)))
}

/// Characters of one error or cause kept from each of its ends: enough
/// for a path near PATH_MAX to stay recognisable, where a value quoted
/// whole from a hostile input (a Dockerfile line of 300 KB) made a line as
/// long.
const ENDS: usize = 1024;

/// `layer`, its middle left out past twice [`ENDS`] characters.
fn bounded(layer: String) -> String {
    let chars = layer.chars().count();
    if chars <= 2 * ENDS + 1 {
        return layer;
    }
    let head: String = layer.chars().take(ENDS).collect();
    let tail: String = layer.chars().skip(chars - ENDS).collect();
    format!("{head}…{tail}")
}

/// The layers joined, each shortened ([`bounded`]) once it is known not
/// to repeat the end of what came before (told on the whole texts).
fn join_causes(layers: impl Iterator<Item = String>) -> String {
    let (mut whole, mut line) = (String::new(), String::new());
    for layer in layers {
        if layer.is_empty() || whole.ends_with(&layer) {
            continue;
        }
        if !whole.is_empty() {
            whole.push_str(": ");
            line.push_str(": ");
        }
        whole.push_str(&layer);
        line.push_str(&bounded(layer));
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context as _;

    /// A library error that repeats its source in its own message.
    #[derive(Debug)]
    struct Embedding(std::io::Error);

    impl std::fmt::Display for Embedding {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "open /store/db: {}", self.0)
        }
    }

    impl std::error::Error for Embedding {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    fn denied() -> std::io::Error {
        std::io::Error::from_raw_os_error(libc::EACCES)
    }

    #[test]
    fn a_huge_cause_its_error_already_names_is_printed_once() {
        let long = "y".repeat(5_000);
        let err = anyhow::Error::new(std::io::Error::other(long.clone()))
            .context(format!("open x: {long}"));
        let line = describe(&err);
        assert_eq!(line.matches('…').count(), 1, "{line}");
    }

    #[test]
    fn a_huge_cause_keeps_its_two_ends() {
        let err = anyhow::anyhow!("invalid containerPort: {}", "x".repeat(300_000))
            .context("Dockerfile line 2: EXPOSE …");
        let line = describe(&err);
        assert!(
            line.chars().count() < 2 * ENDS + 100,
            "{} chars",
            line.len()
        );
        assert!(line.starts_with("Dockerfile line 2: EXPOSE …: invalid containerPort: xx"));
        assert!(line.ends_with("xxx"));
    }

    #[test]
    fn a_cause_its_error_already_names_is_printed_once() {
        let err = Err::<(), _>(Embedding(denied()))
            .context("open the store")
            .unwrap_err();
        let line = describe(&err);
        assert_eq!(
            line,
            "open the store: open /store/db: Permission denied (os error 13)"
        );
        assert_eq!(line.matches("Permission denied").count(), 1, "{line}");
    }

    #[test]
    fn what_an_error_quotes_cannot_drive_the_terminal_or_break_the_line() {
        let err = anyhow::anyhow!("unsupported manifest media type \u{1b}]0;owned\u{7}\nx")
            .context("pull r/x");
        assert_eq!(
            describe(&err),
            "pull r/x: unsupported manifest media type \\u{1b}]0;owned\\u{7}\\nx"
        );
    }

    #[test]
    fn every_distinct_cause_is_printed_outermost_first() {
        let err = Err::<(), _>(denied())
            .context("/store/format")
            .context("open the store")
            .unwrap_err();
        assert_eq!(
            describe(&err),
            "open the store: /store/format: Permission denied (os error 13)"
        );
    }
}
