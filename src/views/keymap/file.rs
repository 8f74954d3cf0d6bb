//! The bindings from keys to commands ([`Keymap`]): the defaults from the command table,
//! the user's keymap file read with the line of every problem, and the defaults file that
//! `legion keymap --defaults` prints. It reads one file and never writes one.

use std::collections::HashMap;
use std::io;
use std::ops::Range;
use std::path::{Path, PathBuf};

use crossterm::event::KeyEvent;
use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::command::{Command, Group, Layer};
use super::key::{KeySpec, KeySpecError};

/// Which keys run which commands. Built from the defaults, possibly changed by the user's
/// keymap file. In any one layer a key is bound to at most one command; commands whose
/// layers do not meet may share a key (Enter opens details in the table and presses the
/// focused button in the plan overlay).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Keymap {
    keys: HashMap<Command, Vec<KeySpec>>,
    index: HashMap<KeySpec, Vec<Command>>,
}

/// Whether two commands' keys work in a common layer, so one key cannot serve both.
pub(super) fn layers_meet(a: Command, b: Command) -> bool {
    let b = b.info().layers;
    a.info().layers.iter().any(|l| b.contains(l))
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

    /// Later bindings of a key already bound in a common layer are dropped; callers check
    /// for clashes first.
    fn from_bindings(bindings: impl IntoIterator<Item = (Command, Vec<KeySpec>)>) -> Keymap {
        let mut keys = HashMap::new();
        let mut index: HashMap<KeySpec, Vec<Command>> = HashMap::new();
        for (command, specs) in bindings {
            let mut kept: Vec<KeySpec> = Vec::with_capacity(specs.len());
            for spec in specs {
                let owners = index.entry(spec).or_default();
                if !owners.iter().any(|&o| layers_meet(o, command)) {
                    owners.push(command);
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
        let mut owner: HashMap<KeySpec, Vec<(Command, Option<usize>)>> = HashMap::new();
        for &command in Command::ALL {
            if !overrides.contains_key(&command) {
                for &key in command.info().default_keys {
                    owner.entry(key).or_default().push((command, None));
                }
            }
        }
        for (command, key, line) in user_bindings {
            let owners = owner.entry(key).or_default();
            if let Some(&(other, other_line)) =
                owners.iter().find(|(o, _)| layers_meet(*o, command))
            {
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
            owners.push((command, Some(line)));
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
             # optional ctrl- or alt- in front.\n",
        );
        // The safety rule's list comes from the table, wrapped as the comment lines above.
        let mutating: Vec<&str> = Command::ALL
            .iter()
            .filter(|c| c.info().mutating)
            .map(|c| c.name())
            .collect();
        let rule = format!(
            "Commands that change nodes or the plan ({}) cannot use ctrl- or alt-.",
            mutating.join(", ")
        );
        let mut line = String::from("#");
        for word in rule.split(' ') {
            if line.len() + 1 + word.len() > 91 {
                out.push_str(&line);
                out.push('\n');
                line = String::from("#");
            }
            line.push(' ');
            line.push_str(word);
        }
        out.push_str(&line);
        out.push_str("\n\n[keys]\n");
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

    /// The command a terminal event runs in `layer`, if any. Key releases and repeats give
    /// `None`.
    pub fn resolve(&self, ev: &KeyEvent, layer: Layer) -> Option<Command> {
        let key = KeySpec::from_event(ev)?;
        self.index
            .get(&key)?
            .iter()
            .copied()
            .find(|c| c.info().applies_in(layer))
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
        for owners in self.index.values_mut() {
            owners.retain(|c| !c.info().mutating);
        }
        self
    }
}

/// 1-based line of a byte offset.
pub(super) fn line_of(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()[..end]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// A TOML basic string with the escapes TOML requires.
pub(super) fn toml_string(s: &str) -> String {
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
pub(super) fn suggest(name: &str) -> Option<Command> {
    let normalized = name.to_ascii_lowercase().replace('-', "_");
    Command::ALL
        .iter()
        .map(|&c| (edit_distance(&normalized, c.name()), c))
        .filter(|&(d, c)| d <= 2.max(c.name().len() / 4))
        .min_by_key(|&(d, _)| d)
        .map(|(_, c)| c)
}

pub(super) fn edit_distance(a: &str, b: &str) -> usize {
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
