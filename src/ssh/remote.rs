//! The pure half of the remote operations: the shell snippets Legion runs, how their output
//! is read, and the bounded output capture. No I/O here; `session.rs` runs these.

use serde::{Deserialize, Serialize};

use super::Target;
use super::error::SshError;

/// Bytes of stdout and of stderr an exec keeps (the tail; older output is dropped).
pub const OUTPUT_TAIL_BYTES: usize = 64 * 1024;

/// What a finished remote command left behind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecOutput {
    /// The exit status; `128 + n` when the command was killed by signal `n` (as shells
    /// report it), 255 for a signal without a known number.
    pub status: i32,
    /// The signal name (`KILL`, `TERM` …) when the command was killed by one.
    pub signal: Option<String>,
    /// The last [`OUTPUT_TAIL_BYTES`] of stdout, lossily decoded as UTF-8.
    pub stdout: String,
    /// The last [`OUTPUT_TAIL_BYTES`] of stderr, lossily decoded as UTF-8.
    pub stderr: String,
    /// Some output was dropped because it exceeded the capture bound.
    pub truncated: bool,
}

impl ExecOutput {
    pub fn success(&self) -> bool {
        self.status == 0 && self.signal.is_none()
    }

    /// The last `max_bytes` of stderr, or of stdout when stderr is empty: what an error
    /// message shows.
    pub fn tail(&self, max_bytes: usize) -> String {
        let text = if self.stderr.trim().is_empty() {
            &self.stdout
        } else {
            &self.stderr
        };
        let mut start = text.len().saturating_sub(max_bytes);
        while !text.is_char_boundary(start) {
            start += 1;
        }
        text[start..].to_string()
    }
}

/// Is `sudo` usable for the logged-in user without a terminal?
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SudoStatus {
    /// Logged in as root: no sudo needed.
    Root,
    /// `sudo -n true` succeeds.
    Passwordless,
    /// sudo is installed but asks for a password (or the user may not use it at all;
    /// sudo does not say which without one).
    NeedsPassword,
    /// No `sudo` command on the host.
    Missing,
}

impl SudoStatus {
    /// Why a login with this status cannot be managed (with the fix), or `None` when it
    /// can act as root.
    pub fn refusal(self, target: &Target) -> Option<SshError> {
        let why = match self {
            SudoStatus::Root | SudoStatus::Passwordless => return None,
            SudoStatus::NeedsPassword => "sudo asks for a password (or the user may not use it)",
            SudoStatus::Missing => "sudo is not installed",
        };
        Some(SshError::NeedsRoot {
            target: target.to_string(),
            user: target.user.clone(),
            why,
        })
    }
}

/// Was a key added to `authorized_keys`, or was it there already?
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyInstall {
    Added,
    AlreadyPresent,
}

/// One round trip: the uid, then sudo's answer. Works in any POSIX `sh`.
pub(crate) const SUDO_PROBE: &str = "id -u; if command -v sudo >/dev/null 2>&1; then \
     if sudo -n true >/dev/null 2>&1; then echo sudo=passwordless; \
     else echo sudo=password; fi; else echo sudo=missing; fi";

pub(crate) fn parse_sudo_probe(stdout: &str) -> Option<SudoStatus> {
    let mut lines = stdout.lines().map(str::trim);
    let uid: u32 = lines.next()?.parse().ok()?;
    if uid == 0 {
        return Some(SudoStatus::Root);
    }
    match lines.next()? {
        "sudo=passwordless" => Some(SudoStatus::Passwordless),
        "sudo=password" => Some(SudoStatus::NeedsPassword),
        "sudo=missing" => Some(SudoStatus::Missing),
        _ => None,
    }
}

/// Quote one word for a POSIX shell.
pub(crate) fn shell_quote(word: &str) -> String {
    format!("'{}'", word.replace('\'', r"'\''"))
}

/// Run `script` with `sh` whatever the user's login shell is (fish and csh would not
/// understand it). Scripts are single-line so csh-style shells accept the quoting.
pub(crate) fn in_sh(script: &str) -> String {
    format!("sh -c {}", shell_quote(script))
}

/// Append a public key line to `~/.ssh/authorized_keys` unless its key blob is there
/// already; creates `~/.ssh` (0700) and the file (0600). Prints `legion:added` or
/// `legion:present`.
pub(crate) fn install_key_script(line: &str, blob_b64: &str) -> String {
    let script = [
        "umask 077",
        r#"mkdir -p "$HOME/.ssh" && chmod 700 "$HOME/.ssh" || exit 1"#,
        r#"f="$HOME/.ssh/authorized_keys""#,
        r#"touch "$f" && chmod 600 "$f" || exit 1"#,
        &format!(
            r#"if grep -qF -- {} "$f"; then echo legion:present; exit 0; fi"#,
            shell_quote(blob_b64)
        ),
        r#"if [ -s "$f" ] && [ -n "$(tail -c 1 "$f")" ]; then printf '\n' >> "$f"; fi"#,
        &format!(
            r#"printf '%s\n' {} >> "$f" && echo legion:added"#,
            shell_quote(line)
        ),
    ]
    .join("; ");
    in_sh(&script)
}

/// Write stdin to a temporary file next to `path`, set `mode`, then rename it over
/// `path`: readers see the old file or the new one, never a partial one.
pub(crate) fn upload_script(path: &str, mode: u32, nonce: &str) -> String {
    let tmp = format!("{path}.legion-upload.{nonce}");
    let script = [
        "set -e".to_string(),
        format!("t={}", shell_quote(&tmp)),
        r#"trap 'rm -f "$t"' EXIT"#.to_string(),
        "umask 077".to_string(),
        r#"cat > "$t""#.to_string(),
        format!(r#"chmod {:o} "$t""#, mode & 0o7777),
        format!(r#"mv -f "$t" {}"#, shell_quote(path)),
    ]
    .join("; ");
    in_sh(&script)
}

/// A short, single-line rendering of a command for messages.
pub(crate) fn command_label(cmd: &str) -> String {
    const MAX: usize = 60;
    let first = cmd.lines().next().unwrap_or("");
    let mut label: String = first.chars().take(MAX).collect();
    if label.len() < cmd.len() {
        label.push('…');
    }
    format!("`{label}`")
}

/// Shells report death by signal `n` as `128 + n`.
pub(crate) fn signal_status(name: &str) -> i32 {
    let n = match name {
        "HUP" => 1,
        "INT" => 2,
        "QUIT" => 3,
        "ILL" => 4,
        "ABRT" => 6,
        "FPE" => 8,
        "KILL" => 9,
        "SEGV" => 11,
        "PIPE" => 13,
        "ALRM" => 14,
        "TERM" => 15,
        "USR1" => 10,
        "USR2" => 12,
        _ => return 255,
    };
    128 + n
}

/// Keeps the last `limit` bytes written to it.
pub(crate) struct Tail {
    buf: Vec<u8>,
    limit: usize,
    dropped: bool,
}

impl Tail {
    pub fn new(limit: usize) -> Tail {
        Tail {
            buf: Vec::new(),
            limit,
            dropped: false,
        }
    }

    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
        // Trim only when twice the bound, so a long stream costs O(n) in total.
        if self.buf.len() > self.limit.saturating_mul(2) {
            self.trim();
        }
    }

    fn trim(&mut self) {
        if self.buf.len() > self.limit {
            let cut = self.buf.len() - self.limit;
            self.buf.drain(..cut);
            self.dropped = true;
        }
    }

    /// The kept bytes as text, and whether anything was dropped.
    pub fn finish(mut self) -> (String, bool) {
        self.trim();
        let mut start = 0;
        if self.dropped {
            // Do not start in the middle of a UTF-8 sequence.
            while start < self.buf.len().min(3) && self.buf[start] & 0xC0 == 0x80 {
                start += 1;
            }
        }
        (
            String::from_utf8_lossy(&self.buf[start..]).into_owned(),
            self.dropped,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sudo_refusal_names_the_fix() {
        let t = Target::new("h", 22, "ops");
        assert!(SudoStatus::Root.refusal(&t).is_none());
        assert!(SudoStatus::Passwordless.refusal(&t).is_none());
        let m = SudoStatus::NeedsPassword.refusal(&t).unwrap().to_string();
        assert!(m.starts_with("ops@h: sudo asks for a password"), "{m}");
        assert!(m.contains("ops ALL=(ALL) NOPASSWD:ALL"), "{m}");
        assert!(
            SudoStatus::Missing
                .refusal(&t)
                .unwrap()
                .to_string()
                .contains("not installed")
        );
    }

    #[test]
    fn sudo_probe_parsing() {
        assert_eq!(parse_sudo_probe("0\n"), Some(SudoStatus::Root));
        assert_eq!(
            parse_sudo_probe("1000\nsudo=passwordless\n"),
            Some(SudoStatus::Passwordless)
        );
        assert_eq!(
            parse_sudo_probe("1000\nsudo=password\n"),
            Some(SudoStatus::NeedsPassword)
        );
        assert_eq!(
            parse_sudo_probe("1000\nsudo=missing\n"),
            Some(SudoStatus::Missing)
        );
        assert_eq!(parse_sudo_probe("welcome!\n"), None);
        assert_eq!(parse_sudo_probe("1000\n"), None);
    }

    #[test]
    fn quoting_survives_the_shell() {
        let word = "it's a \"path\" with $HOME and `x` and \\";
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("printf %s {}", shell_quote(word)))
            .output()
            .unwrap();
        assert_eq!(String::from_utf8(out.stdout).unwrap(), word);
    }

    #[test]
    fn install_script_is_one_line_and_quotes_the_key() {
        let s = install_key_script("ssh-ed25519 AAAA legion", "AAAA");
        assert!(!s.contains('\n'));
        assert!(s.starts_with("sh -c '"));
    }

    #[test]
    fn upload_script_sets_the_mode_in_octal() {
        let s = upload_script("/etc/x y", 0o100640, "ab");
        assert!(s.contains("chmod 640"));
        assert!(s.contains("x y.legion-upload.ab"));
    }

    #[test]
    fn tail_keeps_the_end_on_a_char_boundary() {
        let mut t = Tail::new(4);
        t.push("ab".as_bytes());
        t.push("cdéf".as_bytes());
        t.push("gh".as_bytes());
        let (text, dropped) = t.finish();
        assert!(dropped);
        assert_eq!(text, "fgh");

        let mut t = Tail::new(10);
        t.push(b"short");
        assert_eq!(t.finish(), ("short".to_string(), false));
    }

    #[test]
    fn labels_and_tails() {
        assert_eq!(command_label("echo hi"), "`echo hi`");
        assert_eq!(command_label("a\nb"), "`a…`");
        let out = ExecOutput {
            status: 1,
            signal: None,
            stdout: "out".into(),
            stderr: "  \n".into(),
            truncated: false,
        };
        assert_eq!(out.tail(2), "ut");
        assert!(!out.success());
        assert_eq!(signal_status("KILL"), 137);
    }
}
