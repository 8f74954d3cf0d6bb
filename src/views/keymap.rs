//! The dashboard's command table and keymap.
//!
//! This module owns the list of commands the dashboard offers ([`Command`]), their metadata
//! ([`CommandInfo`]: name, footer label, help text, group, whether they change anything) and
//! the bindings from keys to commands ([`Keymap`]), including the user's keymap file. One
//! table drives key dispatch, the footer, the help overlay and `legion keymap --defaults`.
//!
//! It is plain data and pure functions: it never touches the terminal and never performs a
//! command. Whether a command is available for the current selection, and the confirmation
//! that destructive commands need, belong to the views and the app.
//!
//! Safety rule: no mutating command (start, stop, reboot, retry, reinstall, apply, add, edit,
//! remove) may be bound to a Ctrl or Alt combination, because tmux and vim users press those
//! out of habit. The defaults follow the rule and a user file that breaks it is rejected.

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use serde::{Deserialize, Serialize};
use toml::Spanned;
use toml::de::{DeTable, DeValue};

/// The usual name of the keymap file inside the Legion home.
pub const FILE_NAME: &str = "keymap.toml";

/// Everything the dashboard can be asked to do from the keyboard.
///
/// The serde names (snake_case) are the names used in the keymap file and by [`CommandInfo::name`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Command {
    MoveUp,
    MoveDown,
    Top,
    Bottom,
    PageUp,
    PageDown,
    Details,
    Back,
    NextView,
    PrevView,
    ViewNodes,
    ViewZones,
    ViewFirewalls,
    ViewDomains,
    Refresh,
    Start,
    Stop,
    Reboot,
    Retry,
    Reinstall,
    Apply,
    Add,
    Edit,
    Remove,
    ToggleLog,
    LogGrow,
    LogShrink,
    LogFollow,
    LogNodeOnly,
    LogTail,
    Shell,
    NextPane,
    LeavePane,
    ZoomPane,
    Filter,
    CommandLine,
    Help,
    Quit,
}

/// Where a command is listed in the help overlay.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Group {
    Navigate,
    Views,
    Node,
    Plan,
    Log,
    Shell,
    General,
}

impl Group {
    /// Every group, in display order.
    pub const ALL: &'static [Group] = &[
        Group::Navigate,
        Group::Views,
        Group::Node,
        Group::Plan,
        Group::Log,
        Group::Shell,
        Group::General,
    ];

    /// The heading used in the help overlay and in the defaults file.
    pub fn title(self) -> &'static str {
        match self {
            Group::Navigate => "Navigate",
            Group::Views => "Views",
            Group::Node => "Node",
            Group::Plan => "Plan",
            Group::Log => "Log",
            Group::Shell => "Shell pane",
            Group::General => "General",
        }
    }
}

/// What the footer, the help overlay and the keymap file say about a command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CommandInfo {
    /// The snake_case id, as written in the keymap file.
    pub name: &'static str,
    /// A short label for the footer.
    pub label: &'static str,
    /// One line for the help overlay and the defaults file.
    pub description: &'static str,
    pub group: Group,
    /// Changes nodes or the plan; hidden in `--readonly` and never bound to Ctrl/Alt.
    pub mutating: bool,
    /// Needs a confirmation dialog before it is sent (the app shows it).
    pub destructive: bool,
    /// The keys bound when the user's keymap file does not mention the command.
    pub default_keys: &'static [KeySpec],
}

const fn row(
    name: &'static str,
    label: &'static str,
    description: &'static str,
    group: Group,
    default_keys: &'static [KeySpec],
) -> CommandInfo {
    CommandInfo {
        name,
        label,
        description,
        group,
        mutating: false,
        destructive: false,
        default_keys,
    }
}

const fn mutating_row(
    name: &'static str,
    label: &'static str,
    description: &'static str,
    group: Group,
    destructive: bool,
    default_keys: &'static [KeySpec],
) -> CommandInfo {
    CommandInfo {
        name,
        label,
        description,
        group,
        mutating: true,
        destructive,
        default_keys,
    }
}

impl Command {
    /// Every command, in display order (help overlay, defaults file).
    pub const ALL: &'static [Command] = &[
        Command::MoveUp,
        Command::MoveDown,
        Command::Top,
        Command::Bottom,
        Command::PageUp,
        Command::PageDown,
        Command::Details,
        Command::Back,
        Command::NextView,
        Command::PrevView,
        Command::ViewNodes,
        Command::ViewZones,
        Command::ViewFirewalls,
        Command::ViewDomains,
        Command::Refresh,
        Command::Start,
        Command::Stop,
        Command::Reboot,
        Command::Retry,
        Command::Reinstall,
        Command::Apply,
        Command::Add,
        Command::Edit,
        Command::Remove,
        Command::ToggleLog,
        Command::LogGrow,
        Command::LogShrink,
        Command::LogFollow,
        Command::LogNodeOnly,
        Command::LogTail,
        Command::Shell,
        Command::NextPane,
        Command::LeavePane,
        Command::ZoomPane,
        Command::Filter,
        Command::CommandLine,
        Command::Help,
        Command::Quit,
    ];

    /// The command table: one row per command, defaults included.
    pub const fn info(self) -> CommandInfo {
        use Group::*;
        const fn ch(c: char) -> KeySpec {
            KeySpec::plain(Key::Char(c))
        }
        const fn key(k: Key) -> KeySpec {
            KeySpec::plain(k)
        }
        const fn ctrl(c: char) -> KeySpec {
            KeySpec {
                key: Key::Char(c),
                ctrl: true,
                alt: false,
            }
        }
        match self {
            Command::MoveUp => row(
                "move_up",
                "up",
                "Move the selection up one row",
                Navigate,
                &const { [ch('k'), key(Key::Up)] },
            ),
            Command::MoveDown => row(
                "move_down",
                "down",
                "Move the selection down one row",
                Navigate,
                &const { [ch('j'), key(Key::Down)] },
            ),
            Command::Top => row(
                "top",
                "top",
                "Jump to the first row",
                Navigate,
                &const { [ch('g'), key(Key::Home)] },
            ),
            Command::Bottom => row(
                "bottom",
                "bottom",
                "Jump to the last row",
                Navigate,
                &const { [ch('G')] },
            ),
            Command::PageUp => row(
                "page_up",
                "page up",
                "Scroll up one page",
                Navigate,
                &const { [key(Key::PageUp), ctrl('b')] },
            ),
            Command::PageDown => row(
                "page_down",
                "page down",
                "Scroll down one page",
                Navigate,
                &const { [key(Key::PageDown), ctrl('f')] },
            ),
            Command::Details => row(
                "details",
                "details",
                "Open the details of the selection: plan vs observed, execution, log lines",
                Navigate,
                &const { [key(Key::Enter)] },
            ),
            Command::Back => row(
                "back",
                "back",
                "Close the overlay or dialog, or clear the filter",
                Navigate,
                &const { [key(Key::Esc)] },
            ),
            Command::NextView => row(
                "next_view",
                "next view",
                "Switch to the next view",
                Views,
                &const { [key(Key::Tab)] },
            ),
            Command::PrevView => row(
                "prev_view",
                "prev view",
                "Switch to the previous view",
                Views,
                &const { [key(Key::BackTab)] },
            ),
            Command::ViewNodes => row(
                "view_nodes",
                "nodes",
                "Show the Nodes view",
                Views,
                &const { [ch('1')] },
            ),
            Command::ViewZones => row(
                "view_zones",
                "zones",
                "Show the DNS Zones view",
                Views,
                &const { [ch('2')] },
            ),
            Command::ViewFirewalls => row(
                "view_firewalls",
                "firewalls",
                "Show the Firewalls view",
                Views,
                &const { [ch('3')] },
            ),
            Command::ViewDomains => row(
                "view_domains",
                "domains",
                "Show the Domains view",
                Views,
                &const { [ch('4')] },
            ),
            Command::Refresh => row(
                "refresh",
                "refresh",
                "Read every provider's servers and zones now",
                Views,
                &const { [ctrl('r')] },
            ),
            Command::Start => mutating_row(
                "start",
                "start",
                "Start the selected node",
                Node,
                false,
                &const { [ch('u')] },
            ),
            Command::Stop => mutating_row(
                "stop",
                "stop",
                "Stop the selected node (asks for confirmation)",
                Node,
                true,
                &const { [ch('o')] },
            ),
            Command::Reboot => mutating_row(
                "reboot",
                "reboot",
                "Reboot the selected node (asks for confirmation)",
                Node,
                true,
                &const { [ch('r')] },
            ),
            Command::Retry => mutating_row(
                "retry",
                "retry",
                "Retry the failed operation of the selected node",
                Node,
                false,
                &const { [ch('t')] },
            ),
            Command::Reinstall => mutating_row(
                "reinstall",
                "reinstall",
                "Reinstall the selected node (asks you to type its name)",
                Node,
                true,
                &const { [ch('R')] },
            ),
            Command::Apply => mutating_row(
                "apply",
                "apply",
                "Apply the plan",
                Plan,
                false,
                &const { [ch('a')] },
            ),
            Command::Add => mutating_row(
                "add",
                "add",
                "Add a node, zone, record or firewall rule to the plan",
                Plan,
                false,
                &const { [ch('n')] },
            ),
            Command::Edit => mutating_row(
                "edit",
                "edit",
                "Edit the selection in the plan",
                Plan,
                false,
                &const { [ch('e')] },
            ),
            Command::Remove => mutating_row(
                "remove",
                "remove",
                "Remove the selection from the plan (asks for confirmation)",
                Plan,
                true,
                &const { [ch('D')] },
            ),
            Command::ToggleLog => row(
                "toggle_log",
                "log",
                "Show or hide the log panel",
                Log,
                &const { [ch('l')] },
            ),
            Command::LogGrow => row(
                "log_grow",
                "log +",
                "Make the log panel taller",
                Log,
                &const { [ch('+')] },
            ),
            Command::LogShrink => row(
                "log_shrink",
                "log -",
                "Make the log panel shorter",
                Log,
                &const { [ch('-')] },
            ),
            Command::LogFollow => row(
                "log_follow",
                "follow",
                "Resume following the log",
                Log,
                &const { [ch('F'), key(Key::End)] },
            ),
            Command::LogNodeOnly => row(
                "log_node_only",
                "node log",
                "Show only the selected node's lines in the log panel (toggle)",
                Log,
                &const { [ch('L')] },
            ),
            Command::LogTail => row(
                "log_tail",
                "tail",
                "Follow the selected node's logs over SSH in the log panel (toggle)",
                Log,
                &const { [ch('T')] },
            ),
            Command::Shell => row(
                "shell",
                "shell",
                "Open an SSH shell on the selected node, or go back to its shell",
                Group::Shell,
                &const { [ch('s')] },
            ),
            Command::NextPane => row(
                "next_pane",
                "next shell",
                "Go to the next open shell",
                Group::Shell,
                &const { [ch(']')] },
            ),
            Command::LeavePane => row(
                "leave_pane",
                "dashboard",
                "Leave the shell for the dashboard (it keeps running); again goes back",
                Group::Shell,
                &const { [ctrl('\\')] },
            ),
            Command::ZoomPane => row(
                "zoom_pane",
                "zoom",
                "Shell full screen on/off (other keys all go to the remote)",
                Group::Shell,
                &const { [ctrl(']')] },
            ),
            Command::Filter => row(
                "filter",
                "filter",
                "Filter the rows by name, address or state",
                General,
                &const { [ch('/')] },
            ),
            Command::CommandLine => row(
                "command_line",
                "command",
                "Open the command line (:start, :nodes, :theme NAME, ...)",
                General,
                &const { [ch(':')] },
            ),
            Command::Help => row(
                "help",
                "help",
                "Show this help",
                General,
                &const { [ch('?')] },
            ),
            Command::Quit => row(
                "quit",
                "quit",
                "Quit the dashboard",
                General,
                &const { [ch('q'), ctrl('c')] },
            ),
        }
    }

    /// The snake_case id, as written in the keymap file.
    pub const fn name(self) -> &'static str {
        self.info().name
    }

    /// The command with this keymap-file name.
    pub fn from_name(name: &str) -> Option<Command> {
        Command::ALL.iter().copied().find(|c| c.name() == name)
    }
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A command name that is not in the table.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown command `{0}`")]
pub struct UnknownCommand(pub String);

impl FromStr for Command {
    type Err = UnknownCommand;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Command::from_name(s).ok_or_else(|| UnknownCommand(s.to_string()))
    }
}

/// A key without modifiers. Space is `Char(' ')`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Key {
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
    const fn plain(key: Key) -> KeySpec {
        KeySpec {
            key,
            ctrl: false,
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

/// Which keys run which commands. Built from the defaults, possibly changed by the user's
/// keymap file. A key is bound to at most one command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Keymap {
    keys: HashMap<Command, Vec<KeySpec>>,
    index: HashMap<KeySpec, Command>,
}

impl Default for Keymap {
    fn default() -> Self {
        Keymap::defaults()
    }
}

impl Keymap {
    /// The built-in bindings (see [`CommandInfo::default_keys`]).
    pub fn defaults() -> Keymap {
        Keymap::from_bindings(
            Command::ALL
                .iter()
                .map(|&c| (c, c.info().default_keys.to_vec())),
        )
    }

    /// Later bindings of an already bound key are dropped; callers check for clashes first.
    fn from_bindings(bindings: impl IntoIterator<Item = (Command, Vec<KeySpec>)>) -> Keymap {
        let mut keys = HashMap::new();
        let mut index = HashMap::new();
        for (command, specs) in bindings {
            let mut kept: Vec<KeySpec> = Vec::with_capacity(specs.len());
            for spec in specs {
                if let std::collections::hash_map::Entry::Vacant(slot) = index.entry(spec) {
                    slot.insert(command);
                    kept.push(spec);
                }
            }
            keys.insert(command, kept);
        }
        Keymap { keys, index }
    }

    /// Reads the user's keymap file. A missing file gives the defaults and no error; an
    /// unreadable or invalid file gives the defaults and an error naming the file (and the
    /// line, when the file could be read).
    pub fn load(path: &Path) -> (Keymap, Option<KeymapError>) {
        match std::fs::read_to_string(path) {
            Ok(text) => match Keymap::parse(&text) {
                Ok(keymap) => (keymap, None),
                Err(error) => (
                    Keymap::defaults(),
                    Some(KeymapError::Invalid {
                        path: path.to_path_buf(),
                        error,
                    }),
                ),
            },
            Err(e) if e.kind() == io::ErrorKind::NotFound => (Keymap::defaults(), None),
            Err(source) => (
                Keymap::defaults(),
                Some(KeymapError::Read {
                    path: path.to_path_buf(),
                    source,
                }),
            ),
        }
    }

    /// Reads a keymap file's text: a `[keys]` table of `command = "key"`,
    /// `command = ["key", ...]` or `command = []` (disabled). Commands not mentioned keep
    /// their defaults. The first problem, in file order, is returned.
    pub fn parse(text: &str) -> Result<Keymap, KeymapParseError> {
        let at = |span: Range<usize>, problem: KeymapProblem| KeymapParseError {
            line: line_of(text, span.start),
            problem,
        };
        let doc = DeTable::parse(text).map_err(|e| {
            at(
                e.span().unwrap_or(0..0),
                KeymapProblem::Syntax(e.message().trim().to_string()),
            )
        })?;

        let mut sections: Vec<_> = doc.get_ref().iter().collect();
        sections.sort_by_key(|(k, _)| k.span().start);
        let mut entries = Vec::new();
        for (name, value) in sections {
            if name.get_ref() != "keys" {
                return Err(at(
                    name.span(),
                    KeymapProblem::UnknownSection(name.get_ref().to_string()),
                ));
            }
            let DeValue::Table(table) = value.get_ref() else {
                return Err(at(name.span(), KeymapProblem::KeysNotATable));
            };
            entries.extend(table.iter());
        }
        entries.sort_by_key(|(k, _)| k.span().start);

        // The user's keys per command, and every user binding with its line, in file order.
        let mut overrides: HashMap<Command, Vec<KeySpec>> = HashMap::new();
        let mut user_bindings: Vec<(Command, KeySpec, usize)> = Vec::new();
        for (name, value) in entries {
            let command = Command::from_name(name.get_ref()).ok_or_else(|| {
                at(
                    name.span(),
                    KeymapProblem::UnknownCommand {
                        name: name.get_ref().to_string(),
                        suggestion: suggest(name.get_ref()),
                    },
                )
            })?;
            let specs: Vec<&Spanned<DeValue<'_>>> = match value.get_ref() {
                DeValue::String(_) => vec![value],
                DeValue::Array(items) => items.iter().collect(),
                _ => return Err(at(value.span(), KeymapProblem::NotAKey { command })),
            };
            let bound = overrides.entry(command).or_default();
            for spec in specs {
                let DeValue::String(raw) = spec.get_ref() else {
                    return Err(at(spec.span(), KeymapProblem::NotAKey { command }));
                };
                let key: KeySpec = raw
                    .parse()
                    .map_err(|error| at(spec.span(), KeymapProblem::BadKey { command, error }))?;
                if command.info().mutating && key.has_modifier() {
                    return Err(at(
                        spec.span(),
                        KeymapProblem::ModifiedMutating { command, key },
                    ));
                }
                // The same key twice for one command is harmless; keep it once.
                if !bound.contains(&key) {
                    bound.push(key);
                    user_bindings.push((command, key, line_of(text, spec.span().start)));
                }
            }
        }

        // Defaults of the commands the file leaves alone are claimed first, so a clash with
        // one of them is reported on the user's line.
        let mut owner: HashMap<KeySpec, (Command, Option<usize>)> = HashMap::new();
        for &command in Command::ALL {
            if !overrides.contains_key(&command) {
                for &key in command.info().default_keys {
                    owner.insert(key, (command, None));
                }
            }
        }
        for (command, key, line) in user_bindings {
            if let Some(&(other, other_line)) = owner.get(&key) {
                return Err(KeymapParseError {
                    line,
                    problem: KeymapProblem::Conflict {
                        key,
                        command,
                        other,
                        other_line,
                    },
                });
            }
            owner.insert(key, (command, Some(line)));
        }

        Ok(Keymap::from_bindings(Command::ALL.iter().map(|&c| {
            let keys = match overrides.remove(&c) {
                Some(bound) => bound,
                None => c.info().default_keys.to_vec(),
            };
            (c, keys)
        })))
    }

    /// The keymap file with every command, its default keys and its description: what
    /// `legion keymap --defaults` prints. It parses back to [`Keymap::defaults`].
    pub fn defaults_toml() -> String {
        let mut out = String::from(
            "# Legion keymap. Save as keymap.toml in the Legion home and keep only what you change.\n\
             # Each command takes one key (\"x\"), a list of keys ([\"x\", \"down\"]) or [] to disable it;\n\
             # commands not listed keep their default keys. A key may be bound to one command only.\n\
             # Keys: one character (\"j\", \"G\", \"?\", \"/\"), enter, esc, tab, shift-tab, up, down, left,\n\
             # right, pgup, pgdn, home, end, space, backspace, delete, insert, f1..f12, each with an\n\
             # optional ctrl- or alt- in front. Commands that change nodes or the plan (start, stop,\n\
             # reboot, retry, reinstall, apply, add, edit, remove) cannot use ctrl- or alt-.\n\
             \n\
             [keys]\n",
        );
        for &group in Group::ALL {
            out.push_str(&format!("\n# {}\n", group.title()));
            for command in Command::ALL.iter().filter(|c| c.info().group == group) {
                let info = command.info();
                let keys: Vec<String> = info
                    .default_keys
                    .iter()
                    .map(|k| toml_string(&k.to_string()))
                    .collect();
                out.push_str(&format!(
                    "{} = [{}]  # {}\n",
                    info.name,
                    keys.join(", "),
                    info.description
                ));
            }
        }
        out
    }

    /// The command bound to a terminal event, if any. Key releases and repeats give `None`.
    pub fn resolve(&self, ev: &KeyEvent) -> Option<Command> {
        KeySpec::from_event(ev).and_then(|k| self.index.get(&k).copied())
    }

    /// The keys bound to a command, in the order the defaults or the user gave them.
    pub fn keys(&self, command: Command) -> &[KeySpec] {
        self.keys.get(&command).map_or(&[], Vec::as_slice)
    }

    /// The key shown for a command in the footer; `None` when the command is unbound.
    pub fn first_key(&self, command: Command) -> Option<&KeySpec> {
        self.keys(command).first()
    }

    /// Every command with its keys, in display order (for the help overlay).
    pub fn bindings(&self) -> impl Iterator<Item = (Command, &[KeySpec])> + '_ {
        Command::ALL.iter().map(|&c| (c, self.keys(c)))
    }

    /// The keymap for `--readonly`: mutating commands lose all their keys.
    pub fn without_mutating(mut self) -> Keymap {
        for (command, keys) in self.keys.iter_mut() {
            if command.info().mutating {
                keys.clear();
            }
        }
        self.index.retain(|_, c| !c.info().mutating);
        self
    }
}

/// 1-based line of a byte offset.
fn line_of(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()[..end]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// A TOML basic string with the escapes TOML requires.
fn toml_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The closest command name to a misspelled one, if it is close enough to be a typo.
fn suggest(name: &str) -> Option<Command> {
    let normalized = name.to_ascii_lowercase().replace('-', "_");
    Command::ALL
        .iter()
        .map(|&c| (edit_distance(&normalized, c.name()), c))
        .filter(|&(d, c)| d <= 2.max(c.name().len() / 4))
        .min_by_key(|&(d, _)| d)
        .map(|(_, c)| c)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, &cb) in b.iter().enumerate() {
            let cost = usize::from(ca != cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// What is wrong at one line of a keymap file.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum KeymapProblem {
    #[error("not valid TOML: {0}")]
    Syntax(String),
    #[error("unknown section `{0}` (the file has one table, [keys])")]
    UnknownSection(String),
    #[error("`keys` must be a table: [keys] followed by lines such as stop = \"o\"")]
    KeysNotATable,
    #[error(
        "unknown command `{name}`{} (`legion keymap --defaults` lists them all)",
        suggestion.map(|c| format!("; did you mean `{c}`?")).unwrap_or_default()
    )]
    UnknownCommand {
        name: String,
        suggestion: Option<Command>,
    },
    #[error("`{command}` takes a key (\"x\"), a list of keys ([\"x\", \"y\"]) or [] to disable it")]
    NotAKey { command: Command },
    #[error("`{command}`: {error}")]
    BadKey {
        command: Command,
        error: KeySpecError,
    },
    #[error(
        "`{command}` changes nodes or the plan and cannot be bound to {key} (tmux and vim users \
         press ctrl and alt keys by habit); choose a key without ctrl- or alt-"
    )]
    ModifiedMutating { command: Command, key: KeySpec },
    #[error(
        "key {key} is bound to both `{other}` ({}) and `{command}`; rebind or disable one of them",
        other_line.map_or_else(|| "by default".to_string(), |l| format!("line {l}"))
    )]
    Conflict {
        key: KeySpec,
        command: Command,
        other: Command,
        other_line: Option<usize>,
    },
}

/// A problem in a keymap file's text, with the 1-based line it is on.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {problem}")]
pub struct KeymapParseError {
    pub line: usize,
    pub problem: KeymapProblem,
}

/// Why the user's keymap file was not used (the defaults are used instead).
#[derive(Debug, thiserror::Error)]
pub enum KeymapError {
    #[error("cannot read the keymap file {}: {source}; using the default keys", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "keymap file {}, line {}: {}; using the default keys until it is fixed",
        path.display(),
        error.line,
        error.problem
    )]
    Invalid {
        path: PathBuf,
        error: KeymapParseError,
    },
}

impl KeymapError {
    /// The file that was not used.
    pub fn path(&self) -> &Path {
        match self {
            KeymapError::Read { path, .. } | KeymapError::Invalid { path, .. } => path,
        }
    }

    /// The 1-based line of the problem, when the file could be read.
    pub fn line(&self) -> Option<usize> {
        match self {
            KeymapError::Read { .. } => None,
            KeymapError::Invalid { error, .. } => Some(error.line),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Exhaustive on purpose: a new variant does not compile until it is counted here.
    fn ordinal(c: Command) -> usize {
        use Command::*;
        match c {
            MoveUp => 0,
            MoveDown => 1,
            Top => 2,
            Bottom => 3,
            PageUp => 4,
            PageDown => 5,
            Details => 6,
            Back => 7,
            NextView => 8,
            PrevView => 9,
            ViewNodes => 10,
            ViewZones => 11,
            ViewFirewalls => 12,
            ViewDomains => 13,
            Start => 14,
            Stop => 15,
            Reboot => 16,
            Retry => 17,
            Reinstall => 18,
            Apply => 19,
            Add => 20,
            Edit => 21,
            Remove => 22,
            ToggleLog => 23,
            LogGrow => 24,
            LogShrink => 25,
            LogFollow => 26,
            LogNodeOnly => 27,
            Filter => 28,
            CommandLine => 29,
            Help => 30,
            Quit => 31,
            Shell => 32,
            NextPane => 33,
            LeavePane => 34,
            ZoomPane => 35,
            LogTail => 36,
            Refresh => 37,
        }
    }

    #[test]
    fn all_lists_every_command_once() {
        let mut seen = [false; 38];
        for &c in Command::ALL {
            assert!(!seen[ordinal(c)], "{c} listed twice");
            seen[ordinal(c)] = true;
        }
        assert!(
            seen.iter().all(|&s| s),
            "a command is missing from Command::ALL"
        );
    }

    #[test]
    fn info_names_are_the_serde_names_and_parse_back() {
        for &c in Command::ALL {
            let value = toml::Value::try_from(c).unwrap();
            assert_eq!(value.as_str(), Some(c.name()));
            let back: Command = value.try_into().unwrap();
            assert_eq!(back, c);
            assert_eq!(c.name().parse::<Command>(), Ok(c));
            assert_eq!(c.to_string(), c.name());
        }
        assert_eq!(
            "frobnicate".parse::<Command>(),
            Err(UnknownCommand("frobnicate".into()))
        );
    }

    #[test]
    fn metadata_is_filled_in_and_consistent() {
        let destructive: Vec<_> = Command::ALL
            .iter()
            .filter(|c| c.info().destructive)
            .map(|c| c.name())
            .collect();
        assert_eq!(destructive, ["stop", "reboot", "reinstall", "remove"]);
        let mutating: Vec<_> = Command::ALL
            .iter()
            .filter(|c| c.info().mutating)
            .map(|c| c.name())
            .collect();
        assert_eq!(
            mutating,
            [
                "start",
                "stop",
                "reboot",
                "retry",
                "reinstall",
                "apply",
                "add",
                "edit",
                "remove"
            ]
        );
        for &c in Command::ALL {
            let info = c.info();
            assert!(
                !info.label.is_empty() && !info.description.is_empty(),
                "{c}"
            );
            assert!(!info.default_keys.is_empty(), "{c} has no default key");
        }
        // Groups appear in display order, each as one run.
        let groups: Vec<Group> = Command::ALL.iter().map(|c| c.info().group).collect();
        let mut runs = groups.clone();
        runs.dedup();
        assert_eq!(runs, Group::ALL);
    }

    #[test]
    fn defaults_bind_no_key_twice() {
        let mut owner = HashMap::new();
        for &c in Command::ALL {
            for k in c.info().default_keys {
                if let Some(other) = owner.insert(*k, c) {
                    panic!("{k} is bound to {other} and {c}");
                }
            }
        }
        let map = Keymap::defaults();
        for &c in Command::ALL {
            assert_eq!(map.keys(c), c.info().default_keys, "{c}");
        }
    }

    #[test]
    fn key_specs_round_trip_through_display() {
        for text in [
            "j",
            "G",
            "?",
            "/",
            ":",
            "-",
            "+",
            "enter",
            "esc",
            "tab",
            "shift-tab",
            "up",
            "down",
            "left",
            "right",
            "pgup",
            "pgdn",
            "home",
            "end",
            "space",
            "f1",
            "f12",
            "ctrl-x",
            "alt-x",
            "ctrl-alt-x",
            "alt-X",
            "ctrl--",
            "ctrl-space",
            "backspace",
            "delete",
            "insert",
            "é",
        ] {
            let spec: KeySpec = text.parse().unwrap();
            assert_eq!(spec.to_string(), text);
        }
    }

    #[test]
    fn key_spec_aliases_are_canonicalised() {
        for (alias, canonical) in [
            ("Enter", "enter"),
            ("RETURN", "enter"),
            ("escape", "esc"),
            ("PageDown", "pgdn"),
            ("pageup", "pgup"),
            ("BackTab", "shift-tab"),
            ("Shift-Tab", "shift-tab"),
            ("CTRL-f", "ctrl-f"),
            ("Alt-Ctrl-f", "ctrl-alt-f"),
            ("F5", "f5"),
            ("del", "delete"),
        ] {
            let spec: KeySpec = alias.parse().unwrap();
            assert_eq!(spec.to_string(), canonical, "{alias}");
        }
    }

    #[test]
    fn bad_key_specs_say_why() {
        assert_eq!("".parse::<KeySpec>(), Err(KeySpecError::Empty));
        for bad in [
            "pgdown",
            "f13",
            "f0",
            "ctrl-",
            "ctrl-pgdownn",
            " ",
            "\t",
            "jj",
        ] {
            assert!(
                matches!(bad.parse::<KeySpec>(), Err(KeySpecError::Unknown(_))),
                "{bad:?}"
            );
        }
        assert_eq!(
            "shift-a".parse::<KeySpec>(),
            Err(KeySpecError::Shift("shift-a".into()))
        );
        assert_eq!(
            "ctrl-F".parse::<KeySpec>(),
            Err(KeySpecError::CtrlUppercase("ctrl-F".into()))
        );
        assert_eq!(
            "ctrl-ctrl-f".parse::<KeySpec>(),
            Err(KeySpecError::RepeatedModifier("ctrl-ctrl-f".into()))
        );
        let msg = "pgdown".parse::<KeySpec>().unwrap_err().to_string();
        assert!(msg.contains("\"pgdown\"") && msg.contains("pgdn"), "{msg}");
    }

    #[test]
    fn suggestions_catch_typos_only() {
        assert_eq!(suggest("reboto"), Some(Command::Reboot));
        assert_eq!(suggest("move-down"), Some(Command::MoveDown));
        assert_eq!(suggest("logfollow"), Some(Command::LogFollow));
        assert_eq!(suggest("frobnicate"), None);
    }

    #[test]
    fn lines_are_one_based() {
        let text = "a\nb\n\nc";
        assert_eq!(line_of(text, 0), 1);
        assert_eq!(line_of(text, 2), 2);
        assert_eq!(line_of(text, 5), 4);
        assert_eq!(line_of(text, 999), 4);
    }

    #[test]
    fn toml_strings_are_escaped() {
        for s in ["\"", "\\", "a", "é", "\u{7f}"] {
            let doc = format!("k = {}", toml_string(s));
            let table: toml::Table = toml::from_str(&doc).unwrap();
            assert_eq!(table["k"].as_str(), Some(s), "{doc}");
        }
    }

    #[test]
    fn keymap_accepts_quote_and_backslash_keys() {
        let map = Keymap::parse("[keys]\nhelp = ['\"', \"\\\\\"]\n").unwrap();
        let keys: Vec<String> = map
            .keys(Command::Help)
            .iter()
            .map(|k| k.to_string())
            .collect();
        assert_eq!(keys, ["\"", "\\"]);
    }
}
