//! The node form: add a node to the plan or edit one. Text fields are ratatui-textarea
//! inputs; provider, region, offer and image are choices fed by the provider's catalog
//! with the catalog policy's defaults preselected. Nothing is sent until the operator
//! submits, and validation errors are shown beside their field.

use std::sync::Arc;

use crossterm::event::{KeyCode, KeyEvent};
use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, Widget};
use ratatui_textarea::TextArea;

use super::theme::Theme;
use crate::engine::plan::{NodeIntent, NodeRequest};
use crate::engine::snapshot::NodeRow;
use crate::engine::validate::validate_name;
use crate::providers::{Catalog, CatalogPolicy};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Id {
    Name,
    Provider,
    Region,
    Offer,
    Image,
    Cluster,
    Role,
}

const ORDER: [Id; 7] = [
    Id::Name,
    Id::Provider,
    Id::Region,
    Id::Offer,
    Id::Image,
    Id::Cluster,
    Id::Role,
];

fn label(id: Id) -> &'static str {
    match id {
        Id::Name => "name",
        Id::Provider => "provider",
        Id::Region => "region",
        Id::Offer => "offer",
        Id::Image => "image",
        Id::Cluster => "cluster",
        Id::Role => "role",
    }
}

/// A choice among `(id, label)` options.
#[derive(Debug, Clone, Default)]
struct Choice {
    options: Vec<(String, String)>,
    selected: usize,
}

impl Choice {
    fn value(&self) -> Option<&str> {
        self.options.get(self.selected).map(|(id, _)| id.as_str())
    }

    fn select(&mut self, id: &str) {
        if let Some(i) = self.options.iter().position(|(o, _)| o == id) {
            self.selected = i;
        }
    }

    fn cycle(&mut self, forward: bool) {
        let n = self.options.len();
        if n > 0 {
            self.selected = if forward {
                (self.selected + 1) % n
            } else {
                (self.selected + n - 1) % n
            };
        }
    }
}

/// What the form asks of the app.
#[derive(Debug, Clone, PartialEq)]
pub enum FormOutcome {
    /// Still editing.
    Editing,
    Cancel,
    /// The provider changed: load its catalog.
    NeedCatalog(String),
    Submit(NodeRequest),
}

pub struct NodeForm {
    /// The node being edited (its name is fixed), or `None` for a new node.
    pub editing: Option<String>,
    name: TextArea<'static>,
    cluster: TextArea<'static>,
    role: TextArea<'static>,
    provider: Choice,
    region: Choice,
    offer: Choice,
    image: Choice,
    catalog: Option<(Arc<Catalog>, CatalogPolicy)>,
    /// Values to select once the catalog arrives (editing).
    wanted: Option<(String, String, String)>,
    focus: usize,
    errors: Vec<(Id, String)>,
}

fn text(value: &str) -> TextArea<'static> {
    let mut t = TextArea::new(vec![value.to_string()]);
    t.move_cursor(ratatui_textarea::CursorMove::End);
    t
}

fn value(t: &TextArea<'_>) -> String {
    t.lines()
        .first()
        .map(|l| l.trim().to_string())
        .unwrap_or_default()
}

impl NodeForm {
    /// A new node; `providers` are the connected provider ids.
    pub fn new(providers: &[String], cluster: &str) -> NodeForm {
        NodeForm {
            editing: None,
            name: text(""),
            cluster: text(cluster),
            role: text("node"),
            provider: Choice {
                options: providers.iter().map(|p| (p.clone(), p.clone())).collect(),
                selected: 0,
            },
            region: Choice::default(),
            offer: Choice::default(),
            image: Choice::default(),
            catalog: None,
            wanted: None,
            focus: 0,
            errors: Vec::new(),
        }
    }

    /// Edit a planned node: everything but its name.
    pub fn edit(providers: &[String], row: &NodeRow) -> NodeForm {
        let mut f = NodeForm::new(providers, &row.cluster);
        f.editing = Some(row.name.clone());
        f.name = text(&row.name);
        f.role = text(&row.role);
        f.provider.select(&row.provider);
        f.wanted = Some((row.region.clone(), row.offer.clone(), row.image.clone()));
        f.focus = 1;
        f
    }

    pub fn provider(&self) -> Option<&str> {
        self.provider.value()
    }

    /// The catalog of the chosen provider arrived.
    pub fn set_catalog(&mut self, provider: &str, catalog: Arc<Catalog>, policy: CatalogPolicy) {
        if self.provider.value() != Some(provider) {
            return;
        }
        self.region.options = catalog
            .regions
            .iter()
            .filter(|r| r.available)
            .map(|r| (r.id.clone(), format!("{} ({})", r.id, r.name)))
            .collect();
        self.region.selected = 0;
        if let Some(r) = policy.region(&catalog) {
            self.region.select(r);
        }
        self.image.options = catalog
            .images
            .iter()
            .filter(|i| !i.deprecated)
            .map(|i| (i.id.clone(), format!("{} ({})", i.id, i.architecture)))
            .collect();
        self.image.selected = 0;
        if let Some(i) = policy.image(&catalog) {
            self.image.select(i);
        }
        self.catalog = Some((catalog, policy));
        if let Some((r, _, i)) = self.wanted.clone() {
            self.region.select(&r);
            self.image.select(&i);
        }
        self.refresh_offers();
        if let Some((_, o, _)) = self.wanted.take() {
            self.offer.select(&o);
        }
    }

    /// Offers orderable in the chosen region, the policy's default preselected.
    fn refresh_offers(&mut self) {
        let Some((catalog, policy)) = &self.catalog else {
            return;
        };
        let region = self.region.value().unwrap_or("").to_string();
        let price = |o: &crate::providers::Offer| {
            o.hourly_price
                .get(&region)
                .map(|p| format!(" {p:.3}/h"))
                .unwrap_or_default()
        };
        self.offer.options = catalog
            .offers
            .iter()
            .filter(|o| !o.deprecated && o.regions.contains(&region))
            .map(|o| {
                (
                    o.id.clone(),
                    format!(
                        "{} ({} cpu, {} MB, {} GB{})",
                        o.id,
                        o.cores,
                        o.memory_mb,
                        o.disk_gb,
                        price(o)
                    ),
                )
            })
            .collect();
        self.offer.selected = 0;
        if let Some(o) = policy.offer(catalog, &region) {
            let id = o.id.clone();
            self.offer.select(&id);
        }
    }

    fn current(&self) -> Id {
        ORDER[self.focus]
    }

    pub fn key(&mut self, k: KeyEvent) -> FormOutcome {
        match k.code {
            KeyCode::Esc => return FormOutcome::Cancel,
            KeyCode::Tab | KeyCode::Down => self.move_focus(true),
            KeyCode::BackTab | KeyCode::Up => self.move_focus(false),
            KeyCode::Enter => return self.submit(),
            KeyCode::Left | KeyCode::Right => {
                let forward = k.code == KeyCode::Right;
                match self.current() {
                    Id::Provider => {
                        self.provider.cycle(forward);
                        return self.provider_changed();
                    }
                    Id::Region => {
                        self.region.cycle(forward);
                        self.refresh_offers();
                    }
                    Id::Offer => self.offer.cycle(forward),
                    Id::Image => self.image.cycle(forward),
                    _ => {
                        self.text_mut().input(k);
                    }
                }
            }
            _ => {
                if matches!(self.current(), Id::Name | Id::Cluster | Id::Role)
                    && !(self.current() == Id::Name && self.editing.is_some())
                {
                    self.text_mut().input(k);
                    self.errors.retain(|(id, _)| *id != ORDER[self.focus]);
                }
            }
        }
        FormOutcome::Editing
    }

    /// Text pasted into the focused text field.
    pub fn paste(&mut self, s: &str) {
        if matches!(self.current(), Id::Name | Id::Cluster | Id::Role) {
            self.text_mut().insert_str(s);
        }
    }

    fn provider_changed(&mut self) -> FormOutcome {
        self.catalog = None;
        self.region = Choice::default();
        self.offer = Choice::default();
        self.image = Choice::default();
        match self.provider.value() {
            Some(p) => FormOutcome::NeedCatalog(p.to_string()),
            None => FormOutcome::Editing,
        }
    }

    fn text_mut(&mut self) -> &mut TextArea<'static> {
        match self.current() {
            Id::Cluster => &mut self.cluster,
            Id::Role => &mut self.role,
            _ => &mut self.name,
        }
    }

    fn move_focus(&mut self, forward: bool) {
        let n = ORDER.len();
        self.focus = if forward {
            (self.focus + 1) % n
        } else {
            (self.focus + n - 1) % n
        };
    }

    /// Validate; on success the request to send.
    fn submit(&mut self) -> FormOutcome {
        self.errors.clear();
        // Short messages: they sit beside the field.
        let rule = "1-63 of a-z, 0-9 and -";
        let name = value(&self.name);
        if name.is_empty() {
            self.errors.push((Id::Name, "required".into()));
        } else if validate_name("node", &name).is_err() {
            self.errors.push((Id::Name, rule.into()));
        }
        let cluster = value(&self.cluster);
        if validate_name("cluster", &cluster).is_err() {
            self.errors.push((Id::Cluster, rule.into()));
        }
        let role = value(&self.role);
        if role.is_empty() {
            self.errors.push((Id::Role, "a role is required".into()));
        }
        if self.provider.value().is_none() {
            self.errors.push((
                Id::Provider,
                "no provider is configured; configure one first".into(),
            ));
        }
        if self.catalog.is_none() {
            self.errors
                .push((Id::Region, "the catalog is still loading".into()));
        }
        for (id, choice) in [
            (Id::Region, &self.region),
            (Id::Offer, &self.offer),
            (Id::Image, &self.image),
        ] {
            if self.catalog.is_some() && choice.value().is_none() {
                self.errors
                    .push((id, format!("no {} is available", label(id))));
            }
        }
        if let Some((id, _)) = self.errors.first() {
            self.focus = ORDER.iter().position(|o| o == id).unwrap_or(0);
            return FormOutcome::Editing;
        }
        FormOutcome::Submit(NodeRequest {
            name,
            provider: self.provider.value().unwrap_or_default().to_string(),
            cluster: Some(cluster),
            role: Some(role),
            region: self.region.value().map(String::from),
            offer: self.offer.value().map(String::from),
            image: self.image.value().map(String::from),
            boot_mode: None,
            intent: if self.editing.is_some() {
                NodeIntent::Set
            } else {
                NodeIntent::Add
            },
        })
    }

    pub fn render(&self, theme: &Theme, area: Rect, buf: &mut Buffer) {
        let w = area.width.min(100);
        let h = (ORDER.len() as u16 * 2 + 4).min(area.height);
        let box_ = Rect::new(
            area.x + (area.width - w) / 2,
            area.y + (area.height - h) / 2,
            w,
            h,
        );
        Clear.render(box_, buf);
        let title = match &self.editing {
            Some(n) => format!(" edit node {n} "),
            None => " add a node to the plan ".to_string(),
        };
        let block = Block::default()
            .borders(Borders::ALL)
            .border_style(theme.style("border.focused"))
            .style(theme.style("dialog"))
            .title(Span::styled(title, theme.style("title")));
        let inner = block.inner(box_);
        block.render(box_, buf);
        for (i, id) in ORDER.iter().enumerate() {
            let y = inner.y + i as u16 * 2;
            if y >= inner.bottom() {
                break;
            }
            let focused = i == self.focus;
            let label_style = if focused {
                theme.style("help.key")
            } else {
                theme.style("text.dim")
            };
            Line::from(Span::styled(format!("{:>9} ", label(*id)), label_style))
                .render(Rect::new(inner.x, y, 10, 1), buf);
            let field = Rect::new(inner.x + 10, y, 44.min(inner.width.saturating_sub(10)), 1);
            match id {
                Id::Name | Id::Cluster | Id::Role => {
                    let t = match id {
                        Id::Name => &self.name,
                        Id::Cluster => &self.cluster,
                        _ => &self.role,
                    };
                    let mut t = t.clone();
                    t.set_style(theme.style("input"));
                    if !focused || (*id == Id::Name && self.editing.is_some()) {
                        t.set_cursor_style(theme.style("input"));
                    }
                    t.set_cursor_line_style(ratatui::style::Style::default());
                    t.render(field, buf);
                }
                _ => {
                    let c = match id {
                        Id::Provider => &self.provider,
                        Id::Region => &self.region,
                        Id::Offer => &self.offer,
                        _ => &self.image,
                    };
                    let shown = match c.options.get(c.selected) {
                        Some((_, l)) => format!("‹ {l} ›"),
                        None if self.catalog.is_none() && *id != Id::Provider => {
                            "loading the catalog…".to_string()
                        }
                        None => "none available".to_string(),
                    };
                    Line::from(Span::styled(
                        shown,
                        if focused {
                            theme.style("dialog.button.focused")
                        } else {
                            theme.style("input")
                        },
                    ))
                    .render(field, buf);
                }
            }
            if let Some((_, e)) = self.errors.iter().find(|(e_id, _)| e_id == id) {
                let x = field.right() + 1;
                if x < inner.right() {
                    Line::from(Span::styled(e.clone(), theme.style("input.error")))
                        .render(Rect::new(x, y, inner.right() - x, 1), buf);
                }
            }
        }
        let help =
            "Tab/↑↓ fields · ←→ choices · Enter adds to the plan (apply to create) · Esc cancels";
        if inner.height > 0 {
            Line::from(Span::styled(help, theme.style("text.dim")))
                .render(Rect::new(inner.x, inner.bottom() - 1, inner.width, 1), buf);
        }
    }
}
