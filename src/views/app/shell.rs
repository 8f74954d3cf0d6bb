//! The terminal pane in the app: SSH shell sessions as tabs, which one has focus, zoom,
//! and drawing the latest frame a session published.
//!
//! The sessions run on their own threads ([`crate::views::term::session`]); the app only
//! holds their handles: it sends encoded keys, pastes, resizes and scroll requests (channel
//! sends that never block) and takes frames when a session's wake-up arrives. It never
//! reads a socket and never feeds an emulator. Resizes are sent while handling events (a
//! terminal resize, zoom, focus), never while drawing.

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::buffer::Buffer;
use ratatui::layout::{Constraint, Layout, Position, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::Widget;

use super::{App, Effect, SessionError};
use crate::views::keymap::{Command, Layer, offer};
use crate::views::plain::clean;
use crate::views::term::{
    ShellHandle, ShellInput, ShellState, ShellUpdate, TermFrame, TermView, encode_key, encode_paste,
};

/// One session tab: a node's shell. Reconnecting gives it a new session id, so wake-ups
/// from the old thread are ignored.
struct Pane {
    id: u64,
    node: String,
    handle: Option<ShellHandle>,
    /// Input typed before the session thread started.
    queued: Vec<ShellInput>,
    frame: TermFrame,
    state: ShellState,
    /// The size the session was last told (rows, cols).
    size: (u16, u16),
}

impl Pane {
    fn send(&mut self, input: ShellInput) {
        match &self.handle {
            Some(h) => h.send(input),
            None => self.queued.push(input),
        }
    }
}

/// The app's sessions.
#[derive(Default)]
pub(super) struct Shells {
    panes: Vec<Pane>,
    /// The pane shown and receiving keys; `None`: the dashboard has focus.
    active: Option<usize>,
    /// The pane the leave key goes back to from the dashboard.
    last: usize,
    zoom: bool,
    next_id: u64,
}

impl Shells {
    pub(super) fn focused(&self) -> bool {
        self.active.is_some()
    }

    /// The focused pane's session and cursor-key mode, while it is open.
    pub(super) fn focused_open(&self) -> Option<(&ShellHandle, bool)> {
        let pane = self.panes.get(self.active?)?;
        if pane.state != ShellState::Open {
            return None;
        }
        Some((pane.handle.as_ref()?, pane.frame.application_cursor))
    }
}

/// Where the pane goes on a terminal of `screen`: below the header and the tab line and
/// above the status and footer lines, or all of it when zoomed.
fn pane_rect(screen: Rect, zoom: bool) -> Rect {
    if zoom {
        return screen;
    }
    let [_, _, pane, _, _] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Fill(1),
        Constraint::Length(1),
        Constraint::Length(1),
    ])
    .areas(screen);
    pane
}

impl App {
    /// `s` / `:shell NAME`: focus the node's session, or open one.
    pub(super) fn open_shell(&mut self, node: &str) -> Vec<Effect> {
        if let Some(i) = self.shells.panes.iter().position(|p| p.node == node) {
            self.focus_pane(i);
            return Vec::new();
        }
        let (rows, cols) = self.pane_size();
        let id = self.new_session_id();
        self.shells.panes.push(Pane {
            id,
            node: node.to_string(),
            handle: None,
            queued: Vec::new(),
            frame: TermFrame::default(),
            state: ShellState::Connecting,
            size: (rows, cols),
        });
        self.focus_pane(self.shells.panes.len() - 1);
        vec![Effect::OpenShell {
            id,
            node: node.to_string(),
            rows,
            cols,
        }]
    }

    fn new_session_id(&mut self) -> u64 {
        self.shells.next_id += 1;
        self.shells.next_id
    }

    fn pane_size(&self) -> (u16, u16) {
        let r = pane_rect(self.screen, self.shells.zoom);
        (r.height.max(2), r.width.max(2))
    }

    /// Tell the focused session its size when the terminal or the zoom changed it. Runs
    /// after every event, so drawing never has to.
    pub(super) fn resize_pane(&mut self) {
        let Some(i) = self.shells.active else {
            return;
        };
        // No pane is drawn on a terminal too small for the dashboard, nor behind the lock.
        if super::layout::too_small(self.screen) || self.locked() {
            return;
        }
        let wanted = self.pane_size();
        if let Some(pane) = self.shells.panes.get_mut(i)
            && pane.size != wanted
        {
            pane.size = wanted;
            pane.send(ShellInput::Resize(wanted.0, wanted.1));
        }
    }

    fn focus_pane(&mut self, i: usize) {
        self.shells.active = Some(i);
        self.shells.last = i;
    }

    /// Leave, zoom and next-pane keys seen from the dashboard.
    pub(super) fn pane_command(&mut self, cmd: Command) -> Vec<Effect> {
        let n = self.shells.panes.len();
        if n == 0 {
            let key = self
                .opts
                .keymap
                .first_key(Command::Shell)
                .map_or_else(|| ":shell NAME".to_string(), |k| k.to_string());
            self.say(
                false,
                format!("no shell open; {key} opens one on the selected node"),
            );
            return Vec::new();
        }
        let last = self.shells.last.min(n - 1);
        match cmd {
            Command::NextPane => self.focus_pane((last + 1) % n),
            Command::ZoomPane => {
                self.shells.zoom = true;
                self.focus_pane(last);
            }
            _ => self.focus_pane(last),
        }
        Vec::new()
    }

    /// A key while the pane has focus: everything goes to the remote except the leave and
    /// zoom keys and Shift-PageUp/PageDown (scrollback).
    pub(super) fn pane_key(&mut self, k: KeyEvent) -> Vec<Effect> {
        let Some(i) = self.shells.active else {
            return Vec::new();
        };
        let cmd = self.opts.keymap.resolve(&k, Layer::Pane);
        match cmd {
            Some(Command::LeavePane) => {
                self.shells.active = None;
                return Vec::new();
            }
            Some(Command::ZoomPane) => {
                self.shells.zoom = !self.shells.zoom;
                return Vec::new();
            }
            _ => {}
        }
        let (rows, _) = self.pane_size();
        let half = i32::from(rows / 2).max(1);
        let pane = &mut self.shells.panes[i];
        if k.modifiers.contains(KeyModifiers::SHIFT) {
            match k.code {
                KeyCode::PageUp => {
                    pane.send(ShellInput::Scroll(half));
                    return Vec::new();
                }
                KeyCode::PageDown => {
                    pane.send(ShellInput::Scroll(-half));
                    return Vec::new();
                }
                _ => {}
            }
        }
        if let ShellState::Closed(_) = pane.state {
            match k.code {
                KeyCode::Enter if k.modifiers.is_empty() => return self.reconnect(i),
                KeyCode::Char('x') if k.modifiers.is_empty() => self.close_pane(i),
                _ => {}
            }
            return Vec::new();
        }
        if let Some(bytes) = encode_key(k, pane.frame.application_cursor) {
            pane.send(ShellInput::Bytes(bytes));
        }
        Vec::new()
    }

    /// Drop a closed session's tab; the next tab takes the focus, or the dashboard.
    fn close_pane(&mut self, i: usize) {
        let pane = self.shells.panes.remove(i);
        self.shells.active = if self.shells.panes.is_empty() {
            None
        } else {
            Some(i.min(self.shells.panes.len() - 1))
        };
        self.say(true, format!("closed the shell tab of {}", pane.node));
    }

    fn reconnect(&mut self, i: usize) -> Vec<Effect> {
        let id = self.new_session_id();
        let size = self.pane_size();
        let pane = &mut self.shells.panes[i];
        pane.id = id;
        pane.handle = None;
        pane.queued.clear();
        pane.state = ShellState::Connecting;
        pane.size = size;
        vec![Effect::OpenShell {
            id,
            node: pane.node.clone(),
            rows: size.0,
            cols: size.1,
        }]
    }

    /// A paste while the pane has focus, as the remote's paste mode wants it.
    pub(super) fn pane_paste(&mut self, text: &str) {
        if let Some(i) = self.shells.active {
            let pane = &mut self.shells.panes[i];
            if !matches!(pane.state, ShellState::Closed(_)) {
                let bytes = encode_paste(text, pane.frame.bracketed_paste);
                pane.send(ShellInput::Bytes(bytes));
            }
        }
    }

    /// The session thread for `id` started (or could not be started).
    pub(super) fn shell_started(
        &mut self,
        id: u64,
        started: Result<ShellHandle, SessionError>,
    ) -> Vec<Effect> {
        let Some(pane) = self.shells.panes.iter_mut().find(|p| p.id == id) else {
            return Vec::new();
        };
        match started {
            Ok(handle) => {
                for input in pane.queued.drain(..) {
                    handle.send(input);
                }
                pane.handle = Some(handle);
                // The session thread may have published (and woken us for nothing)
                // before its handle got here; a full slot wakes no one again, so take
                // what is there now.
                return self.shell_woke(id);
            }
            Err(e) => {
                let why = e.to_string();
                pane.state = ShellState::Closed(why.clone());
                self.say(false, why);
            }
        }
        Vec::new()
    }

    /// A session's wake-up: take its latest frame.
    pub(super) fn shell_woke(&mut self, id: u64) -> Vec<Effect> {
        let Some(pane) = self.shells.panes.iter_mut().find(|p| p.id == id) else {
            return Vec::new();
        };
        let Some(update) = pane.handle.as_ref().and_then(ShellHandle::take) else {
            return Vec::new();
        };
        self.shell_update(id, update)
    }

    /// Apply a session's update (the frame, the state, a host key to pin).
    pub fn shell_update(&mut self, id: u64, update: ShellUpdate) -> Vec<Effect> {
        let Some(pane) = self.shells.panes.iter_mut().find(|p| p.id == id) else {
            return Vec::new();
        };
        pane.frame = update.frame;
        pane.state = update.state;
        let node = pane.node.clone();
        match update.first_seen_host_key {
            Some(fp) => vec![Effect::PinHostKey(node, fp)],
            None => Vec::new(),
        }
    }

    /// Draw the focused pane: the session tab line, the terminal, status and footer (or
    /// the terminal alone when zoomed).
    pub(super) fn render_pane(&self, area: Rect, buf: &mut Buffer) -> Option<Position> {
        let i = self.shells.active?;
        let zoom = self.shells.zoom;
        let term_area = pane_rect(area, zoom);
        if !zoom {
            let [header, tabs, _, status, footer] = Layout::vertical([
                Constraint::Length(1),
                Constraint::Length(1),
                Constraint::Fill(1),
                Constraint::Length(1),
                Constraint::Length(1),
            ])
            .areas(area);
            self.render_header(header, buf);
            self.render_shell_tabs(tabs, buf);
            self.render_status(status, buf);
            self.render_pane_footer(footer, buf);
        }
        let t = &self.opts.theme;
        let pane = self.shells.panes.get(i)?;
        let cursor = TermView::new(&pane.frame)
            .style(t.style("text"))
            .notice_style(t.style("status.warn"))
            .depth(t.depth())
            .render_with_cursor(term_area, buf);
        match &pane.state {
            ShellState::Closed(why) => {
                let leave = self
                    .opts
                    .keymap
                    .first_key(Command::LeavePane)
                    .map(|k| format!(" · {k} dashboard"))
                    .unwrap_or_default();
                let row = Rect::new(
                    term_area.x,
                    term_area.bottom().saturating_sub(1),
                    term_area.width,
                    1,
                );
                Line::from(Span::styled(
                    format!(
                        " {} — Enter reconnects · x closes the tab{leave} ",
                        clean(why)
                    ),
                    t.style("status.error"),
                ))
                .render(row, buf);
                None
            }
            ShellState::Connecting => None,
            ShellState::Open => cursor,
        }
    }

    /// The session tabs: one per open shell, the focused one highlighted.
    fn render_shell_tabs(&self, area: Rect, buf: &mut Buffer) {
        let t = &self.opts.theme;
        let mut spans = vec![Span::styled(" ssh ", t.style("text.dim"))];
        for (i, p) in self.shells.panes.iter().enumerate() {
            let mark = match p.state {
                ShellState::Connecting => " …",
                ShellState::Open => "",
                ShellState::Closed(_) => " ✕",
            };
            let style = if Some(i) == self.shells.active {
                t.style("tab.active")
            } else {
                t.style("tab")
            };
            spans.push(Span::styled(
                format!(" {} {}{mark} ", i + 1, clean(&p.node)),
                style,
            ));
        }
        if let Some(p) = self.shells.active.and_then(|i| self.shells.panes.get(i))
            && !p.frame.title.is_empty()
        {
            spans.push(Span::styled(
                format!("  {}", clean(&p.frame.title)),
                t.style("text.dim"),
            ));
        }
        Line::from(spans).render(area, buf);
    }

    /// The open sessions, after the view tabs in the dashboard's tab line.
    pub(super) fn shell_tab_spans(&self) -> Vec<Span<'static>> {
        if self.shells.panes.is_empty() {
            return Vec::new();
        }
        let t = &self.opts.theme;
        let names: Vec<String> = self.shells.panes.iter().map(|p| clean(&p.node)).collect();
        let back = self
            .opts
            .keymap
            .first_key(Command::LeavePane)
            .map(|k| format!(" ({k} returns)"))
            .unwrap_or_default();
        vec![Span::styled(
            format!("  │ ssh: {}{back}", names.join(" ")),
            t.style("text.dim"),
        )]
    }

    fn render_pane_footer(&self, area: Rect, buf: &mut Buffer) {
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
        spans.push(Span::styled(" shift-pgup/pgdn", t.style("footer.key")));
        spans.push(Span::styled(" scroll back ", t.style("footer")));
        spans.push(Span::styled(
            " · every other key goes to the remote ",
            t.style("footer"),
        ));
        Line::from(spans).style(t.style("footer")).render(area, buf);
    }
}
