//! Colour themes: semantic style keys read from `themes/*.toml`, resolved once, looked up per
//! cell while drawing.
//!
//! This module owns the theme file format (see `themes/README.md`), the built-in themes
//! (`dark`, `light`, `ansi16`, embedded in the binary), inheritance between themes, detection
//! of the terminal's colour depth and the degrading of colours to that depth.
//!
//! It must stay cheap at draw time: all parsing, palette look-ups and colour conversion happen
//! in [`Theme::load`] and [`Theme::with_depth`]; [`Theme::style`] is a hash look-up per dotted
//! prefix and never allocates, reads files or fails. It must not know about views or the
//! engine: views name the keys they draw (listed in [`SEMANTIC_KEYS`]).

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;

use ratatui::style::{Color, Modifier, Style};

mod color;
mod file;
#[cfg(test)]
mod tests;

pub(crate) use color::ANSI16;
pub use color::ColorDepth;
use file::{RawStyle, RawTheme, find, parse_file, unknown_theme, valid_name};

/// The theme used when none is chosen.
pub const DEFAULT_THEME: &str = "dark";

/// The root key: every look-up that finds nothing more specific ends here.
pub const ROOT_KEY: &str = "text";

/// Every key the dashboard draws with. A theme may define fewer (look-ups fall back by dotted
/// prefix, ending at `text`) or shorter prefixes (`node.machine` colours every machine state);
/// a key that is neither listed here nor a prefix of a listed key is probably a typo, see
/// [`Theme::unknown_keys`].
pub const SEMANTIC_KEYS: &[&str] = &[
    "text",
    "text.dim",
    "title",
    "border",
    "border.focused",
    "header",
    "header.demo",
    "footer",
    "footer.key",
    "selection",
    "tab",
    "tab.active",
    "status.ok",
    "status.warn",
    "status.error",
    "node.machine.running",
    "node.machine.stopped",
    "node.machine.provisioning",
    "node.machine.starting",
    "node.machine.stopping",
    "node.machine.rebooting",
    "node.machine.reinstalling",
    "node.machine.deleting",
    "node.machine.missing",
    "node.machine.absent",
    "node.machine.unknown",
    "node.system.ready",
    "node.system.installing",
    "node.system.degraded",
    "node.system.unreachable",
    "node.system.failed",
    "node.system.interrupted",
    "node.system.pending",
    "node.system.unknown",
    "sync.converged",
    "sync.syncing",
    "sync.waiting",
    "sync.failed",
    "sync.deleting",
    "sync.pending",
    "sync.unknown",
    "provider.ok",
    "provider.degraded",
    "provider.rate-limited",
    "log.info",
    "log.warn",
    "log.write",
    "log.transition",
    "log.action",
    "log.apply",
    "log.error",
    "dialog",
    "dialog.button",
    "dialog.button.focused",
    "input",
    "input.error",
    "help.key",
];

/// The built-in themes, in the order `Theme::names` lists them when no directory adds any.
const BUILTIN: &[(&str, &str)] = &[
    ("dark", include_str!("../../../themes/dark.toml")),
    ("light", include_str!("../../../themes/light.toml")),
    ("ansi16", include_str!("../../../themes/ansi16.toml")),
];

const COLOR_HELP: &str = "use a [palette] name, \"#rrggbb\", an ANSI name such as \"red\" or \
                          \"bright-blue\", \"reset\", or an index \"0\"..\"255\"";

#[derive(Debug, thiserror::Error)]
pub enum ThemeError {
    #[error("unknown theme `{name}` (available: {})", .available.join(", "))]
    UnknownTheme {
        name: String,
        available: Vec<String>,
    },

    #[error("cannot read the theme file {}: {error}", .path.display())]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },

    /// The file is not valid TOML, or valid TOML that is not a theme.
    #[error("bad theme file {file}, line {line}, column {column}: {message}")]
    BadFile {
        file: String,
        line: usize,
        column: usize,
        message: String,
    },

    /// A style names a colour that is neither in the palette nor a colour.
    #[error(
        "bad theme file {file}, line {line}: style `{key}` refers to `{reference}`, which is \
         neither a palette name nor a colour ({COLOR_HELP})"
    )]
    UnknownColor {
        file: String,
        line: usize,
        key: String,
        reference: String,
    },

    #[error("theme inheritance cycle: {} (remove one `inherits`)", .chain.join(" -> "))]
    InheritanceCycle { chain: Vec<String> },

    #[error("unknown colour depth `{0}` (expected truecolor, 256, 16 or none)")]
    UnknownColorDepth(String),
}

/// A loaded theme: every style key it defines, resolved to a ratatui [`Style`] and degraded to
/// one colour depth. Cloning copies one small map.
#[derive(Debug, Clone)]
pub struct Theme {
    name: String,
    depth: ColorDepth,
    /// The styles as written, before degrading; shared so `with_depth` can go either way.
    declared: Arc<HashMap<String, Style>>,
    /// `declared`, degraded to `depth`. Always holds `text`.
    styles: HashMap<String, Style>,
    root: Style,
}

impl Theme {
    /// One of the themes built into the binary: `dark`, `light`, `ansi16`.
    pub fn builtin(name: &str) -> Result<Theme, ThemeError> {
        // With no directories to search, `load` finds only the built-ins.
        Theme::load(name, &[])
    }

    /// The theme `name`: `NAME.toml` in the first of `dirs` that has one (say the Legion
    /// home's `themes/`), else the built-in of that name. The theme comes at true colour;
    /// call [`Theme::with_depth`] with the terminal's depth.
    pub fn load(name: &str, dirs: &[PathBuf]) -> Result<Theme, ThemeError> {
        if !valid_name(name) {
            return Err(unknown_theme(name, dirs));
        }
        let Some(mut current) = find(name, dirs, 0)? else {
            return Err(unknown_theme(name, dirs));
        };
        let mut chain: Vec<(String, usize)> = Vec::new();
        let mut files: Vec<RawTheme> = Vec::new();
        loop {
            let raw = parse_file(&current.label, &current.text)?;
            chain.push((current.name.clone(), current.rank));
            let inherits = raw.inherits.clone();
            files.push(raw);
            let Some(parent) = inherits else { break };
            // A file inheriting its own name extends the next theme of that name down the
            // search order (a user's `dark.toml` with `inherits = "dark"` extends the
            // built-in). A built-in only ever inherits built-ins, so a user's files cannot
            // change what `light` means.
            let start = if parent.value == current.name {
                current.rank + 1
            } else if current.rank >= dirs.len() {
                dirs.len()
            } else {
                0
            };
            let found = if valid_name(&parent.value) {
                find(&parent.value, dirs, start)?
            } else {
                None
            };
            let Some(next) = found else {
                return Err(ThemeError::BadFile {
                    file: current.label.clone(),
                    line: parent.line,
                    column: parent.column,
                    message: if parent.value == current.name {
                        format!(
                            "`inherits = \"{}\"` names this theme itself, and no later theme \
                             folder or built-in has that name to extend",
                            parent.value
                        )
                    } else {
                        format!(
                            "`inherits = \"{}\"`, but there is no such theme (available: {})",
                            parent.value,
                            Theme::names(dirs).join(", ")
                        )
                    },
                });
            };
            if chain.contains(&(next.name.clone(), next.rank)) {
                let mut names: Vec<String> = chain.into_iter().map(|(n, _)| n).collect();
                names.push(next.name);
                return Err(ThemeError::InheritanceCycle { chain: names });
            }
            current = next;
        }

        // Parents first, so every child entry replaces its parent's. Palette names resolve
        // against the merged palette: a child that only changes `[palette]` recolours every
        // style its parent wrote with those names.
        let mut palette: HashMap<String, Color> = HashMap::new();
        let mut raw_styles: BTreeMap<String, RawStyle> = BTreeMap::new();
        for file in files.into_iter().rev() {
            palette.extend(file.palette);
            raw_styles.extend(file.styles);
        }
        let mut declared = HashMap::with_capacity(raw_styles.len() + 1);
        for (key, raw) in raw_styles {
            let style = raw.resolve(&key, &palette)?;
            declared.insert(key, style);
        }
        declared
            .entry(ROOT_KEY.to_string())
            .or_insert_with(Style::default);
        Ok(Theme::from_declared(name, declared).with_depth(ColorDepth::TrueColor))
    }

    /// Every theme name `load` accepts: the built-ins and each `NAME.toml` in `dirs`, sorted.
    pub fn names(dirs: &[PathBuf]) -> Vec<String> {
        let mut names: Vec<String> = BUILTIN.iter().map(|(n, _)| n.to_string()).collect();
        for dir in dirs {
            let Ok(entries) = std::fs::read_dir(dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let path = entry.path();
                if path.extension().is_some_and(|e| e == "toml")
                    && let Some(stem) = path.file_stem().and_then(|s| s.to_str())
                    && valid_name(stem)
                {
                    names.push(stem.to_string());
                }
            }
        }
        names.sort();
        names.dedup();
        names
    }

    /// The same theme with its colours degraded to `depth` (from the colours as written, so
    /// going back to a richer depth loses nothing).
    pub fn with_depth(self, depth: ColorDepth) -> Theme {
        let styles: HashMap<String, Style> = self
            .declared
            .iter()
            .map(|(key, style)| (key.clone(), depth.adapt_style(*style)))
            .collect();
        let root = styles.get(ROOT_KEY).copied().unwrap_or_default();
        Theme {
            styles,
            root,
            depth,
            ..self
        }
    }

    /// The style for `key`, falling back by dotted prefix: `node.machine.running`, then
    /// `node.machine`, then `node`, then `text`. Cheap enough to call per cell.
    pub fn style(&self, key: &str) -> Style {
        let mut key = key;
        loop {
            if let Some(style) = self.styles.get(key) {
                return *style;
            }
            match key.rfind('.') {
                Some(dot) => key = &key[..dot],
                None => return self.root,
            }
        }
    }

    /// Which key [`Theme::style`] takes `key`'s style from: `key` itself, one of its dotted
    /// prefixes, or `text`.
    pub fn resolved_key<'k>(&self, key: &'k str) -> &'k str {
        let mut key = key;
        loop {
            if self.styles.contains_key(key) {
                return key;
            }
            match key.rfind('.') {
                Some(dot) => key = &key[..dot],
                None => return ROOT_KEY,
            }
        }
    }

    /// The keys this theme defines (its own and inherited), sorted.
    pub fn defined_keys(&self) -> Vec<&str> {
        let mut keys: Vec<&str> = self.styles.keys().map(String::as_str).collect();
        keys.sort_unstable();
        keys
    }

    /// Defined keys that no view uses: neither in [`SEMANTIC_KEYS`] nor a dotted prefix of
    /// one. Almost always a typo (`node.machine.runing`), which would otherwise fall back
    /// silently; the dashboard can warn about them.
    pub fn unknown_keys(&self) -> Vec<&str> {
        self.defined_keys()
            .into_iter()
            .filter(|key| {
                !SEMANTIC_KEYS.iter().any(|known| {
                    known == key
                        || (known.starts_with(key)
                            && known.as_bytes().get(key.len()) == Some(&b'.'))
                })
            })
            .collect()
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn depth(&self) -> ColorDepth {
        self.depth
    }

    fn from_declared(name: &str, declared: HashMap<String, Style>) -> Theme {
        let root = declared.get(ROOT_KEY).copied().unwrap_or_default();
        Theme {
            name: name.to_string(),
            depth: ColorDepth::TrueColor,
            styles: declared.clone(),
            declared: Arc::new(declared),
            root,
        }
    }
}

impl Default for Theme {
    /// The built-in `dark` theme at true colour. Should it ever fail to load (a test guards
    /// against that), a colourless theme whose selection is still reversed.
    fn default() -> Theme {
        Theme::builtin(DEFAULT_THEME).unwrap_or_else(|_| {
            let mut declared = HashMap::new();
            declared.insert(ROOT_KEY.to_string(), Style::default());
            declared.insert(
                "selection".to_string(),
                Style::default().add_modifier(Modifier::REVERSED),
            );
            Theme::from_declared(DEFAULT_THEME, declared)
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Finding and parsing files
