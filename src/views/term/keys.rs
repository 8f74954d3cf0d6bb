//! Keys and pastes to the bytes a remote program expects, xterm-style.
//!
//! Pure functions over crossterm events and the remote's input modes (read from the
//! emulator: application cursor keys, bracketed paste). They never see the pane's own keys:
//! the caller takes the leave key (default Ctrl-\) before calling [`encode_key`], which
//! would otherwise encode it as 0x1c (FS, what a terminal sends for Ctrl-\ and what makes
//! a remote shell send SIGQUIT).

use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

const ESC: u8 = 0x1b;

/// The start and end markers a bracketed paste is wrapped in.
pub const PASTE_START: &[u8] = b"\x1b[200~";
pub const PASTE_END: &[u8] = b"\x1b[201~";

/// The bytes a terminal would send for `key`, or `None` for a key with no encoding (a
/// release event, a media or modifier key, F13 and above).
///
/// `app_cursor` is the remote's application-cursor-keys mode (DECCKM, `ESC[?1h`): arrows and
/// Home/End are then sent as `ESC O A` (SS3) instead of `ESC [ A` (CSI). A modified arrow is
/// always `CSI 1;<m>A` with xterm's modifier number (1 + Shift 1 + Alt 2 + Ctrl 4 + Meta 8).
/// Alt on a character key prefixes ESC, as xterm's `metaSendsEscape` does.
pub fn encode_key(key: KeyEvent, app_cursor: bool) -> Option<Vec<u8>> {
    if key.kind == KeyEventKind::Release {
        return None;
    }
    let mods = key.modifiers;
    let alt = mods.contains(KeyModifiers::ALT);
    let ctrl = mods.contains(KeyModifiers::CONTROL);
    let shift = mods.contains(KeyModifiers::SHIFT);
    // Keys that xterm encodes as a plain byte (or UTF-8 text), with ESC in front for Alt.
    let plain: Option<Vec<u8>> = match key.code {
        KeyCode::Char(c) if ctrl => Some(control_char(c).map_or_else(|| utf8(c), |b| vec![b])),
        KeyCode::Char(c) => Some(utf8(c)),
        KeyCode::Enter => Some(vec![b'\r']),
        // Ctrl-Backspace sends BS where DEL is the plain key, as xterm and most terminals do.
        KeyCode::Backspace if ctrl => Some(vec![0x08]),
        KeyCode::Backspace => Some(vec![0x7f]),
        KeyCode::Tab if shift => Some(b"\x1b[Z".to_vec()),
        KeyCode::Tab => Some(vec![b'\t']),
        KeyCode::BackTab => Some(b"\x1b[Z".to_vec()),
        KeyCode::Esc => Some(vec![ESC]),
        KeyCode::Null => Some(vec![0]),
        _ => None,
    };
    if let Some(bytes) = plain {
        if alt {
            let mut out = Vec::with_capacity(bytes.len() + 1);
            out.push(ESC);
            out.extend_from_slice(&bytes);
            return Some(out);
        }
        return Some(bytes);
    }
    let m = modifier_param(mods);
    let seq = match key.code {
        KeyCode::Up => cursor_key(b'A', m, app_cursor),
        KeyCode::Down => cursor_key(b'B', m, app_cursor),
        KeyCode::Right => cursor_key(b'C', m, app_cursor),
        KeyCode::Left => cursor_key(b'D', m, app_cursor),
        KeyCode::Home => cursor_key(b'H', m, app_cursor),
        KeyCode::End => cursor_key(b'F', m, app_cursor),
        KeyCode::Insert => tilde_key(2, m),
        KeyCode::Delete => tilde_key(3, m),
        KeyCode::PageUp => tilde_key(5, m),
        KeyCode::PageDown => tilde_key(6, m),
        KeyCode::F(n @ 1..=4) => {
            let last = b"PQRS"[usize::from(n - 1)];
            match m {
                None => vec![ESC, b'O', last],
                Some(m) => csi(&format!("1;{m}"), last),
            }
        }
        KeyCode::F(n @ 5..=12) => {
            const CODES: [u8; 8] = [15, 17, 18, 19, 20, 21, 23, 24];
            tilde_key(CODES[usize::from(n - 5)], m)
        }
        _ => return None,
    };
    Some(seq)
}

/// The C0 byte for Ctrl with `c`, as a VT220/xterm keyboard sends it: Ctrl-A..Z are 1..26
/// (either case), Ctrl-@ and Ctrl-Space are NUL, Ctrl-[ \ ] ^ _ are 27..31, Ctrl-? is DEL,
/// and the digit row gives the same bytes (Ctrl-2 NUL, Ctrl-3..7 ESC..US, Ctrl-8 DEL).
/// `None` for other characters, which are then sent as themselves.
fn control_char(c: char) -> Option<u8> {
    let byte = match c {
        'a'..='z' => c as u8 - b'a' + 1,
        'A'..='Z' => c as u8 - b'A' + 1,
        '@' | ' ' | '2' => 0,
        '[' | '3' => 0x1b,
        '\\' | '4' => 0x1c,
        ']' | '5' => 0x1d,
        '^' | '6' => 0x1e,
        '_' | '7' | '/' => 0x1f,
        '?' | '8' => 0x7f,
        _ => return None,
    };
    Some(byte)
}

fn utf8(c: char) -> Vec<u8> {
    let mut buf = [0u8; 4];
    c.encode_utf8(&mut buf).as_bytes().to_vec()
}

/// xterm's modifier parameter, `None` without modifiers.
fn modifier_param(mods: KeyModifiers) -> Option<u8> {
    let mut m = 0;
    if mods.contains(KeyModifiers::SHIFT) {
        m += 1;
    }
    if mods.contains(KeyModifiers::ALT) {
        m += 2;
    }
    if mods.contains(KeyModifiers::CONTROL) {
        m += 4;
    }
    if mods.intersects(KeyModifiers::META | KeyModifiers::SUPER) {
        m += 8;
    }
    (m > 0).then_some(m + 1)
}

fn csi(params: &str, last: u8) -> Vec<u8> {
    let mut out = Vec::with_capacity(params.len() + 3);
    out.extend_from_slice(b"\x1b[");
    out.extend_from_slice(params.as_bytes());
    out.push(last);
    out
}

/// Arrows, Home and End: SS3 in application cursor mode, CSI otherwise, `CSI 1;<m>` with
/// modifiers whatever the mode.
fn cursor_key(last: u8, m: Option<u8>, app_cursor: bool) -> Vec<u8> {
    match m {
        Some(m) => csi(&format!("1;{m}"), last),
        None if app_cursor => vec![ESC, b'O', last],
        None => vec![ESC, b'[', last],
    }
}

/// The `CSI <code> ~` keys: Insert, Delete, PgUp, PgDn, F5..F12.
fn tilde_key(code: u8, m: Option<u8>) -> Vec<u8> {
    match m {
        Some(m) => csi(&format!("{code};{m}"), b'~'),
        None => csi(&code.to_string(), b'~'),
    }
}

/// The bytes for pasting `text`.
///
/// With `bracketed` (the remote enabled `ESC[?2004h`) the text is wrapped in
/// `ESC[200~ … ESC[201~`, and every end marker inside it is removed first, so pasted text
/// can never close the bracket early and have the rest run as typed commands. Without it,
/// line breaks become CR, which is what the Enter key sends.
pub fn encode_paste(text: &str, bracketed: bool) -> Vec<u8> {
    if !bracketed {
        return text.replace("\r\n", "\r").replace('\n', "\r").into_bytes();
    }
    let mut body = text.as_bytes().to_vec();
    // Removing one marker can join the bytes around it into another ("\e[20" + marker +
    // "1~"), so repeat until none is left; each pass shortens the text.
    while let Some(at) = find(&body, PASTE_END) {
        body.drain(at..at + PASTE_END.len());
    }
    let mut out = Vec::with_capacity(body.len() + PASTE_START.len() + PASTE_END.len());
    out.extend_from_slice(PASTE_START);
    out.extend_from_slice(&body);
    out.extend_from_slice(PASTE_END);
    out
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(code: KeyCode, mods: KeyModifiers) -> Vec<u8> {
        encode_key(KeyEvent::new(code, mods), false).unwrap_or_default()
    }

    fn app(code: KeyCode, mods: KeyModifiers) -> Vec<u8> {
        encode_key(KeyEvent::new(code, mods), true).unwrap_or_default()
    }

    const N: KeyModifiers = KeyModifiers::NONE;
    const C: KeyModifiers = KeyModifiers::CONTROL;
    const A: KeyModifiers = KeyModifiers::ALT;
    const S: KeyModifiers = KeyModifiers::SHIFT;

    #[test]
    fn printable_and_utf8() {
        assert_eq!(key(KeyCode::Char('a'), N), b"a");
        assert_eq!(key(KeyCode::Char('A'), S), b"A");
        assert_eq!(key(KeyCode::Char('é'), N), "é".as_bytes());
        assert_eq!(key(KeyCode::Char('界'), N), "界".as_bytes());
        assert_eq!(key(KeyCode::Char('🦀'), N), "🦀".as_bytes());
    }

    #[test]
    fn editing_keys() {
        assert_eq!(key(KeyCode::Enter, N), b"\r");
        assert_eq!(key(KeyCode::Backspace, N), b"\x7f");
        assert_eq!(key(KeyCode::Backspace, C), b"\x08");
        assert_eq!(key(KeyCode::Tab, N), b"\t");
        assert_eq!(key(KeyCode::BackTab, S), b"\x1b[Z");
        assert_eq!(key(KeyCode::Tab, S), b"\x1b[Z");
        assert_eq!(key(KeyCode::Esc, N), b"\x1b");
        assert_eq!(key(KeyCode::Insert, N), b"\x1b[2~");
        assert_eq!(key(KeyCode::Delete, N), b"\x1b[3~");
        assert_eq!(key(KeyCode::PageUp, N), b"\x1b[5~");
        assert_eq!(key(KeyCode::PageDown, N), b"\x1b[6~");
        assert_eq!(key(KeyCode::Delete, C), b"\x1b[3;5~");
    }

    #[test]
    fn control_keys() {
        for (i, c) in ('a'..='z').enumerate() {
            assert_eq!(key(KeyCode::Char(c), C), vec![i as u8 + 1], "ctrl-{c}");
            let upper = c.to_ascii_uppercase();
            assert_eq!(key(KeyCode::Char(upper), C | S), vec![i as u8 + 1]);
        }
        assert_eq!(key(KeyCode::Char('@'), C), b"\x00");
        assert_eq!(key(KeyCode::Char(' '), C), b"\x00");
        assert_eq!(key(KeyCode::Char('['), C), b"\x1b");
        // The pane's default leave key: the caller intercepts it before encode_key.
        assert_eq!(key(KeyCode::Char('\\'), C), b"\x1c");
        assert_eq!(key(KeyCode::Char('4'), C), b"\x1c");
        assert_eq!(key(KeyCode::Char(']'), C), b"\x1d");
        assert_eq!(key(KeyCode::Char('^'), C), b"\x1e");
        assert_eq!(key(KeyCode::Char('_'), C), b"\x1f");
        assert_eq!(key(KeyCode::Char('?'), C), b"\x7f");
        assert_eq!(key(KeyCode::Char('é'), C), "é".as_bytes());
        assert_eq!(key(KeyCode::Char('1'), C), b"1");
    }

    #[test]
    fn alt_prefixes_escape() {
        assert_eq!(key(KeyCode::Char('x'), A), b"\x1bx");
        assert_eq!(key(KeyCode::Char('x'), A | C), b"\x1b\x18");
        assert_eq!(key(KeyCode::Backspace, A), b"\x1b\x7f");
        assert_eq!(key(KeyCode::Enter, A), b"\x1b\r");
        assert_eq!(key(KeyCode::Char('é'), A), "\x1bé".as_bytes());
    }

    #[test]
    fn arrows_follow_cursor_mode() {
        assert_eq!(key(KeyCode::Up, N), b"\x1b[A");
        assert_eq!(key(KeyCode::Down, N), b"\x1b[B");
        assert_eq!(key(KeyCode::Right, N), b"\x1b[C");
        assert_eq!(key(KeyCode::Left, N), b"\x1b[D");
        assert_eq!(key(KeyCode::Home, N), b"\x1b[H");
        assert_eq!(key(KeyCode::End, N), b"\x1b[F");
        assert_eq!(app(KeyCode::Up, N), b"\x1bOA");
        assert_eq!(app(KeyCode::Left, N), b"\x1bOD");
        assert_eq!(app(KeyCode::Home, N), b"\x1bOH");
        assert_eq!(app(KeyCode::End, N), b"\x1bOF");
        // PgUp is not a cursor key: the same in both modes.
        assert_eq!(app(KeyCode::PageUp, N), b"\x1b[5~");
    }

    #[test]
    fn modified_arrows() {
        assert_eq!(key(KeyCode::Up, C), b"\x1b[1;5A");
        assert_eq!(app(KeyCode::Up, C), b"\x1b[1;5A");
        assert_eq!(key(KeyCode::Right, S), b"\x1b[1;2C");
        assert_eq!(key(KeyCode::Left, A), b"\x1b[1;3D");
        assert_eq!(key(KeyCode::Down, C | S), b"\x1b[1;6B");
        assert_eq!(key(KeyCode::Home, C | A | S), b"\x1b[1;8H");
    }

    #[test]
    fn function_keys() {
        let expected: [&[u8]; 12] = [
            b"\x1bOP",
            b"\x1bOQ",
            b"\x1bOR",
            b"\x1bOS",
            b"\x1b[15~",
            b"\x1b[17~",
            b"\x1b[18~",
            b"\x1b[19~",
            b"\x1b[20~",
            b"\x1b[21~",
            b"\x1b[23~",
            b"\x1b[24~",
        ];
        for (n, want) in (1..=12).zip(expected) {
            assert_eq!(key(KeyCode::F(n), N), want, "F{n}");
        }
        assert_eq!(key(KeyCode::F(1), S), b"\x1b[1;2P");
        assert_eq!(key(KeyCode::F(5), C), b"\x1b[15;5~");
        assert_eq!(encode_key(KeyEvent::new(KeyCode::F(13), N), false), None);
    }

    #[test]
    fn releases_and_unknown_keys_send_nothing() {
        let mut release = KeyEvent::new(KeyCode::Char('a'), N);
        release.kind = KeyEventKind::Release;
        assert_eq!(encode_key(release, false), None);
        assert_eq!(encode_key(KeyEvent::new(KeyCode::CapsLock, N), false), None);
        let mut repeat = KeyEvent::new(KeyCode::Char('a'), N);
        repeat.kind = KeyEventKind::Repeat;
        assert_eq!(encode_key(repeat, false), Some(b"a".to_vec()));
    }

    #[test]
    fn paste_plain_and_bracketed() {
        assert_eq!(encode_paste("a\nb\r\nc", false), b"a\rb\rc");
        assert_eq!(encode_paste("ls\n", true), b"\x1b[200~ls\n\x1b[201~");
        assert_eq!(encode_paste("", true), b"\x1b[200~\x1b[201~");
    }

    #[test]
    fn paste_cannot_close_the_bracket() {
        let hostile = "echo hi\x1b[201~rm -rf ~\n";
        let out = encode_paste(hostile, true);
        assert_eq!(out, b"\x1b[200~echo hirm -rf ~\n\x1b[201~");
        // A marker assembled from the pieces around another one is removed too.
        let nested = "a\x1b[20\x1b[201~1~b";
        let out = encode_paste(nested, true);
        assert_eq!(out, b"\x1b[200~ab\x1b[201~");
        let inner = &out[PASTE_START.len()..out.len() - PASTE_END.len()];
        assert_eq!(find(inner, PASTE_END), None);
    }
}
