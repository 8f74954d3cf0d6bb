//! Theme files: finding a theme by name (the user's directories, then the built-ins), and
//! reading one file's `inherits`, `[palette]` and styles into plain values with the line of
//! every problem. Merging the chain and resolving styles is [`super::Theme::load`]'s job.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;

use ratatui::style::{Color, Modifier, Style};
use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::color::parse_color;
use super::{BUILTIN, Theme, ThemeError};

/// Theme names double as file names: keep `:theme ../x` from reaching outside the folder.
pub(super) fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

pub(super) fn unknown_theme(name: &str, dirs: &[PathBuf]) -> ThemeError {
    ThemeError::UnknownTheme {
        name: name.to_string(),
        available: Theme::names(dirs),
    }
}

pub(super) struct Found {
    pub(super) name: String,
    /// Position in the search order: `dirs[rank]`, or `dirs.len()` for the built-ins.
    pub(super) rank: usize,
    pub(super) label: String,
    pub(super) text: String,
}

/// The first `NAME.toml` at or after search position `start`.
pub(super) fn find(
    name: &str,
    dirs: &[PathBuf],
    start: usize,
) -> Result<Option<Found>, ThemeError> {
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
pub(super) struct Located<T> {
    pub(super) value: T,
    pub(super) file: Arc<str>,
    pub(super) line: usize,
    pub(super) column: usize,
}

#[derive(Debug, Clone)]
pub(super) struct RawStyle {
    pub(super) fg: Option<Located<String>>,
    pub(super) bg: Option<Located<String>>,
    pub(super) modifiers: Modifier,
}

impl RawStyle {
    pub(super) fn resolve(
        &self,
        key: &str,
        palette: &HashMap<String, Color>,
    ) -> Result<Style, ThemeError> {
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

pub(super) struct RawTheme {
    pub(super) inherits: Option<Located<String>>,
    pub(super) palette: HashMap<String, Color>,
    pub(super) styles: BTreeMap<String, RawStyle>,
}

/// Reads a theme file with spans kept, so every complaint can name its line.
pub(super) struct FileParser<'a> {
    pub(super) label: Arc<str>,
    pub(super) text: &'a str,
}

impl FileParser<'_> {
    pub(super) fn position(&self, offset: usize) -> (usize, usize) {
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

    pub(super) fn error(
        &self,
        span: std::ops::Range<usize>,
        message: impl Into<String>,
    ) -> ThemeError {
        let (line, column) = self.position(span.start);
        ThemeError::BadFile {
            file: self.label.to_string(),
            line,
            column,
            message: message.into(),
        }
    }

    pub(super) fn located(&self, span: std::ops::Range<usize>, value: &str) -> Located<String> {
        let (line, column) = self.position(span.start);
        Located {
            value: value.to_string(),
            file: self.label.clone(),
            line,
            column,
        }
    }

    pub(super) fn string<'v>(
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

    pub(super) fn table<'v, 'i>(
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

    pub(super) fn file(&self) -> Result<RawTheme, ThemeError> {
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
    pub(super) fn styles(
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

    pub(super) fn style_entry(
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

    pub(super) fn insert(
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

    pub(super) fn modifiers(
        &self,
        key: &str,
        value: &Spanned<DeValue<'_>>,
    ) -> Result<Modifier, ThemeError> {
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

pub(super) fn parse_file(label: &str, text: &str) -> Result<RawTheme, ThemeError> {
    FileParser {
        label: Arc::from(label),
        text,
    }
    .file()
}
