//! Drawing: the layout, the chrome (header, tabs, status, footer) and the overlays.
//! Drawing reads the snapshot and view state and changes nothing (`&self` throughout); the
//! footer and the help overlay are generated from the command table.

use ratatui::buffer::Buffer;
use ratatui::layout::{Position, Rect};
use ratatui::style::Modifier;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, Paragraph, Widget, Wrap};

use super::layout::too_small;
use super::{App, Confirm, Focus, MIN_HEIGHT, MIN_WIDTH, Overlay, Pending};
use crate::core::oplog::{OpEntry, OpKind};
use crate::engine::actors::System;
use crate::engine::snapshot::LockState;
use crate::providers::HealthReading;
use crate::views::keymap::offer;
use crate::views::lists::{Tab, render_nodes, render_sync};
use crate::views::plain::{apply_line, clean};

fn hms(ts_ms: u64) -> String {
    let s = (ts_ms / 1000) % 86_400;
    format!("{:02}:{:02}:{:02}", s / 3600, (s / 60) % 60, s % 60)
}

pub(super) fn centered(area: Rect, w: u16, h: u16) -> Rect {
    let w = w.min(area.width);
    let h = h.min(area.height);
    Rect::new(
        area.x + (area.width - w) / 2,
        area.y + (area.height - h) / 2,
        w,
        h,
    )
}

/// Changes the operator has to make by hand, one per line (only the lines that fit).
fn render_tasks(
    tasks: &[String],
    theme: &crate::views::theme::Theme,
    area: Rect,
    buf: &mut Buffer,
) {
    let block = Block::default()
        .borders(Borders::ALL)
        .border_style(theme.style("border"))
        .title(Span::styled(
            format!(
                " operator tasks {}: Legion does not manage this provider's firewall; do these on the hosts ",
                tasks.len()
            ),
            theme.style("status.warn"),
        ));
    let inner = block.inner(area);
    block.render(area, buf);
    let lines: Vec<Line> = tasks
        .iter()
        .take(inner.height as usize)
        .map(|t| Line::from(format!("• {}", clean(t))))
        .collect();
    Paragraph::new(lines).render(inner, buf);
}

impl App {
    /// Draw everything; returns where the terminal cursor goes (an input field), if any.
    /// Takes `&self`: whatever the frame implies for state was settled in `handle`.
    pub fn render(&self, area: Rect, buf: &mut Buffer) -> Option<Position> {
        if too_small(area) {
            let msg = format!(
                "terminal too small: {}x{} (Legion needs {MIN_WIDTH}x{MIN_HEIGHT})",
                area.width, area.height
            );
            Paragraph::new(msg)
                .wrap(Wrap { trim: true })
                .style(self.opts.theme.style("status.warn"))
                .render(area, buf);
            return None;
        }
        if self.locked() {
            return self.render_unlock(area, buf);
        }
        if self.shells.focused() {
            return self.render_pane(area, buf);
        }
        let a = self.areas(area);
        self.render_header(a.header, buf);
        self.render_tabs(a.tabs, buf);
        let snap = &self.snap;
        let focused = self.focus == Focus::Table;
        let theme = &self.opts.theme;
        match self.tab {
            Tab::Nodes => render_nodes(&self.lists[0], snap, theme, focused, a.table, buf),
            Tab::Firewalls => {
                render_sync(
                    Tab::Firewalls,
                    &self.lists[2],
                    &snap.firewalls,
                    theme,
                    focused,
                    a.table,
                    buf,
                );
                if a.tasks.height > 0 {
                    render_tasks(self.firewall_tasks(), theme, a.tasks, buf);
                }
            }
            tab => {
                let rows = if tab == Tab::Zones {
                    &snap.zones
                } else {
                    &snap.domains
                };
                render_sync(
                    tab,
                    &self.lists[tab.index()],
                    rows,
                    theme,
                    focused,
                    a.table,
                    buf,
                )
            }
        }
        if a.log.height > 0 {
            self.render_log(a.log, buf);
        }
        let cursor = self.render_status(a.status, buf);
        self.render_footer(a.footer, buf);
        match &self.overlay {
            Overlay::Help => self.render_help(area, buf),
            Overlay::Details => self.render_details(area, buf),
            Overlay::Confirm(c) => return self.render_confirm(c, area, buf),
            Overlay::Plan(p) => self.render_plan(p, area, buf),
            _ => {}
        }
        if let Some(f) = &self.form {
            f.render(&self.opts.theme, area, buf);
            return None;
        }
        if let Some(f) = &self.fields {
            f.render(&self.opts.theme, area, buf);
            return None;
        }
        cursor
    }

    fn render_unlock(&self, area: Rect, buf: &mut Buffer) -> Option<Position> {
        let t = &self.opts.theme;
        let box_ = centered(area, 64, 9);
        Clear.render(box_, buf);
        let block = Block::default()
            .borders(Borders::ALL)
            .border_style(t.style("border.focused"))
            .title(Span::styled(" Legion ", t.style("title")));
        let inner = block.inner(box_);
        block.render(box_, buf);
        let mut lines = vec![Line::from(Span::styled(
            format!("home {}", clean(&self.snap.home)),
            t.style("text.dim"),
        ))];
        if let Some(d) = &self.opts.demo {
            lines.push(Line::from(Span::styled(d.clone(), t.style("header.demo"))));
        }
        if self.snap.lock == LockState::Uninitialized {
            lines.push(Line::from(""));
            lines.push(Line::from("No Legion state here yet."));
            lines.push(Line::from(
                "Create it with `legion config init`, or run `legion demo`.",
            ));
            lines.push(Line::from(Span::styled("q quits", t.style("text.dim"))));
            Paragraph::new(lines).render(inner, buf);
            return None;
        }
        lines.push(Line::from(""));
        let masked = "•".repeat(self.password.expose().chars().count());
        lines.push(Line::from(vec![
            Span::styled("password: ", t.style("text")),
            Span::styled(masked.clone(), t.style("input")),
        ]));
        lines.push(Line::from(""));
        match &self.status {
            Some((false, msg)) => lines.push(Line::from(Span::styled(
                msg.clone(),
                t.style("status.error"),
            ))),
            Some((true, msg)) => {
                lines.push(Line::from(Span::styled(msg.clone(), t.style("text.dim"))))
            }
            None => lines.push(Line::from(Span::styled(
                "Enter unlocks · Esc quits",
                t.style("text.dim"),
            ))),
        }
        let cursor_row = inner.y + lines.len() as u16 - 3;
        Paragraph::new(lines).render(inner, buf);
        Some(Position::new(
            inner.x + 10 + masked.chars().count() as u16,
            cursor_row,
        ))
    }

    pub(super) fn render_header(&self, area: Rect, buf: &mut Buffer) {
        let t = &self.opts.theme;
        let mut spans = vec![Span::styled(
            " Legion ",
            t.style("title").add_modifier(Modifier::BOLD),
        )];
        if self.opts.demo.is_some() {
            spans.push(Span::styled(" DEMO ", t.style("header.demo")));
        }
        if let Some(a) = &self.opts.attached {
            spans.push(Span::styled(
                format!(" {} ", clean(a)),
                t.style("header.demo"),
            ));
        }
        spans.push(Span::styled(
            format!(" {} ", clean(&self.snap.home)),
            t.style("text.dim"),
        ));
        spans.push(Span::styled(
            match self.snap.lock {
                LockState::Unlocked => "unlocked ",
                LockState::Locked => "locked ",
                LockState::Uninitialized => "no state ",
            },
            t.style("text"),
        ));
        if self.opts.readonly {
            spans.push(Span::styled("readonly ", t.style("status.warn")));
        }
        for p in &self.snap.providers {
            let key = format!("provider.{}", p.health);
            spans.push(Span::styled(
                format!("{}:{} ", p.id, p.health),
                t.style(&key),
            ));
        }
        spans.push(Span::styled(apply_line(&self.snap.apply), t.style("text")));
        // What the next apply would do ("3 to create, 1 to change, 2 unknown").
        let changes = &self.snap.changes;
        if !changes.is_empty() {
            spans.push(Span::styled(
                format!("  plan: {changes}"),
                t.style(if changes.blocked > 0 {
                    "status.error"
                } else {
                    "status.warn"
                }),
            ));
        }
        Line::from(spans).style(t.style("header")).render(area, buf);
    }

    fn render_tabs(&self, area: Rect, buf: &mut Buffer) {
        let t = &self.opts.theme;
        let mut spans = Vec::new();
        for (i, tab) in Tab::ALL.iter().enumerate() {
            let style = if *tab == self.tab {
                t.style("tab.active")
            } else {
                t.style("tab")
            };
            spans.push(Span::styled(
                format!(" {} {} ({}) ", i + 1, tab.title(), tab.len(&self.snap)),
                style,
            ));
        }
        if !self.filter.is_empty() {
            spans.push(Span::styled(
                format!("  /{}", clean(&self.filter)),
                t.style("status.warn"),
            ));
        }
        spans.extend(self.shell_tab_spans());
        Line::from(spans).render(area, buf);
    }

    pub(super) fn render_status(&self, area: Rect, buf: &mut Buffer) -> Option<Position> {
        let t = &self.opts.theme;
        match &self.overlay {
            Overlay::Command(line) => {
                Line::from(vec![
                    Span::styled(":", t.style("help.key")),
                    Span::raw(clean(line)),
                ])
                .render(area, buf);
                return Some(Position::new(
                    area.x + 1 + line.chars().count() as u16,
                    area.y,
                ));
            }
            Overlay::Filter => {
                let f = if self.focus == Focus::Log {
                    &self.log.filter
                } else {
                    &self.filter
                };
                let label = if self.focus == Focus::Log {
                    "log /"
                } else {
                    "/"
                };
                Line::from(vec![
                    Span::styled(label, t.style("help.key")),
                    Span::raw(clean(f)),
                ])
                .render(area, buf);
                return Some(Position::new(
                    area.x + label.len() as u16 + f.chars().count() as u16,
                    area.y,
                ));
            }
            _ => {}
        }
        let mut spans = Vec::new();
        if let Some((ok, msg)) = &self.status {
            let style = if *ok {
                t.style("text")
            } else {
                t.style("status.error")
            };
            spans.push(Span::styled(msg.clone(), style));
        }
        // A provider holding calls back (rate limited) says so for as long as it lasts.
        for p in &self.snap.providers {
            if let Some(w) = &p.waiting {
                if !spans.is_empty() {
                    spans.push(Span::raw(" · "));
                }
                spans.push(Span::styled(
                    clean(&w.until_line(&p.display)),
                    t.style("status.warn"),
                ));
            }
        }
        Line::from(spans).render(area, buf);
        None
    }

    pub(super) fn render_footer(&self, area: Rect, buf: &mut Buffer) {
        let t = &self.opts.theme;
        let mut spans = Vec::new();
        for cmd in offer::footer(&self.footer_context()) {
            if let Some(k) = self.opts.keymap.first_key(cmd) {
                spans.push(Span::styled(format!(" {k}"), t.style("footer.key")));
                spans.push(Span::styled(
                    format!(" {} ", cmd.info().label),
                    t.style("footer"),
                ));
            }
        }
        Line::from(spans).style(t.style("footer")).render(area, buf);
    }

    fn log_visible(&self) -> Vec<&OpEntry> {
        let node = self.selected_node().map(|n| format!("node/{}", n.name));
        let needle = self.log.filter.to_lowercase();
        self.log
            .lines
            .iter()
            .map(|e| e.as_ref())
            .filter(|e| !self.log.node_only || node.is_none() || e.resource == node)
            .filter(|e| needle.is_empty() || e.message.to_lowercase().contains(&needle))
            .collect()
    }

    fn render_log(&self, area: Rect, buf: &mut Buffer) {
        if self.log.tail.is_some() {
            return self.render_tail(area, buf);
        }
        let t = &self.opts.theme;
        let mut title = String::from(" Operation log ");
        if self.log.scroll > 0 {
            title.push_str(&format!(
                "· paused ({} newer) — End/F follows ",
                self.log.scroll
            ));
        } else {
            title.push_str("· following ");
        }
        if self.log.node_only
            && let Some(n) = self.selected_node()
        {
            title.push_str(&format!("· node {} ", n.name));
        }
        if !self.log.filter.is_empty() {
            title.push_str(&format!("· /{} ", self.log.filter));
        }
        let block = Block::default()
            .borders(Borders::ALL)
            .border_style(t.style(if self.focus == Focus::Log {
                "border.focused"
            } else {
                "border"
            }))
            .title(Span::styled(clean(&title), t.style("title")));
        let inner = block.inner(area);
        block.render(area, buf);
        let lines = self.log_visible();
        let h = inner.height as usize;
        let end = lines.len().saturating_sub(self.log.scroll.min(lines.len()));
        let start = end.saturating_sub(h);
        for (row, e) in lines[start..end].iter().enumerate() {
            let key = match &e.kind {
                OpKind::ProviderWrite { .. } => "log.write",
                OpKind::Transition { .. } => "log.transition",
                OpKind::Action { .. } => "log.action",
                OpKind::Warn => "log.warn",
                _ => "log.info",
            };
            let line = Line::from(vec![
                Span::styled(format!("{} ", hms(e.ts_ms)), t.style("text.dim")),
                Span::styled(clean(&e.message), t.style(key)),
            ]);
            line.render(
                Rect::new(inner.x, inner.y + row as u16, inner.width, 1),
                buf,
            );
        }
    }

    /// The log panel following a node: only the rows that fit are laid out.
    fn render_tail(&self, area: Rect, buf: &mut Buffer) {
        let t = &self.opts.theme;
        let mut title = self.tail_title().unwrap_or_default();
        if !self.log.filter.is_empty() {
            title.push_str(&format!("· /{} ", self.log.filter));
        }
        let block = Block::default()
            .borders(Borders::ALL)
            .border_style(t.style(if self.focus == Focus::Log {
                "border.focused"
            } else {
                "border"
            }))
            .title(Span::styled(clean(&title), t.style("title")));
        let inner = block.inner(area);
        block.render(area, buf);
        let lines = self.tail_visible().unwrap_or_default();
        let h = inner.height as usize;
        let end = lines.len().saturating_sub(self.log.scroll.min(lines.len()));
        let start = end.saturating_sub(h);
        for (row, line) in lines[start..end].iter().enumerate() {
            Line::from(Span::styled(*line, t.style("log.info"))).render(
                Rect::new(inner.x, inner.y + row as u16, inner.width, 1),
                buf,
            );
        }
    }

    fn render_help(&self, area: Rect, buf: &mut Buffer) {
        let t = &self.opts.theme;
        let box_ = centered(area, 72, area.height.saturating_sub(4));
        Clear.render(box_, buf);
        // The scroll and close keys are the table's (overlay layer); the title names the
        // defaults, as the tmux tests and people look for it.
        let title = " Keys (j/k scroll, Esc closes) ";
        let block = Block::default()
            .borders(Borders::ALL)
            .border_style(t.style("border.focused"))
            .title(Span::styled(title, t.style("title")));
        let inner = block.inner(box_);
        block.render(box_, buf);
        let mut lines = Vec::new();
        for cmd in offer::help(self.opts.readonly) {
            let keys: Vec<String> = self
                .opts
                .keymap
                .keys(cmd)
                .iter()
                .map(|k| k.to_string())
                .collect();
            if keys.is_empty() {
                continue;
            }
            lines.push(Line::from(vec![
                Span::styled(format!("{:<14}", keys.join(" ")), t.style("help.key")),
                Span::styled(cmd.info().description.to_string(), t.style("text")),
            ]));
        }
        lines.push(Line::from(""));
        lines.push(Line::from(Span::styled(
            offer::palette_line(self.opts.readonly),
            t.style("text.dim"),
        )));
        // Rows after wrapping (word wrap can take a row more than the width says).
        let width = usize::from(inner.width.max(1));
        let rows: usize = lines
            .iter()
            .map(|l| l.width().div_ceil(width).max(1) + usize::from(l.width() > width))
            .sum();
        let max = u16::try_from(rows)
            .unwrap_or(u16::MAX)
            .saturating_sub(inner.height);
        Paragraph::new(lines)
            .wrap(Wrap { trim: false })
            .scroll((self.help_scroll.min(max), 0))
            .render(inner, buf);
    }

    fn render_details(&self, area: Rect, buf: &mut Buffer) {
        let t = &self.opts.theme;
        let box_ = centered(
            area,
            area.width.saturating_sub(8).min(110),
            area.height.saturating_sub(4),
        );
        Clear.render(box_, buf);
        let mut lines: Vec<Line> = Vec::new();
        let kv = |k: &str, v: String| {
            Line::from(vec![
                Span::styled(format!("{k:<12}"), t.style("text.dim")),
                Span::styled(clean(&v), t.style("text")),
            ])
        };
        let (title, resource) = match self.tab {
            Tab::Nodes => {
                let Some(n) = self.selected_node() else {
                    return;
                };
                lines.push(kv("status", stale_was(&n.status.to_string(), &n.status)));
                lines.push(kv("machine", n.machine.to_string()));
                let detail = |s: &str| {
                    if s.is_empty() {
                        String::new()
                    } else {
                        format!(" ({s})")
                    }
                };
                let system = match &n.system {
                    System::Degraded(d) | System::Unreachable(d) => {
                        format!("{}{}", n.system, detail(d))
                    }
                    s => s.to_string(),
                };
                lines.push(kv("system", system));
                let health = match &n.health {
                    Some(HealthReading::Healthy) => "healthy".to_string(),
                    Some(HealthReading::Degraded(d)) => format!("degraded{}", detail(d)),
                    Some(HealthReading::Unreachable(d)) => format!("unreachable{}", detail(d)),
                    None => "not checked since the last operation".to_string(),
                };
                lines.push(kv("health", health));
                lines.push(kv(
                    "provider",
                    format!("{} / {} / {} / {}", n.provider, n.region, n.offer, n.image),
                ));
                lines.push(kv("cluster", format!("{} (role {})", n.cluster, n.role)));
                lines.push(kv(
                    "server",
                    n.server_id.clone().unwrap_or_else(|| "-".into()),
                ));
                lines.push(kv(
                    "address",
                    n.address.clone().unwrap_or_else(|| "-".into()),
                ));
                if let Some(op) = &n.operation {
                    lines.push(kv("operation", op.clone()));
                }
                if let Some(w) = &n.waiting {
                    lines.push(kv("waiting", w.clone()));
                }
                if let Some(e) = &n.last_error {
                    lines.push(Line::from(vec![
                        Span::styled(format!("{:<12}", "last error"), t.style("text.dim")),
                        Span::styled(clean(e), t.style("status.error")),
                    ]));
                }
                lines.push(Line::from(""));
                lines.push(Line::from(Span::styled(
                    "planned vs observed",
                    t.style("title"),
                )));
                if n.diffs.is_empty() {
                    lines.push(Line::from(Span::styled(
                        "  no differences",
                        t.style("text.dim"),
                    )));
                }
                for d in &n.diffs {
                    lines.push(kv(
                        &format!("  {}", d.field),
                        format!("planned {} · observed {}", d.planned, d.observed),
                    ));
                }
                if let Some(ex) = &n.execution {
                    lines.push(Line::from(""));
                    lines.push(Line::from(Span::styled(
                        format!("execution #{} {:?}: {:?}", ex.id, ex.kind, ex.status),
                        t.style("title"),
                    )));
                    for p in &ex.phases {
                        let mut s = format!("  {:<24} {:?}", p.phase.to_string(), p.status);
                        if let Some(e) = &p.error {
                            s.push_str(&format!("  {e}"));
                        }
                        lines.push(Line::from(clean(&s)));
                    }
                }
                (format!(" node {} ", n.name), format!("node/{}", n.name))
            }
            tab => {
                let rows = match tab {
                    Tab::Zones => &self.snap.zones,
                    Tab::Firewalls => &self.snap.firewalls,
                    _ => &self.snap.domains,
                };
                let Some(r) = self.lists[tab.index()].selected().and_then(|i| rows.get(i)) else {
                    return;
                };
                lines.push(kv("status", r.status.to_string()));
                if let crate::engine::status::SyncStatus::Stale { was, .. } = &r.status {
                    lines.push(kv("last known", was.to_string()));
                }
                lines.push(kv("provider", r.provider.clone()));
                lines.push(kv("summary", r.summary.clone()));
                lines.push(kv("planned", r.planned.to_string()));
                if let Some(w) = &r.waiting {
                    lines.push(kv("waiting", w.clone()));
                }
                if let Some(e) = &r.last_error {
                    lines.push(kv("last error", e.clone()));
                }
                if let Some(e) = &r.previous_error {
                    lines.push(kv("previous", format!("{e} (resolved since)")));
                }
                for task in &r.tasks {
                    lines.push(kv("operator task", task.clone()));
                }
                let kind = match tab {
                    Tab::Zones => "zone",
                    Tab::Firewalls => "firewall",
                    _ => "domain",
                };
                (format!(" {kind} {} ", r.name), format!("{kind}/{}", r.name))
            }
        };
        lines.push(Line::from(""));
        lines.push(Line::from(Span::styled(
            "recent operations",
            t.style("title"),
        )));
        let recent: Vec<&OpEntry> = self
            .log
            .lines
            .iter()
            .rev()
            .filter(|e| e.resource.as_deref() == Some(resource.as_str()))
            .take(12)
            .map(|e| e.as_ref())
            .collect();
        for e in recent.into_iter().rev() {
            lines.push(Line::from(vec![
                Span::styled(format!("  {} ", hms(e.ts_ms)), t.style("text.dim")),
                Span::raw(clean(&e.message)),
            ]));
        }
        let block = Block::default()
            .borders(Borders::ALL)
            .border_style(t.style("border.focused"))
            .title(Span::styled(clean(&title), t.style("title")));
        Paragraph::new(lines)
            .block(block)
            .wrap(Wrap { trim: false })
            .scroll((self.help_scroll, 0))
            .render(box_, buf);
    }

    fn render_confirm(&self, c: &Confirm, area: Rect, buf: &mut Buffer) -> Option<Position> {
        let t = &self.opts.theme;
        let verb = match &c.pending {
            Pending::Node(a) => a.to_string(),
            Pending::Remove => "remove from the plan".into(),
        };
        let box_ = centered(area, 60, 8);
        Clear.render(box_, buf);
        let block = Block::default()
            .borders(Borders::ALL)
            .border_style(t.style("border.focused"))
            .style(t.style("dialog"))
            .title(Span::styled(
                format!(" {verb} {}? ", clean(&c.target)),
                t.style("title"),
            ));
        let inner = block.inner(box_);
        block.render(box_, buf);
        let mut lines = vec![Line::from(match &c.pending {
            Pending::Node(crate::engine::actors::Action::Reinstall) => {
                "Reinstall resets the server's disk to a fresh image.".to_string()
            }
            Pending::Remove => "The node is torn down by the next apply.".to_string(),
            _ => format!("{verb} the node {}.", clean(&c.target)),
        })];
        lines.push(Line::from(""));
        let cursor = if let Some(typed) = &c.typed {
            lines.push(Line::from(format!(
                "Type the node's name to confirm: {}",
                clean(typed)
            )));
            lines.push(Line::from(Span::styled(
                "Enter confirms · Esc cancels",
                t.style("text.dim"),
            )));
            Some(Position::new(
                inner.x + 33 + typed.chars().count() as u16,
                inner.y + 2,
            ))
        } else {
            let (cancel, ok) = if c.on_ok {
                (t.style("dialog.button"), t.style("dialog.button.focused"))
            } else {
                (t.style("dialog.button.focused"), t.style("dialog.button"))
            };
            lines.push(Line::from(vec![
                Span::styled(" Cancel ", cancel),
                Span::raw("   "),
                Span::styled(format!(" {verb} "), ok),
            ]));
            lines.push(Line::from(Span::styled(
                "Tab switches · Enter chooses · Esc cancels",
                t.style("text.dim"),
            )));
            None
        };
        Paragraph::new(lines).render(inner, buf);
        cursor
    }
}

/// A stale status with what it was before the provider stopped answering.
fn stale_was(label: &str, status: &crate::engine::status::NodeStatus) -> String {
    match status {
        crate::engine::status::NodeStatus::Stale { was, .. } => format!("{label} (was {was})"),
        _ => label.to_string(),
    }
}
