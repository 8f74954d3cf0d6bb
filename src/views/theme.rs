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
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;

use ratatui::style::{Color, Modifier, Style};
use toml::Spanned;
use toml::de::{DeTable, DeValue};

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
    ("dark", include_str!("../../themes/dark.toml")),
    ("light", include_str!("../../themes/light.toml")),
    ("ansi16", include_str!("../../themes/ansi16.toml")),
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

/// How many colours the terminal can show. Themes are written in true colour (or ANSI names)
/// and degraded to this with [`Theme::with_depth`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ColorDepth {
    /// 24-bit `#rrggbb` colours.
    TrueColor,
    /// The xterm 256-colour palette.
    Ansi256,
    /// The 16 ANSI colours, whatever the terminal's palette makes of them.
    Ansi16,
    /// No colours at all; modifiers (bold, reversed, ...) still apply.
    None,
}

impl ColorDepth {
    /// Detect the depth from the environment, `env` being a variable look-up (inject
    /// `|k| std::env::var(k).ok()`; tests pass a table).
    ///
    /// In order: `NO_COLOR` non-empty gives `None`; `TERM=dumb` gives `None`; `COLORTERM`
    /// `truecolor`/`24bit` gives `TrueColor`; a `TERM` containing `256color` (xterm-256color,
    /// screen-256color, tmux-256color) gives `Ansi256`; anything else gives `Ansi16`.
    pub fn detect(env: impl Fn(&str) -> Option<String>) -> ColorDepth {
        let var = |name: &str| env(name).filter(|v| !v.is_empty());
        // https://no-color.org: present and non-empty disables colour, whatever its value.
        if var("NO_COLOR").is_some() {
            return ColorDepth::None;
        }
        let term = var("TERM").map(|t| t.to_ascii_lowercase());
        // `dumb` is a terminal declaring it has no capabilities (Emacs shells, some CI
        // runners); it outranks a COLORTERM inherited from elsewhere.
        if term.as_deref() == Some("dumb") {
            return ColorDepth::None;
        }
        // GNU screen (STY set, and not a tmux inside it) before 5.0 cannot pass 24-bit colour
        // through, and COLORTERM there was inherited from the outer terminal. tmux, by
        // contrast, converts RGB itself when its outer terminal lacks it, so trusting
        // COLORTERM inside tmux degrades gracefully.
        let gnu_screen = var("STY").is_some() && var("TMUX").is_none();
        if !gnu_screen {
            let colorterm = var("COLORTERM").map(|c| c.to_ascii_lowercase());
            if matches!(colorterm.as_deref(), Some("truecolor" | "24bit")) {
                return ColorDepth::TrueColor;
            }
            if term.as_deref().is_some_and(|t| t.ends_with("-direct")) {
                return ColorDepth::TrueColor;
            }
        }
        match term {
            Some(t) if t.contains("256color") => ColorDepth::Ansi256,
            // An unset TERM is not a colourless terminal: it is a stripped environment
            // (`ssh host cmd` without `-t`, `env -i`, some sudo set-ups). crossterm writes ANSI
            // sequences without consulting terminfo, so if the dashboard draws at all, the
            // terminal understands SGR, and the 16 basic colours are the safest subset of it.
            // `TERM=dumb` and NO_COLOR remain the ways to say "no colour".
            _ => ColorDepth::Ansi16,
        }
    }

    /// [`ColorDepth::detect`] over the process environment.
    pub fn from_env() -> ColorDepth {
        ColorDepth::detect(|name| std::env::var(name).ok())
    }

    /// `color` as this depth can show it: unchanged, converted to the nearest colour this
    /// depth has, or `None` (leave the terminal's colour) for [`ColorDepth::None`].
    pub fn adapt(self, color: Color) -> Option<Color> {
        match (self, color) {
            (ColorDepth::None, _) => None,
            (_, Color::Reset) | (ColorDepth::TrueColor, _) => Some(color),
            (ColorDepth::Ansi256, Color::Rgb(r, g, b)) => Some(Color::Indexed(rgb_to_256(r, g, b))),
            (ColorDepth::Ansi256, _) => Some(color),
            (ColorDepth::Ansi16, Color::Indexed(i)) if i < 16 => Some(ANSI16[usize::from(i)]),
            (ColorDepth::Ansi16, Color::Indexed(i)) => {
                let (r, g, b) = index_to_rgb(i);
                Some(rgb_to_16(r, g, b))
            }
            (ColorDepth::Ansi16, Color::Rgb(r, g, b)) => Some(rgb_to_16(r, g, b)),
            (ColorDepth::Ansi16, _) => Some(color),
        }
    }

    fn adapt_style(self, style: Style) -> Style {
        let mut out = style;
        out.fg = style.fg.and_then(|c| self.adapt(c));
        out.bg = style.bg.and_then(|c| self.adapt(c));
        out.underline_color = style.underline_color.and_then(|c| self.adapt(c));
        out
    }
}

impl fmt::Display for ColorDepth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ColorDepth::TrueColor => "truecolor",
            ColorDepth::Ansi256 => "256",
            ColorDepth::Ansi16 => "16",
            ColorDepth::None => "none",
        })
    }
}

/// Parses the `--colors` override: `truecolor` (or `24bit`), `256`, `16`, `none`.
impl FromStr for ColorDepth {
    type Err = ThemeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "truecolor" | "24bit" => Ok(ColorDepth::TrueColor),
            "256" => Ok(ColorDepth::Ansi256),
            "16" => Ok(ColorDepth::Ansi16),
            "none" => Ok(ColorDepth::None),
            _ => Err(ThemeError::UnknownColorDepth(s.to_string())),
        }
    }
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

/// Theme names double as file names: keep `:theme ../x` from reaching outside the folder.
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

fn unknown_theme(name: &str, dirs: &[PathBuf]) -> ThemeError {
    ThemeError::UnknownTheme {
        name: name.to_string(),
        available: Theme::names(dirs),
    }
}

struct Found {
    name: String,
    /// Position in the search order: `dirs[rank]`, or `dirs.len()` for the built-ins.
    rank: usize,
    label: String,
    text: String,
}

/// The first `NAME.toml` at or after search position `start`.
fn find(name: &str, dirs: &[PathBuf], start: usize) -> Result<Option<Found>, ThemeError> {
    for (rank, dir) in dirs.iter().enumerate().skip(start) {
        let path = dir.join(format!("{name}.toml"));
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                return Ok(Some(Found {
                    name: name.to_string(),
                    rank,
                    label: path.display().to_string(),
                    text,
                }));
            }
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => continue,
            Err(error) => return Err(ThemeError::Io { path, error }),
        }
    }
    if start > dirs.len() {
        return Ok(None);
    }
    Ok(BUILTIN
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(n, text)| Found {
            name: n.to_string(),
            rank: dirs.len(),
            label: format!("themes/{n}.toml (built in)"),
            text: text.to_string(),
        }))
}

/// A value with the place it was written, for error messages raised after merging.
#[derive(Debug, Clone)]
struct Located<T> {
    value: T,
    file: Arc<str>,
    line: usize,
    column: usize,
}

#[derive(Debug, Clone)]
struct RawStyle {
    fg: Option<Located<String>>,
    bg: Option<Located<String>>,
    modifiers: Modifier,
}

impl RawStyle {
    fn resolve(&self, key: &str, palette: &HashMap<String, Color>) -> Result<Style, ThemeError> {
        let color = |reference: &Located<String>| {
            palette
                .get(&reference.value)
                .copied()
                .or_else(|| parse_color(&reference.value))
                .ok_or_else(|| ThemeError::UnknownColor {
                    file: reference.file.to_string(),
                    line: reference.line,
                    key: key.to_string(),
                    reference: reference.value.clone(),
                })
        };
        let mut style = Style::default().add_modifier(self.modifiers);
        if let Some(fg) = &self.fg {
            style = style.fg(color(fg)?);
        }
        if let Some(bg) = &self.bg {
            style = style.bg(color(bg)?);
        }
        Ok(style)
    }
}

struct RawTheme {
    inherits: Option<Located<String>>,
    palette: HashMap<String, Color>,
    styles: BTreeMap<String, RawStyle>,
}

/// Reads a theme file with spans kept, so every complaint can name its line.
struct FileParser<'a> {
    label: Arc<str>,
    text: &'a str,
}

impl FileParser<'_> {
    fn position(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let before = &self.text.as_bytes()[..offset];
        let line = before.iter().filter(|b| **b == b'\n').count() + 1;
        let line_start = before
            .iter()
            .rposition(|b| *b == b'\n')
            .map_or(0, |i| i + 1);
        let column = self
            .text
            .get(line_start..offset)
            .map_or(offset - line_start, |s| s.chars().count())
            + 1;
        (line, column)
    }

    fn error(&self, span: std::ops::Range<usize>, message: impl Into<String>) -> ThemeError {
        let (line, column) = self.position(span.start);
        ThemeError::BadFile {
            file: self.label.to_string(),
            line,
            column,
            message: message.into(),
        }
    }

    fn located(&self, span: std::ops::Range<usize>, value: &str) -> Located<String> {
        let (line, column) = self.position(span.start);
        Located {
            value: value.to_string(),
            file: self.label.clone(),
            line,
            column,
        }
    }

    fn string<'v>(
        &self,
        value: &'v Spanned<DeValue<'_>>,
        what: &str,
    ) -> Result<&'v str, ThemeError> {
        value.get_ref().as_str().ok_or_else(|| {
            self.error(
                value.span(),
                format!(
                    "{what} must be a string, not {}",
                    value.get_ref().type_str()
                ),
            )
        })
    }

    fn table<'v, 'i>(
        &self,
        value: &'v Spanned<DeValue<'i>>,
        what: &str,
    ) -> Result<&'v DeTable<'i>, ThemeError> {
        value.get_ref().as_table().ok_or_else(|| {
            self.error(
                value.span(),
                format!("{what} must be a table, not {}", value.get_ref().type_str()),
            )
        })
    }

    fn file(&self) -> Result<RawTheme, ThemeError> {
        let document = DeTable::parse(self.text).map_err(|e| {
            let message = e.message().trim().replace('\n', "; ");
            self.error(e.span().unwrap_or(0..0), message)
        })?;
        let mut raw = RawTheme {
            inherits: None,
            palette: HashMap::new(),
            styles: BTreeMap::new(),
        };
        for (key, value) in document.get_ref().iter() {
            match key.get_ref().as_ref() {
                "inherits" => {
                    let parent = self.string(value, "`inherits`")?;
                    raw.inherits = Some(self.located(value.span(), parent));
                }
                "palette" => {
                    for (name, colour) in self.table(value, "[palette]")?.iter() {
                        let name = name.get_ref().as_ref();
                        let text = self.string(colour, &format!("palette entry `{name}`"))?;
                        let Some(parsed) = parse_color(text) else {
                            return Err(self.error(
                                colour.span(),
                                format!(
                                    "palette entry `{name}` = \"{text}\" is not a colour \
                                     (use \"#rrggbb\", an ANSI name such as \"red\" or \
                                     \"bright-blue\", \"reset\", or an index \"0\"..\"255\")"
                                ),
                            ));
                        };
                        raw.palette.insert(name.to_string(), parsed);
                    }
                }
                "styles" => {
                    let styles = self.table(value, "[styles]")?;
                    self.styles("", styles, &mut raw.styles)?;
                }
                other => {
                    return Err(self.error(
                        key.span(),
                        format!(
                            "unknown top-level key `{other}` (a theme has `inherits`, \
                             [palette] and [styles])"
                        ),
                    ));
                }
            }
        }
        Ok(raw)
    }

    /// Walks `[styles]`. Quoted keys (`"node.machine" = ...`) and TOML's own nesting
    /// (`node.machine = ...`, `[styles.node]`) mean the same; inside a table, `fg`, `bg` and
    /// `modifiers` style that table's key and every other entry is a longer key.
    fn styles(
        &self,
        prefix: &str,
        table: &DeTable<'_>,
        out: &mut BTreeMap<String, RawStyle>,
    ) -> Result<(), ThemeError> {
        for (name, value) in table.iter() {
            self.style_entry(prefix, name, value, out)?;
        }
        Ok(())
    }

    fn style_entry(
        &self,
        prefix: &str,
        name: &Spanned<std::borrow::Cow<'_, str>>,
        value: &Spanned<DeValue<'_>>,
        out: &mut BTreeMap<String, RawStyle>,
    ) -> Result<(), ThemeError> {
        let name_str = name.get_ref().as_ref();
        let key = if prefix.is_empty() {
            name_str.to_string()
        } else {
            format!("{prefix}.{name_str}")
        };
        if key.split('.').any(|part| part.trim().is_empty()) {
            return Err(self.error(name.span(), format!("style key `{key}` has an empty part")));
        }
        match value.get_ref() {
            DeValue::String(fg) => {
                let style = RawStyle {
                    fg: Some(self.located(value.span(), fg)),
                    bg: None,
                    modifiers: Modifier::empty(),
                };
                self.insert(out, key, style, value.span())
            }
            DeValue::Table(inner) => {
                let mut style = RawStyle {
                    fg: None,
                    bg: None,
                    modifiers: Modifier::empty(),
                };
                // `{}` is an explicit empty style: it stops the fallback to a shorter key.
                let mut has_style = inner.is_empty();
                for (attr, attr_value) in inner.iter() {
                    match attr.get_ref().as_ref() {
                        "fg" => {
                            let text = self.string(attr_value, &format!("`{key}.fg`"))?;
                            style.fg = Some(self.located(attr_value.span(), text));
                            has_style = true;
                        }
                        "bg" => {
                            let text = self.string(attr_value, &format!("`{key}.bg`"))?;
                            style.bg = Some(self.located(attr_value.span(), text));
                            has_style = true;
                        }
                        "modifiers" => {
                            style.modifiers = self.modifiers(&key, attr_value)?;
                            has_style = true;
                        }
                        _ => self.style_entry(&key, attr, attr_value, out)?,
                    }
                }
                if has_style {
                    self.insert(out, key, style, value.span())?;
                }
                Ok(())
            }
            other => Err(self.error(
                value.span(),
                format!(
                    "style `{key}` must be a colour string or a table \
                     {{ fg, bg, modifiers }}, not {}",
                    other.type_str()
                ),
            )),
        }
    }

    fn insert(
        &self,
        out: &mut BTreeMap<String, RawStyle>,
        key: String,
        style: RawStyle,
        span: std::ops::Range<usize>,
    ) -> Result<(), ThemeError> {
        if out.contains_key(&key) {
            return Err(self.error(span, format!("style `{key}` is defined twice")));
        }
        out.insert(key, style);
        Ok(())
    }

    fn modifiers(&self, key: &str, value: &Spanned<DeValue<'_>>) -> Result<Modifier, ThemeError> {
        let Some(items) = value.get_ref().as_array() else {
            return Err(self.error(
                value.span(),
                format!(
                    "`{key}.modifiers` must be a list such as [\"bold\"], not {}",
                    value.get_ref().type_str()
                ),
            ));
        };
        let mut modifiers = Modifier::empty();
        for item in items {
            let name = self.string(item, &format!("a modifier of `{key}`"))?;
            modifiers |= match name {
                "bold" => Modifier::BOLD,
                "dim" => Modifier::DIM,
                "italic" => Modifier::ITALIC,
                "underlined" => Modifier::UNDERLINED,
                "reversed" => Modifier::REVERSED,
                "crossed-out" => Modifier::CROSSED_OUT,
                other => {
                    return Err(self.error(
                        item.span(),
                        format!(
                            "unknown modifier `{other}` in `{key}` (expected bold, dim, italic, \
                             underlined, reversed or crossed-out)"
                        ),
                    ));
                }
            };
        }
        Ok(modifiers)
    }
}

fn parse_file(label: &str, text: &str) -> Result<RawTheme, ThemeError> {
    FileParser {
        label: Arc::from(label),
        text,
    }
    .file()
}

// ---------------------------------------------------------------------------------------------
// Colours

/// The 16 ANSI colours in index order, as ratatui names them (ratatui's `Gray` is ANSI
/// white, its `DarkGray` bright black and its `White` bright white).
pub(crate) const ANSI16: [Color; 16] = [
    Color::Black,
    Color::Red,
    Color::Green,
    Color::Yellow,
    Color::Blue,
    Color::Magenta,
    Color::Cyan,
    Color::Gray,
    Color::DarkGray,
    Color::LightRed,
    Color::LightGreen,
    Color::LightYellow,
    Color::LightBlue,
    Color::LightMagenta,
    Color::LightCyan,
    Color::White,
];

/// xterm's default RGB for the 16 ANSI colours, used to place indexed colours.
const ANSI16_RGB: [(u8, u8, u8); 16] = [
    (0, 0, 0),
    (205, 0, 0),
    (0, 205, 0),
    (205, 205, 0),
    (0, 0, 238),
    (205, 0, 205),
    (0, 205, 205),
    (229, 229, 229),
    (127, 127, 127),
    (255, 0, 0),
    (0, 255, 0),
    (255, 255, 0),
    (92, 92, 255),
    (255, 0, 255),
    (0, 255, 255),
    (255, 255, 255),
];

/// A colour literal: `#rrggbb`, an ANSI name, `reset`, or an index `0`..`255`.
fn parse_color(text: &str) -> Option<Color> {
    if let Some(hex) = text.strip_prefix('#') {
        if hex.len() != 6 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let channel = |i: usize| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok();
        return Some(Color::Rgb(channel(0)?, channel(2)?, channel(4)?));
    }
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return text.parse::<u8>().ok().map(Color::Indexed);
    }
    let index = match text {
        "reset" => return Some(Color::Reset),
        "black" => 0,
        "red" => 1,
        "green" => 2,
        "yellow" => 3,
        "blue" => 4,
        "magenta" => 5,
        "cyan" => 6,
        "white" | "gray" | "grey" => 7,
        "bright-black" | "dark-gray" | "dark-grey" => 8,
        "bright-red" => 9,
        "bright-green" => 10,
        "bright-yellow" => 11,
        "bright-blue" => 12,
        "bright-magenta" => 13,
        "bright-cyan" => 14,
        "bright-white" => 15,
        _ => return None,
    };
    Some(ANSI16[index])
}

/// The channel values of the xterm 6x6x6 colour cube.
const CUBE: [u8; 6] = [0, 95, 135, 175, 215, 255];

fn index_to_rgb(index: u8) -> (u8, u8, u8) {
    match index {
        0..=15 => ANSI16_RGB[usize::from(index)],
        16..=231 => {
            let i = index - 16;
            (
                CUBE[usize::from(i / 36)],
                CUBE[usize::from(i / 6 % 6)],
                CUBE[usize::from(i % 6)],
            )
        }
        _ => {
            let level = 8 + 10 * (index - 232);
            (level, level, level)
        }
    }
}

fn distance(a: (u8, u8, u8), b: (u8, u8, u8)) -> u32 {
    let d = |x: u8, y: u8| (i32::from(x) - i32::from(y)).unsigned_abs().pow(2);
    d(a.0, b.0) + d(a.1, b.1) + d(a.2, b.2)
}

/// The nearest xterm-256 colour: the closer of the nearest cube colour and the nearest step
/// of the grey ramp (232..255). Indices 0..15 are skipped: terminals redefine them.
fn rgb_to_256(r: u8, g: u8, b: u8) -> u8 {
    // Cube levels are 0, 95, then steps of 40; the thresholds are their midpoints.
    let level = |v: u8| -> u8 {
        match v {
            0..48 => 0,
            48..115 => 1,
            _ => (v - 35) / 40,
        }
    };
    let (qr, qg, qb) = (level(r), level(g), level(b));
    let cube = 16 + 36 * qr + 6 * qg + qb;
    let cube_rgb = index_to_rgb(cube);
    let average = ((u16::from(r) + u16::from(g) + u16::from(b)) / 3) as u8;
    let step = if average > 238 {
        23
    } else {
        average.saturating_sub(3) / 10
    };
    let grey = 232 + step;
    if distance(index_to_rgb(grey), (r, g, b)) < distance(cube_rgb, (r, g, b)) {
        grey
    } else {
        cube
    }
}

/// The nearest of the 16 ANSI colours by hue, then lightness.
///
/// Plain RGB distance to xterm's 16 colours sends most theme colours (soft greens, ambers,
/// pinks) to white or grey, and a dashboard whose "running" and "failed" both turn grey has
/// lost its meaning. So: near-greys pick black, bright black, white or bright white by
/// lightness; other colours keep their hue sector (red, yellow, green, cyan, blue, magenta)
/// and take the bright variant when light.
fn rgb_to_16(r: u8, g: u8, b: u8) -> Color {
    let (r16, g16, b16) = (i32::from(r), i32::from(g), i32::from(b));
    let max = r16.max(g16).max(b16);
    let min = r16.min(g16).min(b16);
    let chroma = max - min;
    let lightness = (max + min) / 2;
    if chroma < 40 || max < 60 {
        // Midpoints between xterm's 0, 127, 229 and 255.
        return match lightness {
            0..64 => Color::Black,
            64..178 => Color::DarkGray,
            178..242 => Color::Gray,
            _ => Color::White,
        };
    }
    let c = chroma as f32;
    let hue = if max == r16 {
        60.0 * ((g16 - b16) as f32 / c).rem_euclid(6.0)
    } else if max == g16 {
        60.0 * ((b16 - r16) as f32 / c + 2.0)
    } else {
        60.0 * ((r16 - g16) as f32 / c + 4.0)
    };
    // Sectors are skewed from the even 60 degrees: orange reads as a warning (yellow), and
    // pinkish reds as red.
    let base = if !(20.0..330.0).contains(&hue) {
        1 // red
    } else if hue < 70.0 {
        3 // yellow
    } else if hue < 165.0 {
        2 // green
    } else if hue < 200.0 {
        6 // cyan
    } else if hue < 260.0 {
        4 // blue
    } else {
        5 // magenta
    };
    let bright = if lightness > 140 { 8 } else { 0 };
    ANSI16[base + bright]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_colour_literals() {
        assert_eq!(parse_color("#ff8000"), Some(Color::Rgb(255, 128, 0)));
        assert_eq!(parse_color("#ff80"), None);
        assert_eq!(parse_color("#gg0000"), None);
        assert_eq!(parse_color("238"), Some(Color::Indexed(238)));
        assert_eq!(parse_color("256"), None);
        assert_eq!(parse_color("white"), Some(Color::Gray));
        assert_eq!(parse_color("bright-white"), Some(Color::White));
        assert_eq!(parse_color("dark-gray"), Some(Color::DarkGray));
        assert_eq!(parse_color("bright-black"), Some(Color::DarkGray));
        assert_eq!(parse_color("reset"), Some(Color::Reset));
        assert_eq!(parse_color("Red"), None);
    }

    #[test]
    fn cube_and_grey_ramp_round_trip() {
        for index in 16..=255u8 {
            let (r, g, b) = index_to_rgb(index);
            let back = rgb_to_256(r, g, b);
            // Cube greys (16, 59, ...) and ramp entries can coincide in RGB; either is exact.
            assert_eq!(
                index_to_rgb(back),
                (r, g, b),
                "index {index} came back as {back}"
            );
        }
    }

    #[test]
    fn sixteen_colour_hues() {
        assert_eq!(rgb_to_16(0xe0, 0x6c, 0x75), Color::LightRed);
        assert_eq!(rgb_to_16(0x7e, 0xc1, 0x6e), Color::LightGreen);
        assert_eq!(rgb_to_16(0x2e, 0x7d, 0x32), Color::Green);
        assert_eq!(rgb_to_16(0xff, 0x88, 0x00), Color::Yellow);
        assert_eq!(rgb_to_16(0x61, 0xaf, 0xef), Color::LightBlue);
        assert_eq!(rgb_to_16(0xc6, 0x78, 0xdd), Color::LightMagenta);
        assert_eq!(rgb_to_16(0x0f, 0x7f, 0x8c), Color::Cyan);
        assert_eq!(rgb_to_16(0x1b, 0x1e, 0x24), Color::Black);
        assert_eq!(rgb_to_16(0x80, 0x80, 0x80), Color::DarkGray);
        assert_eq!(rgb_to_16(0xc8, 0xcc, 0xd4), Color::Gray);
        assert_eq!(rgb_to_16(0xfa, 0xfa, 0xfa), Color::White);
    }

    #[test]
    fn positions_count_lines_and_characters() {
        let parser = FileParser {
            label: Arc::from("x"),
            text: "a = 1\n\u{e9}b = 2\n",
        };
        assert_eq!(parser.position(0), (1, 1));
        assert_eq!(parser.position(6), (2, 1));
        // The é is two bytes but one column.
        assert_eq!(parser.position(8), (2, 2));
        assert_eq!(parser.position(1000), (3, 1));
    }

    #[test]
    fn nested_and_quoted_keys_mean_the_same() {
        let text = r##"
            [styles]
            "node.machine" = "red"
            node.system = { fg = "green", ready = "blue" }
            [styles.sync]
            fg = "yellow"
            failed = { bg = "red", modifiers = ["bold"] }
        "##;
        let raw = parse_file("t.toml", text).map_err(|e| e.to_string());
        let keys: Vec<String> = raw
            .map(|r| r.styles.into_keys().collect())
            .unwrap_or_default();
        assert_eq!(
            keys,
            [
                "node.machine",
                "node.system",
                "node.system.ready",
                "sync",
                "sync.failed"
            ]
        );
    }

    #[test]
    fn a_key_defined_twice_is_an_error() {
        let text = "[styles]\n\"node.machine\" = \"red\"\nnode.machine = { fg = \"blue\" }\n";
        let message = parse_file("t.toml", text).err().map(|e| e.to_string());
        assert!(
            message
                .as_deref()
                .is_some_and(|m| m.contains("`node.machine` is defined twice")),
            "{message:?}"
        );
    }

    #[test]
    fn unknown_modifier_names_its_line() {
        let text = "[styles]\ntext = \"red\"\ntitle = { modifiers = [\"blink\"] }\n";
        let message = parse_file("t.toml", text).err().map(|e| e.to_string());
        assert!(
            message
                .as_deref()
                .is_some_and(|m| m.contains("line 3") && m.contains("`blink`")),
            "{message:?}"
        );
    }

    #[test]
    fn theme_names_cannot_escape_the_folder() {
        assert!(!valid_name("../etc/passwd"));
        assert!(!valid_name(""));
        assert!(valid_name("solarized-dark_2"));
        assert!(matches!(
            Theme::load("../dark", &[]),
            Err(ThemeError::UnknownTheme { .. })
        ));
    }
}
