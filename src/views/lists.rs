//! The four resource tables: nodes, DNS zones, firewall sets, domains.
//!
//! Each keeps its own filter result and selection (by name, so it survives snapshot
//! updates) and lays out only the visible rows.

use ratatui::buffer::Buffer;
use ratatui::layout::{Constraint, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Cell, Row, Table, Widget};

use super::plain::clean;
use super::table::Window;
use super::theme::Theme;
use crate::engine::actors::Machine;
use crate::engine::snapshot::{AppSnapshot, NodeRow, SyncRow};
use crate::engine::status::{NodeStatus, SyncStatus};
use crate::providers::ProviderHealth;

/// Which table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tab {
    Nodes,
    Zones,
    Firewalls,
    Domains,
}

impl Tab {
    pub const ALL: [Tab; 4] = [Tab::Nodes, Tab::Zones, Tab::Firewalls, Tab::Domains];

    pub fn title(self) -> &'static str {
        match self {
            Tab::Nodes => "Nodes",
            Tab::Zones => "DNS Zones",
            Tab::Firewalls => "Firewalls",
            Tab::Domains => "Domains",
        }
    }

    pub fn index(self) -> usize {
        Tab::ALL.iter().position(|t| *t == self).unwrap_or(0)
    }

    pub fn len(self, snap: &AppSnapshot) -> usize {
        match self {
            Tab::Nodes => snap.nodes.len(),
            Tab::Zones => snap.zones.len(),
            Tab::Firewalls => snap.firewalls.len(),
            Tab::Domains => snap.domains.len(),
        }
    }
}

/// Filter result and selection of one table.
#[derive(Debug, Default)]
pub struct ListUi {
    pub window: Window,
    /// Indices into the snapshot's rows that pass the filter.
    indices: Vec<usize>,
    selected_name: Option<String>,
    seen: Option<(u64, String)>,
    /// Rows that fit, from the last layout.
    pub height: usize,
}

impl ListUi {
    /// Recompute the filter when the snapshot or the filter changed; keep the selected
    /// row by name.
    pub fn refresh<T>(
        &mut self,
        seq: u64,
        rows: &[T],
        filter: &str,
        name: impl Fn(&T) -> &str,
        matches: impl Fn(&T, &str) -> bool,
    ) {
        let key = (seq, filter.to_string());
        if self.seen.as_ref() == Some(&key) {
            return;
        }
        let needle = filter.to_lowercase();
        self.indices = rows
            .iter()
            .enumerate()
            .filter(|(_, r)| needle.is_empty() || matches(r, &needle))
            .map(|(i, _)| i)
            .collect();
        if let Some(sel) = &self.selected_name
            && let Some(pos) = self.indices.iter().position(|&i| name(&rows[i]) == sel)
        {
            self.window.selected = pos;
        }
        self.window.fit(self.indices.len(), self.height.max(1));
        self.seen = Some(key);
        self.remember(rows, &name);
    }

    fn remember<T>(&mut self, rows: &[T], name: &impl Fn(&T) -> &str) {
        self.selected_name = self
            .indices
            .get(self.window.selected)
            .map(|&i| name(&rows[i]).to_string());
    }

    pub fn len(&self) -> usize {
        self.indices.len()
    }

    /// Index into the snapshot's rows of the selection.
    pub fn selected(&self) -> Option<usize> {
        self.indices.get(self.window.selected).copied()
    }

    /// Select the row called `name`; false when the filter hides it or it does not exist.
    pub fn select_name<T>(&mut self, rows: &[T], name: &str, key: impl Fn(&T) -> &str) -> bool {
        match self.indices.iter().position(|&i| key(&rows[i]) == name) {
            Some(pos) => {
                self.window.selected = pos;
                self.window.fit(self.indices.len(), self.height.max(1));
                self.remember(rows, &key);
                true
            }
            None => false,
        }
    }

    pub fn move_by<T>(&mut self, delta: isize, rows: &[T], name: impl Fn(&T) -> &str) {
        if delta < 0 {
            self.window.up(delta.unsigned_abs());
        } else {
            self.window.down(delta as usize, self.indices.len());
        }
        self.window.fit(self.indices.len(), self.height.max(1));
        self.remember(rows, &name);
    }

    pub fn jump<T>(&mut self, to_end: bool, rows: &[T], name: impl Fn(&T) -> &str) {
        self.window.selected = if to_end {
            self.indices.len().saturating_sub(1)
        } else {
            0
        };
        self.window.fit(self.indices.len(), self.height.max(1));
        self.remember(rows, &name);
    }

    /// The app tells the table how many rows it shows (from the layout, in `handle`), so
    /// paging and the scroll window follow the screen.
    pub fn fit(&mut self, height: usize) {
        self.height = height;
        self.window.fit(self.indices.len(), height.max(1));
    }

    /// Visible row indices into the snapshot, with the position of the selection. A copy
    /// of the window is fitted, so drawing changes nothing even before the first resize.
    fn visible(&self, height: usize) -> (Vec<usize>, Option<usize>) {
        let mut window = self.window;
        window.fit(self.indices.len(), height);
        let range = window.visible(self.indices.len(), height);
        let sel = window
            .selected
            .checked_sub(range.start)
            .filter(|s| *s < range.len());
        (self.indices[range].to_vec(), sel)
    }
}

pub fn node_matches(n: &NodeRow, needle: &str) -> bool {
    let hay = [
        n.name.as_str(),
        n.address.as_deref().unwrap_or(""),
        n.provider.as_str(),
        n.region.as_str(),
    ];
    hay.iter().any(|h| h.to_lowercase().contains(needle))
        || n.status.to_string().contains(needle)
        || n.machine.to_string().contains(needle)
        || n.system.to_string().contains(needle)
}

pub fn sync_matches(r: &SyncRow, needle: &str) -> bool {
    r.name.to_lowercase().contains(needle)
        || r.provider.to_lowercase().contains(needle)
        || r.status.to_string().contains(needle)
}

pub fn machine_key(m: Machine) -> String {
    format!("node.machine.{m}")
}

/// The theme key of a node's STATUS, from the keys the machine and system regions
/// already have (so every theme colours it).
pub fn status_key(s: &NodeStatus) -> String {
    match s {
        NodeStatus::Running => "node.system.ready".into(),
        NodeStatus::RunningDegraded { .. } => "node.system.degraded".into(),
        NodeStatus::RunningUnreachable { .. } => "node.system.unreachable".into(),
        NodeStatus::RunningUnchecked | NodeStatus::Unknown => "node.system.unknown".into(),
        NodeStatus::RunningNotDeployed => "node.system.pending".into(),
        NodeStatus::Stopped => machine_key(Machine::Stopped),
        NodeStatus::Failed { .. } => "node.system.failed".into(),
        NodeStatus::Interrupted { .. } => "node.system.interrupted".into(),
        NodeStatus::Missing => machine_key(Machine::Missing),
        NodeStatus::PendingCreate => machine_key(Machine::Absent),
        NodeStatus::PendingDelete => machine_key(Machine::Deleting),
        NodeStatus::Provisioning => machine_key(Machine::Provisioning),
        NodeStatus::Changing { machine } => machine_key(*machine),
        NodeStatus::Deploying { .. }
        | NodeStatus::Reinstalling { .. }
        | NodeStatus::Working { .. } => "node.system.installing".into(),
        NodeStatus::Stale { .. } => "status.warn".into(),
    }
}

fn sync_key(s: &SyncStatus) -> String {
    match s {
        SyncStatus::Stale { .. } => "status.warn".into(),
        other => format!("sync.{other}"),
    }
}

fn trimmed(s: &str, max: usize) -> String {
    let s = clean(s);
    if s.chars().count() <= max {
        s
    } else {
        let mut t: String = s.chars().take(max.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}

fn frame<'a>(title: String, theme: &Theme, focused: bool) -> Block<'a> {
    Block::default()
        .borders(Borders::ALL)
        .border_style(theme.style(if focused { "border.focused" } else { "border" }))
        .title(Span::styled(title, theme.style("title")))
}

pub fn render_nodes(
    ui: &ListUi,
    snap: &AppSnapshot,
    theme: &Theme,
    focused: bool,
    area: Rect,
    buf: &mut Buffer,
) {
    let block = frame(
        format!(" Nodes {}/{} ", ui.len(), snap.nodes.len()),
        theme,
        focused,
    );
    let inner = block.inner(area);
    block.render(area, buf);
    let height = inner.height.saturating_sub(1) as usize;
    let (rows, sel) = ui.visible(height);
    // Rows of a provider that stops answering say so.
    let troubled: std::collections::HashMap<&str, String> = snap
        .providers
        .iter()
        .filter(|p| p.health != ProviderHealth::Ok)
        .map(|p| {
            (
                p.id.as_str(),
                format!(
                    "provider {}: {}",
                    p.health,
                    p.last_error.as_deref().unwrap_or("no answer")
                ),
            )
        })
        .collect();
    // STATUS is the one state column; machine, system, health and the operation are in
    // the details (enter).
    let header = ["NAME", "PROVIDER", "REGION", "STATUS", "ADDRESS", "NOTE"];
    let body: Vec<Row> = rows
        .iter()
        .enumerate()
        .map(|(pos, &i)| {
            let n = &snap.nodes[i];
            let trouble = troubled.get(n.provider.as_str());
            let note = n
                .last_error
                .as_deref()
                .or(trouble.map(String::as_str))
                .or(n.waiting.as_deref())
                .unwrap_or("");
            let row = Row::new(vec![
                name_cell(&n.name, 24, n.pending, theme),
                match trouble {
                    Some(_) => Cell::from(Span::styled(
                        format!("{}!", trimmed(&n.provider, 9)),
                        theme.style("provider.degraded"),
                    )),
                    None => Cell::from(trimmed(&n.provider, 10)),
                },
                Cell::from(trimmed(&n.region, 12)),
                Cell::from(Span::styled(
                    trimmed(&n.status.to_string(), 34),
                    theme.style(&status_key(&n.status)),
                )),
                Cell::from(trimmed(n.address.as_deref().unwrap_or("-"), 39)),
                Cell::from(Span::styled(
                    trimmed(note, 120),
                    theme.style(if n.last_error.is_some() || trouble.is_some() {
                        "status.error"
                    } else {
                        "text.dim"
                    }),
                )),
            ]);
            select(row, Some(pos) == sel, theme)
        })
        .collect();
    let empty = snap
        .nodes
        .is_empty()
        .then(|| "No nodes planned. Add one with `n`, or from the CLI.".to_string());
    draw_table(
        &header,
        body,
        &[16, 9, 10, 26, 16],
        empty,
        theme,
        inner,
        buf,
    );
}

pub fn render_sync(
    tab: Tab,
    ui: &ListUi,
    rows_all: &[SyncRow],
    theme: &Theme,
    focused: bool,
    area: Rect,
    buf: &mut Buffer,
) {
    let block = frame(
        format!(" {} {}/{} ", tab.title(), ui.len(), rows_all.len()),
        theme,
        focused,
    );
    let inner = block.inner(area);
    block.render(area, buf);
    let height = inner.height.saturating_sub(1) as usize;
    let (rows, sel) = ui.visible(height);
    // A set spread over several clouds lists them all ("hetzner,ovh,scaleway"): the
    // column is as wide as the visible rows need, within bounds.
    let provider_width = rows
        .iter()
        .map(|&i| rows_all[i].provider.chars().count())
        .max()
        .unwrap_or(0)
        .clamp(10, 32);
    let name_col = match tab {
        Tab::Zones => "ZONE",
        Tab::Firewalls => "SET",
        _ => "DOMAIN",
    };
    let summary_col = match tab {
        Tab::Zones => "RECORDS",
        Tab::Firewalls => "RULES / BOUND NODES",
        _ => "DELEGATION",
    };
    let header = [
        name_col,
        "PROVIDER",
        "STATUS",
        summary_col,
        "WAITING / ERROR",
    ];
    let body: Vec<Row> = rows
        .iter()
        .enumerate()
        .map(|(pos, &i)| {
            let r = &rows_all[i];
            let (note, key) = match (&r.last_error, &r.waiting) {
                (Some(e), _) => (e.as_str(), "status.error"),
                (None, Some(w)) => (w.as_str(), "status.warn"),
                _ => ("", "text.dim"),
            };
            let mut state = r.status.to_string();
            if let Some(op) = &r.operation {
                state = format!("{state} ({op})");
            }
            let row = Row::new(vec![
                name_cell(&r.name, 40, r.pending, theme),
                Cell::from(trimmed(&r.provider, provider_width)),
                Cell::from(Span::styled(state, theme.style(&sync_key(&r.status)))),
                Cell::from(trimmed(&r.summary, 40)),
                Cell::from(Span::styled(trimmed(note, 120), theme.style(key))),
            ]);
            select(row, Some(pos) == sel, theme)
        })
        .collect();
    let empty = rows_all
        .is_empty()
        .then(|| format!("No {} planned.", tab.title().to_lowercase()));
    let widths = [28, provider_width as u16, 20, 30];
    draw_table(&header, body, &widths, empty, theme, inner, buf);
}

fn select<'a>(row: Row<'a>, selected: bool, theme: &Theme) -> Row<'a> {
    if selected {
        row.style(theme.style("selection"))
    } else {
        row
    }
}

/// The shared table: a styled header, the visible rows, widths that fit, and a hint
/// when the table has nothing at all.
fn draw_table(
    header: &[&str],
    body: Vec<Row>,
    desired: &[u16],
    empty: Option<String>,
    theme: &Theme,
    inner: Rect,
    buf: &mut Buffer,
) {
    let header = Row::new(header.iter().map(|h| Cell::from(*h))).style(theme.style("header"));
    Table::new(body, fit_widths(desired, inner.width))
        .header(header)
        .column_spacing(1)
        .render(inner, buf);
    if let Some(text) = empty {
        empty_hint(&text, theme, inner, buf);
    }
}

/// Column widths, left to right, each with one space after it; the last column takes
/// what is left. Columns that no longer fit get no width (they are cut from the right,
/// as k9s does). Computed here rather than by the constraint solver so that an
/// over-full row always lays out the same way.
fn fit_widths(desired: &[u16], available: u16) -> Vec<Constraint> {
    let mut left = available;
    let mut out: Vec<Constraint> = desired
        .iter()
        .map(|&w| {
            let take = w.min(left);
            left = left.saturating_sub(take + 1);
            Constraint::Length(take)
        })
        .collect();
    out.push(Constraint::Length(left));
    out
}

fn empty_hint(text: &str, theme: &Theme, area: Rect, buf: &mut Buffer) {
    if area.height < 3 {
        return;
    }
    let at = Rect::new(area.x + 1, area.y + 2, area.width.saturating_sub(2), 1);
    Line::from(Span::styled(text.to_string(), theme.style("text.dim"))).render(at, buf);
}

/// A row's name, then a marker when the next apply would change it (`+` create, `~`
/// update, `±` replace, `-` delete, `?` not observed yet); unmarked rows are unchanged.
/// The marker follows the name so the name keeps its column (and `│name ` still finds
/// the row).
fn name_cell(
    name: &str,
    width: usize,
    pending: Option<crate::engine::changes::ChangeAction>,
    theme: &Theme,
) -> Cell<'static> {
    use crate::engine::changes::ChangeAction;
    let Some(action) = pending else {
        return Cell::from(trimmed(name, width));
    };
    let (mark, key) = match action {
        ChangeAction::Create => ("+", "status.ok"),
        ChangeAction::Update => ("~", "status.warn"),
        ChangeAction::Replace => ("±", "sync.deleting"),
        ChangeAction::Delete => ("-", "sync.deleting"),
        ChangeAction::Unknown => ("?", "text.dim"),
    };
    Cell::from(Line::from(vec![
        Span::raw(trimmed(name, width.saturating_sub(2))),
        Span::raw(" "),
        Span::styled(mark, theme.style(key)),
    ]))
}
