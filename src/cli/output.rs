//! How the CLI writes: to stdout without failing on a closed pipe, text tables of sync
//! rows, pretty JSON, relative times, sanitised remote strings and private files.
//!
//! Every command prints through these helpers so `legion nodes list | head` is not an
//! error and a string from a cloud cannot move the cursor. Nothing here talks to the
//! engine.

use std::io::Write;
use std::path::Path;

use color_eyre::eyre::{Context, Result};
use serde::Serialize;

use crate::engine::snapshot::SyncRow;

/// Print a line to stdout; a closed pipe (`legion nodes list | head`) is not an error.
macro_rules! outln {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($t)*);
    }};
}

/// Print to stdout without a newline; a closed pipe is not an error.
macro_rules! out {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let _ = write!(std::io::stdout(), $($t)*);
    }};
}

pub(crate) use {out, outln};

/// A value as pretty JSON on its own line.
pub(crate) fn json<T: Serialize + ?Sized>(value: &T) -> Result<()> {
    outln!("{}", json_safe(&serde_json::to_string_pretty(value)?));
    Ok(())
}

/// JSON text with no character a terminal acts on. serde_json escapes C0 controls but
/// writes DEL, C1 controls (U+009B is a CSI on some terminals) and bidi overrides raw;
/// in JSON text DEL and every non-ASCII character are inside a string, so writing those
/// as `\uXXXX` keeps the same JSON value.
pub(crate) fn json_safe(text: &str) -> std::borrow::Cow<'_, str> {
    use crate::core::text::is_unsafe;
    let unsafe_here = |c: char| c == '\x7f' || (!c.is_ascii() && is_unsafe(c));
    // The common case, ASCII below DEL, is told by a byte scan that vectorises.
    if text.bytes().all(|b| b < 0x7f) || !text.chars().any(unsafe_here) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if unsafe_here(c) {
            // Every unsafe non-ASCII character is in the Basic Multilingual Plane.
            out.push_str(&format!("\\u{:04x}", c as u32));
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

/// A string from a provider, a server, an imported host or a remote error, safe to
/// print: its control, C1 and bidi characters shown escaped ([`crate::core::text`]).
pub(crate) fn clean(s: &str) -> String {
    crate::core::text::clean(s).into_owned()
}

/// A block of text made of remote strings (a `plain::render` table), each line through
/// [`clean`]: the table's own cells are cleaned already, this also covers what it
/// joins in whole (provider health, apply summaries).
pub(crate) fn print_block(text: &str) {
    for line in text.lines() {
        outln!("{}", clean(line));
    }
}

/// Zone, firewall or domain rows: a JSON array, or one line each with its operator tasks.
pub(crate) fn print_rows(rows: &[SyncRow], as_json: bool) -> Result<()> {
    if as_json {
        return json(rows);
    }
    for r in rows {
        let note = r
            .last_error
            .as_deref()
            .or(r.waiting.as_deref())
            .unwrap_or("");
        outln!(
            "{:<28} {:<8} {:<10} {:<28} {}",
            clean(&r.name),
            clean(&r.provider),
            r.state.to_string(),
            clean(&r.summary),
            clean(note)
        );
        for task in &r.tasks {
            outln!("  operator task: {}", clean(task));
        }
    }
    Ok(())
}

/// `secs` ago, to the minute or the hour.
pub(crate) fn ago(secs: u64) -> String {
    match secs {
        0..60 => format!("{secs}s ago"),
        60..3600 => format!("{}m ago", secs / 60),
        3600..86400 => format!("{}h {}m ago", secs / 3600, secs / 60 % 60),
        _ => format!("{}d {}h ago", secs / 86400, secs / 3600 % 24),
    }
}

/// Create `path` (it must not exist) readable by this user only, holding `contents`.
pub(crate) fn write_private(path: &Path, contents: &str) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    f.write_all(contents.as_bytes())?;
    f.sync_all()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ago_rounds_to_the_largest_units() {
        assert_eq!(ago(5), "5s ago");
        assert_eq!(ago(125), "2m ago");
        assert_eq!(ago(3 * 3600 + 7 * 60), "3h 7m ago");
        assert_eq!(ago(2 * 86400 + 5 * 3600), "2d 5h ago");
    }

    #[test]
    fn json_output_escapes_c1_and_bidi_and_keeps_the_value() {
        let value = serde_json::json!({"name": "a\u{9b}2J\u{202e}b\x1b]0;t\x07\x7f", "ok": "café"});
        let text = serde_json::to_string_pretty(&value).unwrap();
        let safe = json_safe(&text);
        assert!(
            !safe
                .chars()
                .any(|c| c != '\n' && crate::core::text::is_unsafe(c)),
            "{safe}"
        );
        assert!(
            safe.contains("\\u009b") && safe.contains("\\u202e") && safe.contains("\\u007f"),
            "{safe}"
        );
        let back: serde_json::Value = serde_json::from_str(&safe).unwrap();
        assert_eq!(back, value);
    }

    #[test]
    fn clean_shows_escape_sequences_escaped() {
        assert_eq!(clean("web\x1b[2J-1\n"), "web\\x1b[2J-1\\n");
    }
}
