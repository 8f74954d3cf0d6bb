//! The one sanitizer for text Legion did not write: strings from provider APIs, servers,
//! imported hosts and remote errors, before they reach a terminal (CLI text, the
//! dashboard, the log tail, the outermost error print).
//!
//! It owns the decision of which characters a terminal must never receive from a remote,
//! and how they are shown instead: ESCAPED, visibly, so an operator sees that a catalog
//! description carried `\x1b]52;c;…` (a clipboard write) rather than having it acted on
//! or silently dropped. Control characters (C0, DEL), the C1 controls U+0080..U+009F
//! (U+009B is a one-byte CSI on some terminals), and the bidirectional overrides,
//! embeddings, isolates and marks (which reorder what the operator reads) are escaped;
//! every other character, including a backslash, passes unchanged, so ordinary text is
//! byte for byte what it was. An escape sequence loses its ESC (or its C1 introducer),
//! which is what makes the rest of it inert text.
//!
//! It must stay a pure function over `&str`: no terminal queries, no allocation when
//! nothing needs escaping (most strings).

use std::borrow::Cow;
use std::fmt::Write as _;

/// Whether `c` must never reach a terminal as itself.
pub fn is_unsafe(c: char) -> bool {
    c.is_control() // C0, DEL and C1 (U+0080..U+009F)
        || matches!(
            c,
            // Bidi embeddings and overrides, isolates, marks; line and paragraph
            // separators (some terminals and pagers break lines on them).
            '\u{202A}'..='\u{202E}'
                | '\u{2066}'..='\u{2069}'
                | '\u{200E}'
                | '\u{200F}'
                | '\u{061C}'
                | '\u{2028}'
                | '\u{2029}'
        )
}

/// Append `c` to `out`, escaped when it is unsafe: `\n`, `\r`, `\t`, `\x1b` for the other
/// ASCII controls, `\u{9b}` for C1 controls and the bidi and separator characters.
pub fn push_escaped(out: &mut String, c: char) {
    if !is_unsafe(c) {
        out.push(c);
        return;
    }
    // Writing to a String cannot fail.
    let _ = match c {
        '\n' => write!(out, "\\n"),
        '\r' => write!(out, "\\r"),
        '\t' => write!(out, "\\t"),
        c if (c as u32) < 0x80 => write!(out, "\\x{:02x}", c as u32),
        c => write!(out, "\\u{{{:x}}}", c as u32),
    };
}

/// `s` safe to print on a terminal: every unsafe character shown escaped (see the module
/// doc). Borrowed when nothing needed escaping.
pub fn clean(s: &str) -> Cow<'_, str> {
    match s.char_indices().find(|&(_, c)| is_unsafe(c)) {
        None => Cow::Borrowed(s),
        Some((first, _)) => {
            let mut out = String::with_capacity(s.len() + 8);
            out.push_str(&s[..first]);
            for c in s[first..].chars() {
                push_escaped(&mut out, c);
            }
            Cow::Owned(out)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every class of hostile sequence the CLI and the dashboard must neutralise, with
    /// the escaped form the operator sees instead.
    const HOSTILE: &[(&str, &str)] = &[
        ("\x1b]52;c;cHduZWQ=\x07", "\\x1b]52;c;cHduZWQ=\\x07"),
        ("\x1b]0;owned\x07", "\\x1b]0;owned\\x07"),
        ("\x1b[2K\rfake", "\\x1b[2K\\rfake"),
        ("\x1bP+q544e\x1b\\", "\\x1bP+q544e\\x1b\\"),
        ("\u{9b}2J", "\\u{9b}2J"),
        ("\u{9d}0;t\u{9c}", "\\u{9d}0;t\\u{9c}"),
        ("abc\u{202e}fdp.exe", "abc\\u{202e}fdp.exe"),
        (
            "\u{2066}x\u{2069}\u{200f}\u{61c}",
            "\\u{2066}x\\u{2069}\\u{200f}\\u{61c}",
        ),
        ("back\x08\x08\x7f", "back\\x08\\x08\\x7f"),
        ("two\nlines\ttab", "two\\nlines\\ttab"),
    ];

    #[test]
    fn each_class_of_sequence_is_shown_escaped() {
        for (raw, shown) in HOSTILE {
            let out = clean(raw);
            assert_eq!(out, *shown, "{raw:?}");
            assert!(!out.chars().any(is_unsafe), "{out:?}");
        }
    }

    #[test]
    fn ordinary_text_is_unchanged_and_not_copied() {
        for s in ["web-1", "Ubuntu 24.04 (x86_64)", "a\\b", "café ☃ 東京", ""] {
            assert!(matches!(clean(s), Cow::Borrowed(t) if t == s), "{s}");
        }
    }
}
