//! A plan document as text: JSON (the default) or TOML, written ([`render`]) and read
//! ([`parse`]), and where in the text each entry is ([`Locator`]), so a refusal about
//! `nodes.web-1` names the line the operator wrote it on.
//!
//! Syntax and type errors come with their position from the parsers (serde_json, toml);
//! the engine's refusals come as paths into the document and are placed here. Nothing
//! here checks what the values mean: that is the engine's (`plan_file::build`).

use std::collections::HashMap;

use super::PlanDocument;

/// The text format of a plan document.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    #[default]
    Json,
    Toml,
}

impl Format {
    /// The format a file's name says (`.toml`), else JSON.
    pub fn of_path(path: &std::path::Path) -> Format {
        match path.extension().and_then(|e| e.to_str()) {
            Some(e) if e.eq_ignore_ascii_case("toml") => Format::Toml,
            _ => Format::Json,
        }
    }
}

/// A message about a place in the text (1-based line and column; 0 when not known).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Located {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl std::fmt::Display for Located {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.line, self.column) {
            (0, _) => write!(f, "{}", self.message),
            (l, 0) => write!(f, "line {l}: {}", self.message),
            (l, c) => write!(f, "line {l}, column {c}: {}", self.message),
        }
    }
}

/// Why a document could not be written.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("could not write the plan as JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("could not write the plan as TOML: {0}")]
    Toml(#[from] toml::ser::Error),
}

/// The document as text, maps sorted by name (the same plan always gives the same text).
pub fn render(doc: &PlanDocument, format: Format) -> Result<String, RenderError> {
    Ok(match format {
        Format::Json => {
            let mut s = serde_json::to_string_pretty(doc)?;
            s.push('\n');
            s
        }
        Format::Toml => toml::to_string(doc)?,
    })
}

/// Read a document. A syntax error, an unknown field or a value of the wrong type is
/// one [`Located`] error with the parser's position.
pub fn parse(text: &str, format: Format) -> Result<PlanDocument, Located> {
    match format {
        Format::Json => serde_json::from_str(text).map_err(|e| Located {
            line: e.line(),
            column: e.column(),
            message: strip_position(&e.to_string()),
        }),
        Format::Toml => toml::from_str(text).map_err(|e| {
            let (line, column) = e
                .span()
                .map_or((0, 0), |s| line_column(&line_starts(text), s.start));
            Located {
                line,
                column,
                message: e.message().trim().to_string(),
            }
        }),
    }
}

/// serde_json ends its messages with " at line L column C"; the position is shown
/// in front instead.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_string(),
        None => message.to_string(),
    }
}

fn line_starts(text: &str) -> Vec<usize> {
    std::iter::once(0)
        .chain(text.match_indices('\n').map(|(i, _)| i + 1))
        .collect()
}

/// 1-based line and column (in characters) of byte `offset`.
fn line_column(starts: &[usize], offset: usize) -> (usize, usize) {
    let line = starts.partition_point(|s| *s <= offset).max(1);
    (line, offset - starts[line - 1] + 1)
}

/// Where each entry of a document starts in its text: map entries at their key, array
/// elements at their first character, up to [`DEPTH`] levels deep.
pub struct Locator {
    at: HashMap<Vec<String>, usize>,
    starts: Vec<usize>,
}

/// Deep enough for a record's fields (`zones`, zone, `records`, index, field).
const DEPTH: usize = 5;

impl Locator {
    /// Index a text that [`parse`] accepted.
    pub fn new(text: &str, format: Format) -> Locator {
        let mut at = HashMap::new();
        match format {
            Format::Json => {
                let mut s = JsonScan {
                    b: text.as_bytes(),
                    i: 0,
                    at: &mut at,
                };
                s.value(&mut Vec::new());
            }
            Format::Toml => {
                if let Ok(table) = toml::de::DeTable::parse(text) {
                    toml_table(table.get_ref(), &mut Vec::new(), &mut at);
                }
            }
        }
        Locator {
            at,
            starts: line_starts(text),
        }
    }

    /// The position of `path` (its `field` if given and found), else of the nearest
    /// enclosing entry found.
    pub fn place(&self, path: &[String], field: Option<&str>, message: String) -> Located {
        let mut key: Vec<String> = path.to_vec();
        if let Some(f) = field {
            key.push(f.to_string());
            if let Some(o) = self.at.get(&key) {
                return self.located(*o, message);
            }
            key.pop();
        }
        while !key.is_empty() {
            if let Some(o) = self.at.get(&key) {
                return self.located(*o, message);
            }
            key.pop();
        }
        Located {
            line: 0,
            column: 0,
            message,
        }
    }

    fn located(&self, offset: usize, message: String) -> Located {
        let (line, column) = line_column(&self.starts, offset);
        Located {
            line,
            column,
            message,
        }
    }
}

fn toml_table(
    table: &toml::de::DeTable<'_>,
    path: &mut Vec<String>,
    at: &mut HashMap<Vec<String>, usize>,
) {
    for (k, v) in table {
        path.push(k.get_ref().to_string());
        at.insert(path.clone(), k.span().start);
        toml_value(v.get_ref(), path, at);
        path.pop();
    }
}

fn toml_value(
    value: &toml::de::DeValue<'_>,
    path: &mut Vec<String>,
    at: &mut HashMap<Vec<String>, usize>,
) {
    if path.len() >= DEPTH {
        return;
    }
    match value {
        toml::de::DeValue::Table(t) => toml_table(t, path, at),
        toml::de::DeValue::Array(a) => {
            for (i, e) in a.iter().enumerate() {
                path.push(i.to_string());
                at.insert(path.clone(), e.span().start);
                toml_value(e.get_ref(), path, at);
                path.pop();
            }
        }
        _ => {}
    }
}

/// A small scanner over JSON that serde_json has already accepted: it only records
/// where keys and elements start, so it can be lenient about everything else.
struct JsonScan<'a, 'm> {
    b: &'a [u8],
    i: usize,
    at: &'m mut HashMap<Vec<String>, usize>,
}

impl JsonScan<'_, '_> {
    fn ws(&mut self) {
        while self.i < self.b.len() && self.b[self.i].is_ascii_whitespace() {
            self.i += 1;
        }
    }

    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    /// A string at `i` (on its opening quote), decoded.
    fn string(&mut self) -> String {
        let mut out = Vec::new();
        self.i += 1;
        while let Some(c) = self.peek() {
            self.i += 1;
            match c {
                b'"' => break,
                b'\\' => {
                    let Some(e) = self.peek() else { break };
                    self.i += 1;
                    match e {
                        b'n' => out.push(b'\n'),
                        b't' => out.push(b'\t'),
                        b'r' => out.push(b'\r'),
                        b'b' => out.push(8),
                        b'f' => out.push(12),
                        b'u' => {
                            let hex = self.b.get(self.i..self.i + 4).unwrap_or_default();
                            self.i += 4;
                            let c = std::str::from_utf8(hex)
                                .ok()
                                .and_then(|h| u32::from_str_radix(h, 16).ok())
                                .and_then(char::from_u32)
                                .unwrap_or(char::REPLACEMENT_CHARACTER);
                            let mut buf = [0u8; 4];
                            out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                        }
                        other => out.push(other),
                    }
                }
                other => out.push(other),
            }
        }
        String::from_utf8_lossy(&out).into_owned()
    }

    fn value(&mut self, path: &mut Vec<String>) {
        self.ws();
        match self.peek() {
            Some(b'{') => {
                self.i += 1;
                loop {
                    self.ws();
                    match self.peek() {
                        Some(b'"') => {}
                        Some(b',') => {
                            self.i += 1;
                            continue;
                        }
                        _ => {
                            self.i += 1;
                            return;
                        }
                    }
                    let start = self.i;
                    let key = self.string();
                    self.ws();
                    if self.peek() == Some(b':') {
                        self.i += 1;
                    }
                    path.push(key);
                    if path.len() <= DEPTH {
                        self.at.insert(path.clone(), start);
                    }
                    self.value(path);
                    path.pop();
                }
            }
            Some(b'[') => {
                self.i += 1;
                let mut index = 0usize;
                loop {
                    self.ws();
                    match self.peek() {
                        Some(b']') | None => {
                            self.i += 1;
                            return;
                        }
                        Some(b',') => {
                            self.i += 1;
                            continue;
                        }
                        _ => {}
                    }
                    path.push(index.to_string());
                    if path.len() <= DEPTH {
                        self.at.insert(path.clone(), self.i);
                    }
                    self.value(path);
                    path.pop();
                    index += 1;
                }
            }
            Some(b'"') => {
                self.string();
            }
            Some(_) => {
                // A number, true, false or null: up to the next delimiter.
                while let Some(c) = self.peek() {
                    if matches!(c, b',' | b'}' | b']') || c.is_ascii_whitespace() {
                        break;
                    }
                    self.i += 1;
                }
            }
            None => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const JSON: &str = r#"{
  "version": 1,
  "nodes": {
    "web-1": {
      "provider": "mock",
      "offer": "sim-small"
    },
    "web\u002d2": { "provider": "mock" }
  },
  "zones": {
    "example.test": {
      "provider": "mock",
      "records": [
        { "name": "www", "type": "A", "value": "192.0.2.1" },
        { "name": "api", "type": "A", "node": "web-1" }
      ]
    }
  }
}
"#;

    fn at(l: &Locator, path: &[&str], field: Option<&str>) -> (usize, usize) {
        let path: Vec<String> = path.iter().map(|s| s.to_string()).collect();
        let p = l.place(&path, field, String::new());
        (p.line, p.column)
    }

    #[test]
    fn json_entries_are_found_at_their_key_or_element() {
        assert!(parse(JSON, Format::Json).is_ok());
        let l = Locator::new(JSON, Format::Json);
        assert_eq!(at(&l, &["nodes", "web-1"], None), (4, 5));
        assert_eq!(at(&l, &["nodes", "web-1"], Some("offer")), (6, 7));
        assert_eq!(at(&l, &["nodes", "web-1"], Some("image")), (4, 5));
        assert_eq!(at(&l, &["nodes", "web-2"], None), (8, 5));
        assert_eq!(
            at(&l, &["zones", "example.test", "records", "1"], None),
            (15, 9)
        );
        assert_eq!(at(&l, &["nodes", "nope"], None), (3, 3));
        assert_eq!(at(&l, &["elsewhere"], None), (0, 0));
    }

    #[test]
    fn toml_entries_are_found_too() {
        let text = "version = 1\n\n[nodes.web-1]\nprovider = \"mock\"\n\n[[firewalls.prod]]\nprotocol = \"tcp\"\nsources = [\"0.0.0.0/0\"]\n\n[[firewalls.prod]]\nprotocol = \"icmp\"\nsources = [\"::/0\"]\n";
        assert!(parse(text, Format::Toml).is_ok());
        let l = Locator::new(text, Format::Toml);
        assert_eq!(at(&l, &["nodes", "web-1"], None).0, 3);
        assert_eq!(at(&l, &["nodes", "web-1"], Some("provider")).0, 4);
        assert_eq!(at(&l, &["firewalls", "prod", "1"], None).0, 10);
        assert_eq!(at(&l, &["firewalls", "prod", "0"], None).0, 6);
    }

    #[test]
    fn the_examples_in_docs_cli_md_parse_and_say_the_same() {
        let docs = include_str!("../../../docs/cli.md");
        let section = &docs[docs.find("## Plan documents").unwrap()..];
        let block = |fence: &str| {
            let start = section.find(fence).unwrap() + fence.len();
            &section[start..start + section[start..].find("```").unwrap()]
        };
        let json = parse(block("```json\n"), Format::Json).unwrap_or_else(|e| panic!("{e}"));
        let toml = parse(block("```toml\n"), Format::Toml).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(json.nodes["web-1"].offer.as_deref(), Some("cx22"));
        assert_eq!(toml.nodes.keys().collect::<Vec<_>>(), ["web-1", "web-2"]);
        assert_eq!(toml.firewalls, json.firewalls);
        assert_eq!(toml.management_sources, json.management_sources);
    }

    #[test]
    fn syntax_and_type_errors_carry_their_position() {
        let e = parse(
            "{\n  \"version\": 1,\n  \"nodes\": {\n    \"a\": {\"provider\": 3}\n  }\n}",
            Format::Json,
        )
        .unwrap_err();
        assert_eq!(e.line, 4, "{e}");
        assert!(e.to_string().starts_with("line 4, column"), "{e}");
        assert!(!e.message.contains(" at line "), "{e}");
        let e = parse("{\"version\": 1, \"nodez\": {}}", Format::Json).unwrap_err();
        assert!(e.message.contains("unknown field `nodez`"), "{e}");
        let e = parse("version = 1\n[nodes.a]\nprovider = 3\n", Format::Toml).unwrap_err();
        assert_eq!(e.line, 3, "{e}");
    }
}
