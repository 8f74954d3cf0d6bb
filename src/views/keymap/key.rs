//! Key specs: one key with its Ctrl/Alt modifiers, read from the text the keymap file uses
//! and from the events crossterm reports, and written back in canonical form.

use std::fmt;
use std::str::FromStr;

use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

/// A key without modifiers. Space is `Char(' ')`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(super) enum Key {
    Char(char),
    Enter,
    Esc,
    Tab,
    BackTab,
    Backspace,
    Delete,
    Insert,
    Up,
    Down,
    Left,
    Right,
    PageUp,
    PageDown,
    Home,
    End,
    F(u8),
}

/// Named keys: canonical name first, then accepted aliases.
const NAMED_KEYS: &[(&str, Key)] = &[
    ("enter", Key::Enter),
    ("esc", Key::Esc),
    ("tab", Key::Tab),
    ("shift-tab", Key::BackTab),
    ("backspace", Key::Backspace),
    ("delete", Key::Delete),
    ("insert", Key::Insert),
    ("up", Key::Up),
    ("down", Key::Down),
    ("left", Key::Left),
    ("right", Key::Right),
    ("pgup", Key::PageUp),
    ("pgdn", Key::PageDown),
    ("home", Key::Home),
    ("end", Key::End),
    ("space", Key::Char(' ')),
    // Aliases; never produced by Display.
    ("return", Key::Enter),
    ("escape", Key::Esc),
    ("backtab", Key::BackTab),
    ("del", Key::Delete),
    ("pageup", Key::PageUp),
    ("pagedown", Key::PageDown),
];

/// One key with its Ctrl/Alt modifiers, e.g. `j`, `G`, `shift-tab`, `pgdn`, `ctrl-f`.
///
/// Shift is not a modifier here: it is part of the character (`G`, `?`), and `shift-tab` is
/// its own key. Parse one with [`str::parse`]; [`fmt::Display`] gives the canonical text used
/// in the footer, the help overlay and the keymap file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct KeySpec {
    key: Key,
    ctrl: bool,
    alt: bool,
}

impl KeySpec {
    pub(super) const fn plain(key: Key) -> KeySpec {
        KeySpec {
            key,
            ctrl: false,
            alt: false,
        }
    }

    pub(super) const fn ctrl_char(c: char) -> KeySpec {
        KeySpec {
            key: Key::Char(c),
            ctrl: true,
            alt: false,
        }
    }

    /// True when Ctrl or Alt is part of the key.
    pub fn has_modifier(&self) -> bool {
        self.ctrl || self.alt
    }

    pub fn ctrl(&self) -> bool {
        self.ctrl
    }

    pub fn alt(&self) -> bool {
        self.alt
    }

    /// The key a terminal event stands for, smoothing over crossterm's quirks: only key
    /// presses count (not release or repeat); an uppercase letter may come with or without
    /// SHIFT (and a lowercase one with SHIFT means the uppercase letter); a shifted symbol
    /// such as `?` may carry SHIFT; Shift-Tab comes as `BackTab` with SHIFT. Keys this
    /// module cannot bind (Super, media keys, shifted arrows) give `None`.
    pub fn from_event(ev: &KeyEvent) -> Option<KeySpec> {
        if ev.kind != KeyEventKind::Press {
            return None;
        }
        let known = KeyModifiers::SHIFT | KeyModifiers::CONTROL | KeyModifiers::ALT;
        if !known.contains(ev.modifiers) {
            return None;
        }
        let shift = ev.modifiers.contains(KeyModifiers::SHIFT);
        let ctrl = ev.modifiers.contains(KeyModifiers::CONTROL);
        let key = match ev.code {
            // Terminals send Ctrl-\ ] ^ _ as 0x1c-0x1f, which crossterm reads as Ctrl-4..7.
            KeyCode::Char(c @ '4'..='7') if ctrl => Key::Char(match c {
                '4' => '\\',
                '5' => ']',
                '6' => '^',
                _ => '_',
            }),
            KeyCode::Char(c) => {
                if c.is_control() {
                    return None;
                }
                if shift && c.is_lowercase() {
                    single_uppercase(c)?
                } else {
                    Key::Char(c)
                }
            }
            KeyCode::BackTab => Key::BackTab,
            KeyCode::Tab if shift => Key::BackTab,
            // Shifted non-character keys (shift-up, shift-end) are distinct keys we do not bind.
            _ if shift => return None,
            KeyCode::Enter => Key::Enter,
            KeyCode::Esc => Key::Esc,
            KeyCode::Tab => Key::Tab,
            KeyCode::Backspace => Key::Backspace,
            KeyCode::Delete => Key::Delete,
            KeyCode::Insert => Key::Insert,
            KeyCode::Up => Key::Up,
            KeyCode::Down => Key::Down,
            KeyCode::Left => Key::Left,
            KeyCode::Right => Key::Right,
            KeyCode::PageUp => Key::PageUp,
            KeyCode::PageDown => Key::PageDown,
            KeyCode::Home => Key::Home,
            KeyCode::End => Key::End,
            KeyCode::F(n) if (1..=12).contains(&n) => Key::F(n),
            _ => return None,
        };
        Some(KeySpec {
            key,
            ctrl: ev.modifiers.contains(KeyModifiers::CONTROL),
            alt: ev.modifiers.contains(KeyModifiers::ALT),
        })
    }

    /// Whether a terminal event is a press of this key (see [`KeySpec::from_event`]).
    pub fn matches(&self, ev: &KeyEvent) -> bool {
        KeySpec::from_event(ev) == Some(*self)
    }
}

fn single_uppercase(c: char) -> Option<Key> {
    let mut upper = c.to_uppercase();
    match (upper.next(), upper.next()) {
        (Some(u), None) => Some(Key::Char(u)),
        _ => None,
    }
}

impl fmt::Display for KeySpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.ctrl {
            f.write_str("ctrl-")?;
        }
        if self.alt {
            f.write_str("alt-")?;
        }
        match self.key {
            Key::Char(c) => {
                if let Some((name, _)) = NAMED_KEYS.iter().find(|(_, k)| *k == self.key) {
                    f.write_str(name)
                } else {
                    write!(f, "{c}")
                }
            }
            Key::F(n) => write!(f, "f{n}"),
            other => {
                let name = NAMED_KEYS
                    .iter()
                    .find(|(_, k)| *k == other)
                    .map_or("?", |(name, _)| name);
                f.write_str(name)
            }
        }
    }
}

/// Why a key spec could not be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum KeySpecError {
    #[error("empty key spec (write a key such as \"j\", \"enter\" or \"ctrl-f\")")]
    Empty,
    #[error(
        "unknown key \"{0}\" (use one character such as \"j\" or \"G\", or one of: enter, esc, \
         tab, shift-tab, up, down, left, right, pgup, pgdn, home, end, space, backspace, delete, \
         insert, f1..f12; with ctrl- or alt- in front if needed)"
    )]
    Unknown(String),
    #[error(
        "\"{0}\": shift- only goes with tab; for a shifted letter or symbol write the character \
         itself (\"G\", \"?\")"
    )]
    Shift(String),
    #[error(
        "\"{0}\": most terminals cannot tell ctrl with an uppercase letter from ctrl with the \
         lowercase one; write the lowercase letter"
    )]
    CtrlUppercase(String),
    #[error("\"{0}\": a modifier cannot be repeated")]
    RepeatedModifier(String),
}

impl FromStr for KeySpec {
    type Err = KeySpecError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() {
            return Err(KeySpecError::Empty);
        }
        let unknown = || KeySpecError::Unknown(s.to_string());
        let mut rest = s;
        let (mut ctrl, mut alt) = (false, false);
        // A single character is always the key itself, so "-" and "ctrl--" both work.
        while rest.chars().nth(1).is_some() {
            let lower = rest.to_ascii_lowercase();
            let flag = if lower.starts_with("ctrl-") {
                &mut ctrl
            } else if lower.starts_with("alt-") {
                &mut alt
            } else {
                break;
            };
            if *flag {
                return Err(KeySpecError::RepeatedModifier(s.to_string()));
            }
            *flag = true;
            rest = rest
                .get(lower.find('-').map_or(0, |i| i + 1)..)
                .unwrap_or("");
        }
        let mut chars = rest.chars();
        let key = match (chars.next(), chars.next()) {
            (None, _) => return Err(unknown()),
            (Some(c), None) => {
                if c.is_control() || c.is_whitespace() {
                    return Err(unknown());
                }
                Key::Char(c)
            }
            _ => {
                let lower = rest.to_ascii_lowercase();
                if let Some((_, key)) = NAMED_KEYS.iter().find(|(name, _)| *name == lower) {
                    *key
                } else if let Some(n) = lower
                    .strip_prefix('f')
                    .filter(|d| d.chars().all(|c| c.is_ascii_digit()))
                    .and_then(|d| d.parse::<u8>().ok())
                    .filter(|n| (1..=12).contains(n))
                {
                    Key::F(n)
                } else if lower.starts_with("shift-") {
                    return Err(KeySpecError::Shift(s.to_string()));
                } else {
                    return Err(unknown());
                }
            }
        };
        if ctrl && matches!(key, Key::Char(c) if c.is_uppercase()) {
            return Err(KeySpecError::CtrlUppercase(s.to_string()));
        }
        Ok(KeySpec { key, ctrl, alt })
    }
}
