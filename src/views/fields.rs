//! Small text-field forms: provider settings (made from the provider's descriptor, secret
//! fields masked), and plan entries for DNS zones, records and firewall rules. Each field
//! is a ratatui-textarea input; nothing is sent until the form validates, and errors are
//! shown beside their field.

use crossterm::event::{KeyCode, KeyEvent};
use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, Widget};
use ratatui_textarea::TextArea;

use super::theme::Theme;
use crate::core::secret::Secret;
use crate::engine::parse;
use crate::engine::plan::PlanEdit;
use crate::engine::state::model::RecordPlan;
use crate::engine::validate;
use crate::engine::validate::EditError;
use crate::providers::{Credentials, Descriptor, FirewallRule};

/// What the form builds.
#[derive(Debug, Clone, PartialEq)]
pub enum FieldsKind {
    /// Credentials for a provider kind.
    Provider(String),
    Zone,
    Record,
    FirewallRule,
    /// The management sources every managed firewall keeps SSH open to.
    ManagementSources,
    /// Import an existing host (the manual provider).
    Import,
}

/// The form's result.
#[derive(Debug, Clone, PartialEq)]
pub enum Submitted {
    Provider(String, Credentials),
    Plan(PlanEdit),
    Import(Box<crate::engine::import::ImportRequest>),
}

#[derive(Debug, Clone, PartialEq)]
pub enum FieldsOutcome {
    Editing,
    Cancel,
    Submit(Submitted),
}

struct Field {
    id: String,
    label: String,
    required: bool,
    help: String,
    /// Beside the input when there is no error (a provider field's default variable).
    hint: String,
    input: TextArea<'static>,
}

pub struct FieldsForm {
    title: String,
    kind: FieldsKind,
    fields: Vec<Field>,
    focus: usize,
    errors: Vec<(usize, String)>,
}

fn input(value: &str, secret: bool) -> TextArea<'static> {
    let mut t = TextArea::new(vec![value.to_string()]);
    t.move_cursor(ratatui_textarea::CursorMove::End);
    if secret {
        t.set_mask_char('•');
    }
    t
}

fn field(id: &str, label: &str, value: &str, help: &str) -> Field {
    Field {
        id: id.into(),
        label: label.into(),
        required: true,
        help: help.into(),
        hint: String::new(),
        input: input(value, false),
    }
}

impl FieldsForm {
    /// The settings form of a provider, from its descriptor. Secret fields start empty
    /// and are masked; a default environment variable is named in the help line.
    pub fn provider(desc: &Descriptor) -> FieldsForm {
        let fields = desc
            .credential_fields
            .iter()
            .map(|f| Field {
                id: f.id.clone(),
                label: f.label.clone(),
                required: f.required,
                help: f.help.clone(),
                hint: f
                    .env_var
                    .as_ref()
                    .map(|v| format!("default ${v}"))
                    .unwrap_or_default(),
                input: input(
                    if f.secret {
                        ""
                    } else {
                        f.default.as_deref().unwrap_or("")
                    },
                    f.secret,
                ),
            })
            .collect();
        FieldsForm {
            title: format!(" {} settings ", desc.display_name),
            kind: FieldsKind::Provider(desc.kind.clone()),
            fields,
            focus: 0,
            errors: Vec::new(),
        }
    }

    pub fn zone(provider: &str) -> FieldsForm {
        FieldsForm {
            title: " add a DNS zone to the plan ".into(),
            kind: FieldsKind::Zone,
            fields: vec![
                field("name", "zone", "", "a domain such as example.com"),
                field("provider", "provider", provider, "where the zone is hosted"),
            ],
            focus: 0,
            errors: Vec::new(),
        }
    }

    pub fn record(zone: &str) -> FieldsForm {
        FieldsForm {
            title: " add a DNS record to the plan ".into(),
            kind: FieldsKind::Record,
            fields: vec![
                field("zone", "zone", zone, "a planned zone"),
                field("name", "name", "", "relative to the zone; @ for the apex"),
                field("type", "type", "A", "A, AAAA, CNAME, TXT, MX, NS, CAA, SRV"),
                field("ttl", "ttl", "300", "seconds"),
                field(
                    "value",
                    "value",
                    "",
                    "a literal, or @node-name for a node's address",
                ),
            ],
            focus: 0,
            errors: Vec::new(),
        }
    }

    pub fn firewall_rule(cluster: &str) -> FieldsForm {
        FieldsForm {
            title: " add a firewall rule to the plan ".into(),
            kind: FieldsKind::FirewallRule,
            fields: vec![
                field("cluster", "set", cluster, "the cluster's firewall set"),
                field("protocol", "protocol", "tcp", "tcp, udp or icmp"),
                field("port", "port", "", "22, 8000-8100; empty for icmp"),
                field(
                    "sources",
                    "sources",
                    "0.0.0.0/0, ::/0",
                    "CIDRs, comma-separated",
                ),
                field("description", "note", "", "what the rule is for"),
            ],
            focus: 0,
            errors: Vec::new(),
        }
    }

    /// The configured management sources (`current`, comma-separated), replaced as a
    /// whole: the same setting as `legion config set management-sources`.
    pub fn management_sources(current: &str) -> FieldsForm {
        FieldsForm {
            title: " management sources: who keeps SSH through managed firewalls ".into(),
            kind: FieldsKind::ManagementSources,
            fields: vec![Field {
                required: false,
                ..field(
                    "sources",
                    "sources",
                    current,
                    "CIDRs, comma-separated, besides the addresses nodes see Legion from; apply makes it so",
                )
            }],
            focus: 0,
            errors: Vec::new(),
        }
    }

    /// Import an existing host: the node's name, the manual catalog's offer variables
    /// (host, port, user, the one-time password, masked and never stored), cluster, role.
    pub fn import() -> FieldsForm {
        let catalog = crate::providers::manual::catalog();
        let mut fields = vec![field("name", "node", "", "the node's name in Legion")];
        for v in catalog.offers.iter().flat_map(|o| &o.variables) {
            fields.push(Field {
                id: v.id.clone(),
                label: v.id.clone(),
                required: !v.secret && v.default.is_none(),
                help: if v.secret {
                    format!("{} (empty: Legion's key is already authorized)", v.label)
                } else {
                    v.label.clone()
                },
                hint: String::new(),
                input: input(v.default.as_deref().unwrap_or(""), v.secret),
            });
        }
        fields.push(field("cluster", "cluster", "default", "the node's cluster"));
        fields.push(field(
            "role",
            "role",
            "node",
            "roles/ROLE.sh is its install script",
        ));
        FieldsForm {
            title: " import an existing host over SSH ".into(),
            kind: FieldsKind::Import,
            fields,
            focus: 0,
            errors: Vec::new(),
        }
    }

    fn value(&self, id: &str) -> String {
        self.fields
            .iter()
            .find(|f| f.id == id)
            .and_then(|f| f.input.lines().first())
            .map(|l| l.trim().to_string())
            .unwrap_or_default()
    }

    fn error(&mut self, id: &str, msg: impl Into<String>) {
        if let Some(i) = self.fields.iter().position(|f| f.id == id) {
            self.errors.push((i, msg.into()));
        }
    }

    pub fn paste(&mut self, s: &str) {
        if let Some(f) = self.fields.get_mut(self.focus) {
            f.input.insert_str(s);
        }
    }

    pub fn key(&mut self, k: KeyEvent) -> FieldsOutcome {
        match k.code {
            KeyCode::Esc => return FieldsOutcome::Cancel,
            KeyCode::Tab | KeyCode::Down => {
                self.focus = (self.focus + 1) % self.fields.len().max(1);
            }
            KeyCode::BackTab | KeyCode::Up => {
                let n = self.fields.len().max(1);
                self.focus = (self.focus + n - 1) % n;
            }
            KeyCode::Enter => return self.submit(),
            _ => {
                let focus = self.focus;
                if let Some(f) = self.fields.get_mut(focus) {
                    f.input.input(k);
                    self.errors.retain(|(i, _)| *i != focus);
                }
            }
        }
        FieldsOutcome::Editing
    }

    fn submit(&mut self) -> FieldsOutcome {
        self.errors.clear();
        for i in 0..self.fields.len() {
            let f = &self.fields[i];
            let empty = f.input.lines().first().is_none_or(|l| l.trim().is_empty());
            if f.required && empty {
                self.errors.push((i, "required".into()));
            }
        }
        let result = self.build();
        if let Some((i, _)) = self.errors.first() {
            self.focus = *i;
            return FieldsOutcome::Editing;
        }
        match result {
            Some(s) => FieldsOutcome::Submit(s),
            None => FieldsOutcome::Editing,
        }
    }

    fn build(&mut self) -> Option<Submitted> {
        match self.kind.clone() {
            FieldsKind::Provider(kind) => {
                let creds: Credentials = self
                    .fields
                    .iter()
                    .filter_map(|f| {
                        let v = f.input.lines().first()?.trim().to_string();
                        (!v.is_empty()).then(|| (f.id.clone(), Secret::new(v)))
                    })
                    .collect();
                Some(Submitted::Provider(kind, creds))
            }
            FieldsKind::Import => {
                let port = match self.value("port").parse::<u16>() {
                    Ok(p) if p > 0 => Some(p),
                    _ => {
                        self.error("port", "a port from 1 to 65535");
                        None
                    }
                };
                let password = self.value("password");
                Some(Submitted::Import(Box::new(
                    crate::engine::import::ImportRequest {
                        name: self.value("name"),
                        host: self.value("host"),
                        port: port?,
                        user: self.value("user"),
                        password: (!password.is_empty()).then(|| Secret::new(password)),
                        cluster: Some(self.value("cluster")),
                        role: Some(self.value("role")),
                        host_key: Some(self.value("host_key")).filter(|k| !k.is_empty()),
                    },
                )))
            }
            FieldsKind::Zone => Some(Submitted::Plan(PlanEdit::UpsertZone {
                name: self.value("name"),
                provider: self.value("provider"),
            })),
            FieldsKind::Record => {
                let rtype = match parse::record_type(&self.value("type")) {
                    Ok(t) => Some(t),
                    Err(e) => {
                        self.error("type", e.to_string());
                        None
                    }
                };
                let ttl = match parse::ttl(&self.value("ttl")) {
                    Ok(t) => Some(t),
                    Err(e) => {
                        self.error("ttl", e.to_string());
                        None
                    }
                };
                let value = parse::record_value(&self.value("value"));
                Some(Submitted::Plan(PlanEdit::UpsertRecord {
                    zone: self.value("zone"),
                    record: RecordPlan {
                        name: self.value("name"),
                        rtype: rtype?,
                        ttl: ttl?,
                        value,
                    },
                }))
            }
            FieldsKind::ManagementSources => {
                let sources = parse::sources(&self.value("sources"));
                if let Err(e) = parse::check_sources(&sources) {
                    self.error("sources", e.to_string());
                    return None;
                }
                Some(Submitted::Plan(PlanEdit::SetManagementSources { sources }))
            }
            FieldsKind::FirewallRule => {
                let protocol = match parse::protocol(&self.value("protocol")) {
                    Ok(p) => Some(p),
                    Err(e) => {
                        self.error("protocol", e.to_string());
                        None
                    }
                };
                let port = self.value("port");
                if let Err(e) = parse::port(&port) {
                    self.error("port", e.to_string());
                }
                if let Err(e) = parse::port_required(protocol, &port) {
                    self.error("port", e.to_string());
                }
                let sources = parse::sources(&self.value("sources"));
                if let Err(e) = parse::check_sources(&sources) {
                    self.error("sources", e.to_string());
                }
                let rule = FirewallRule {
                    protocol: protocol?,
                    port: (!port.is_empty()).then_some(port),
                    sources,
                    description: self.value("description"),
                };
                // The engine's check of the whole rule, for what the fields alone miss
                // (a port on icmp, a control character in the note).
                if self.errors.is_empty() {
                    match validate::firewall_rule(&rule) {
                        Ok(()) => {}
                        Err(EditError::Field { field, error }) => {
                            self.error(field, error.to_string())
                        }
                        Err(e) => self.error("description", e.to_string()),
                    }
                }
                Some(Submitted::Plan(PlanEdit::AddFirewallRule {
                    cluster: self.value("cluster"),
                    rule,
                }))
            }
        }
    }

    pub fn render(&self, theme: &Theme, area: Rect, buf: &mut Buffer) {
        let w = area.width.min(100);
        let h = (self.fields.len() as u16 * 2 + 4).min(area.height);
        let box_ = Rect::new(
            area.x + (area.width - w) / 2,
            area.y + (area.height - h) / 2,
            w,
            h,
        );
        Clear.render(box_, buf);
        let block = Block::default()
            .borders(Borders::ALL)
            .border_style(theme.style("border.focused"))
            .style(theme.style("dialog"))
            .title(Span::styled(self.title.clone(), theme.style("title")));
        let inner = block.inner(box_);
        block.render(box_, buf);
        // Labels get the width of the longest (within reason); the help goes on the row
        // under the input, where it has the whole width; an error goes beside the input.
        let label_w = self
            .fields
            .iter()
            .map(|f| f.label.chars().count())
            .max()
            .unwrap_or(0)
            .clamp(6, 28) as u16;
        let input_x = inner.x + label_w + 1;
        for (i, f) in self.fields.iter().enumerate() {
            let y = inner.y + i as u16 * 2;
            if y + 1 >= inner.bottom() {
                break;
            }
            let focused = i == self.focus;
            let style = if focused {
                theme.style("help.key")
            } else {
                theme.style("text.dim")
            };
            let label: String = f.label.chars().take(label_w as usize).collect();
            Line::from(Span::styled(
                format!("{label:>w$} ", w = label_w as usize),
                style,
            ))
            .render(Rect::new(inner.x, y, label_w + 1, 1), buf);
            let room = inner.right().saturating_sub(input_x);
            let at = Rect::new(input_x, y, 36.min(room), 1);
            let mut t = f.input.clone();
            t.set_style(theme.style("input"));
            t.set_cursor_line_style(ratatui::style::Style::default());
            if !focused {
                t.set_cursor_style(theme.style("input"));
            }
            t.render(at, buf);
            let x = at.right() + 1;
            if x < inner.right() {
                let (text, style) = match self.errors.iter().find(|(e, _)| *e == i) {
                    Some((_, e)) => (e.clone(), theme.style("input.error")),
                    None => (f.hint.clone(), theme.style("text.dim")),
                };
                Line::from(Span::styled(text, style))
                    .render(Rect::new(x, y, inner.right() - x, 1), buf);
            }
            Line::from(Span::styled(f.help.clone(), theme.style("text.dim")))
                .render(Rect::new(input_x, y + 1, room, 1), buf);
        }
        if inner.height > 0 {
            Line::from(Span::styled(
                "Tab/↑↓ fields · Enter saves · Esc cancels",
                theme.style("text.dim"),
            ))
            .render(Rect::new(inner.x, inner.bottom() - 1, inner.width, 1), buf);
        }
    }
}
