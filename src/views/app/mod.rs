//! The dashboard's app type: routes events to the view in focus and owns the layout.
//!
//! `App::handle` turns an event into view-state changes and [`Effect`]s (engine commands
//! the runner sends without blocking, and sends to shell sessions that never block);
//! `App::render` draws the latest snapshot into a buffer and takes `&self`: every size the
//! layout implies (table pages, a shell pane's rows and columns) is worked out in `handle`
//! from the terminal size a [`UiEvent::Resize`] gives. Neither does I/O, so both are tested
//! with plain values.
//!
//! The files: `event` (what comes in and goes out), `input` (keys, paste and the dialogs),
//! `palette` (the `:` line), `plan` (the plan overlay `a` opens), `commands` (what each command of the table does), `layout`
//! (where things go), `draw`, `shell` (the terminal pane), `direct` (its keys
//! written by the input thread straight to the session) and `tail` (a node's logs).

use std::collections::VecDeque;
use std::sync::Arc;

use ratatui::layout::Rect;

mod commands;
mod direct;
mod draw;
mod event;
mod input;
mod layout;
mod palette;
mod plan;
mod shell;
mod tail;

pub use direct::{DirectInput, DirectPane};
pub use event::{Effect, Failed, SessionError, UiEvent};

use super::fields::FieldsForm;
use super::form::NodeForm;
use super::keymap::{Context, Keymap, Layer};
use super::lists::{ListUi, Tab, node_matches, sync_matches};
use super::plain::clean;
use super::theme::Theme;
use crate::core::oplog::OpEntry;
use crate::core::secret::Secret;
use crate::engine::actors::Action;
use crate::engine::snapshot::{AppSnapshot, LockState, NodeRow, SyncRow};

/// Smallest terminal the dashboard draws in.
pub const MIN_WIDTH: u16 = 60;
pub const MIN_HEIGHT: u16 = 12;
const LOG_CAPACITY: usize = 5_000;

#[derive(Debug, Clone, PartialEq)]
enum Pending {
    Node(Action),
    Remove,
}

#[derive(Debug, Clone)]
struct Confirm {
    pending: Pending,
    target: String,
    /// Focus starts on Cancel.
    on_ok: bool,
    /// Reinstall asks for the node's name.
    typed: Option<String>,
}

#[derive(Debug, Clone)]
enum Overlay {
    None,
    Help,
    Details,
    Confirm(Confirm),
    /// `:` command line.
    Command(String),
    /// `/` filter being typed (table or log).
    Filter,
    /// What an apply would change, with Cancel and Apply (`a`).
    Plan(plan::PlanOverlay),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Focus {
    Table,
    Log,
}

struct LogUi {
    open: bool,
    lines: VecDeque<Arc<OpEntry>>,
    /// Lines up from the newest; 0 follows.
    scroll: usize,
    filter: String,
    node_only: bool,
    height: u16,
    /// Following a node's logs over SSH instead of the operation log.
    tail: Option<tail::NodeTail>,
    tail_seq: u64,
}

pub struct Options {
    pub readonly: bool,
    /// Shown in the header ("DEMO — password kept in …").
    pub demo: Option<String>,
    /// Set when the dashboard runs on the daemon's engine ("daemon pid 42").
    pub attached: Option<String>,
    pub theme: Theme,
    pub keymap: Keymap,
    /// Descriptors of the providers enabled here, for the settings form.
    pub providers: Vec<crate::providers::Descriptor>,
}

pub struct App {
    snap: Arc<AppSnapshot>,
    tab: Tab,
    lists: [ListUi; 4],
    filter: String,
    overlay: Overlay,
    focus: Focus,
    log: LogUi,
    status: Option<(bool, String)>,
    password: Secret,
    unlocking: bool,
    /// The node form, when open (it sits above every other overlay).
    form: Option<Box<NodeForm>>,
    /// A settings or plan-entry form, when open.
    fields: Option<Box<FieldsForm>>,
    /// Lines scrolled in the help overlay (it is taller than small terminals).
    help_scroll: u16,
    /// SSH shell sessions (the terminal pane).
    shells: shell::Shells,
    /// The whole terminal, from the last resize.
    screen: Rect,
    opts: Options,
    pub quit: bool,
}

impl App {
    pub fn new(snap: Arc<AppSnapshot>, opts: Options) -> App {
        let status = opts.demo.clone().map(|d| (true, d)).or_else(|| {
            opts.attached.as_ref().map(|a| {
                (
                    true,
                    format!("attached to the {a}; quitting leaves its engine running"),
                )
            })
        });
        let mut app = App {
            snap,
            tab: Tab::Nodes,
            lists: Default::default(),
            filter: String::new(),
            overlay: Overlay::None,
            focus: Focus::Table,
            log: LogUi {
                open: false,
                lines: VecDeque::new(),
                scroll: 0,
                filter: String::new(),
                node_only: false,
                height: 10,
                tail: None,
                tail_seq: 0,
            },
            status,
            password: Secret::default(),
            unlocking: false,
            form: None,
            fields: None,
            help_scroll: 0,
            shells: Default::default(),
            screen: Rect::default(),
            opts,
            quit: false,
        };
        app.refresh_lists();
        app
    }

    pub fn snapshot(&self) -> &AppSnapshot {
        &self.snap
    }

    /// The terminal size from the last resize.
    pub fn screen(&self) -> Rect {
        self.screen
    }

    pub fn set_theme(&mut self, theme: Theme) {
        self.opts.theme = theme;
    }

    fn locked(&self) -> bool {
        self.snap.lock != LockState::Unlocked
    }

    fn list(&mut self) -> &mut ListUi {
        &mut self.lists[self.tab.index()]
    }

    fn refresh_lists(&mut self) {
        let snap = self.snap.clone();
        let f = self.filter.clone();
        self.lists[0].refresh(snap.seq, &snap.nodes, &f, |n| &n.name, node_matches);
        for (i, rows) in [(1, &snap.zones), (2, &snap.firewalls), (3, &snap.domains)] {
            self.lists[i].refresh(snap.seq, rows, &f, |r: &SyncRow| &r.name, sync_matches);
        }
    }

    fn selected_node(&self) -> Option<&NodeRow> {
        if self.tab != Tab::Nodes {
            return None;
        }
        self.lists[0].selected().map(|i| &self.snap.nodes[i])
    }

    fn say(&mut self, ok: bool, msg: impl Into<String>) {
        self.status = Some((ok, clean(&msg.into())));
    }

    /// Handle one event; returns the engine commands to send.
    pub fn handle(&mut self, ev: UiEvent) -> Vec<Effect> {
        let mut effects = self.route(ev);
        if self.opts.readonly && effects.iter().any(Effect::writes) {
            effects.retain(|e| !e.writes());
            self.say(
                false,
                "not available in --readonly: it would change something",
            );
        }
        self.settle();
        effects
    }

    /// What the event changes.
    fn route(&mut self, ev: UiEvent) -> Vec<Effect> {
        match ev {
            UiEvent::Snapshot(s) => {
                if s.lock == LockState::Unlocked && self.unlocking {
                    self.unlocking = false;
                    self.status = None;
                }
                self.snap = s;
                self.refresh_lists();
                Vec::new()
            }
            UiEvent::Log(e) => {
                if self.log.lines.len() == LOG_CAPACITY {
                    self.log.lines.pop_front();
                }
                self.log.lines.push_back(e);
                if self.log.scroll > 0 {
                    // Paused: keep the view still while new lines arrive.
                    self.log.scroll += 1;
                }
                Vec::new()
            }
            UiEvent::Reply(r) => {
                match r {
                    Ok(m) => self.say(true, m),
                    Err(e) => {
                        self.unlocking = false;
                        self.say(false, e.to_string())
                    }
                }
                Vec::new()
            }
            UiEvent::Theme(t) => {
                self.opts.theme = *t;
                Vec::new()
            }
            UiEvent::Changes(set) => {
                self.plan_loaded(set);
                Vec::new()
            }
            UiEvent::Catalog {
                provider,
                catalog,
                policy,
            } => {
                if let Some(f) = &mut self.form {
                    f.set_catalog(&provider, catalog, policy);
                }
                Vec::new()
            }
            UiEvent::InputClosed(why) => {
                self.say(false, format!("terminal input failed: {why}"));
                self.quit = true;
                vec![Effect::Quit]
            }
            UiEvent::Term(id) => self.shell_woke(id),
            UiEvent::Shell(id, started) => self.shell_started(id, started),
            UiEvent::TailWoke(id) => self.tail_woke(id),
            UiEvent::Tail(id, started) => self.tail_started(id, started),
            UiEvent::Resize { width, height } => {
                self.screen = Rect::new(0, 0, width, height);
                Vec::new()
            }
            UiEvent::Paste(text) => {
                self.paste(&text);
                Vec::new()
            }
            UiEvent::Key(k) => self.key(k),
        }
    }

    /// What follows from any change, so drawing has nothing left to decide: the table's
    /// scroll window fits the rows it will get, details of a row that went away close, and
    /// the focused shell pane learns its size.
    fn settle(&mut self) {
        if let Some(rows) = self.table_rows() {
            let i = self.tab.index();
            self.lists[i].fit(rows);
        }
        if matches!(self.overlay, Overlay::Details) && !self.current_row_exists() {
            self.overlay = Overlay::None;
        }
        self.resize_pane();
    }

    /// The layer that has the keyboard.
    fn layer(&self) -> Layer {
        if self.shells.focused() {
            self.screen_layer()
        } else if matches!(self.overlay, Overlay::Help | Overlay::Details) {
            Layer::Overlay
        } else if matches!(self.overlay, Overlay::Plan(_)) {
            Layer::Plan
        } else {
            self.screen_layer()
        }
    }

    /// The layer drawn full-screen, under any overlay: the footer is that layer's.
    fn screen_layer(&self) -> Layer {
        if self.shells.focused() {
            Layer::Pane
        } else if self.focus == Focus::Log && self.log.open {
            Layer::Log
        } else {
            Layer::Table
        }
    }

    /// What the footer offers: the screen's layer, even under an overlay.
    fn footer_context(&self) -> Context<'_> {
        Context {
            layer: self.screen_layer(),
            ..self.context()
        }
    }

    /// What the command table's availability looks at.
    fn context(&self) -> Context<'_> {
        Context {
            readonly: self.opts.readonly,
            view: self.tab,
            layer: self.layer(),
            node: self.selected_node(),
        }
    }
}
