//! The dashboard's app type: routes events to the view in focus and owns the layout.
//!
//! `App::handle` turns an event into view-state changes and [`Effect`]s (engine commands
//! the runner sends without blocking); `App::render` draws the latest snapshot into a
//! buffer. Neither does I/O, so both are tested with plain values.

use std::collections::VecDeque;
use std::sync::Arc;

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

mod draw;
mod shell;
mod tail;

use super::fields::{FieldsForm, FieldsOutcome, Submitted};
use super::form::{FormOutcome, NodeForm};
use super::keymap::{Command, Keymap};
use super::lists::{ListUi, Tab, node_matches, sync_matches};
use super::plain::clean;
use super::theme::Theme;
use crate::engine::actors::Action;
use crate::engine::oplog::OpEntry;
use crate::engine::secret::Secret;
use crate::engine::snapshot::{AppSnapshot, LockState, NodeRow, SyncRow};

/// Smallest terminal the dashboard draws in.
pub const MIN_WIDTH: u16 = 60;
pub const MIN_HEIGHT: u16 = 12;
const LOG_CAPACITY: usize = 5_000;

/// What reaches the UI thread.
pub enum UiEvent {
    Key(KeyEvent),
    Paste(String),
    Resize,
    /// A new snapshot is in the watch channel.
    Snapshot(Arc<AppSnapshot>),
    Log(Arc<OpEntry>),
    /// The outcome of an effect, for the status line.
    Reply(Result<String, String>),
    /// A theme loaded for `:theme`.
    Theme(Box<Theme>),
    /// The terminal input ended (the reader failed): nothing can be typed any more.
    InputClosed(String),
    /// A provider's catalog, for the node form.
    Catalog {
        provider: String,
        catalog: Arc<crate::providers::Catalog>,
        policy: crate::providers::CatalogPolicy,
    },
    /// A shell session has a new frame in its slot.
    Term(u64),
    /// A shell session's thread started, or why it could not.
    Shell(u64, Result<super::term::ShellHandle, String>),
    /// A node log tail has lines in its mailbox.
    TailWoke(u64),
    /// A node log tail's thread started, or why it could not.
    Tail(u64, Result<super::tail::TailHandle, String>),
}

/// An engine command for the runner to send.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    Node(String, Action),
    Apply,
    /// Read every provider now; the outcome comes back in the status line.
    Refresh,
    RemoveNode(String),
    /// Plan (add or change) a node.
    UpsertNode(crate::engine::plan::NodeRequest),
    /// Load a provider's catalog; it comes back as `UiEvent::Catalog`.
    LoadCatalog(String),
    /// Any other plan edit (zones, records, firewall rules).
    EditPlan(crate::engine::plan::PlanEdit),
    /// Store credentials for a provider kind and connect it.
    ConfigureProvider(String, crate::providers::Credentials),
    Unlock(Secret),
    /// Load a theme by name (`:theme NAME`) at this colour depth; the answer comes back
    /// as `UiEvent::Theme`.
    LoadTheme(String, super::theme::ColorDepth),
    /// Fetch a node's SSH access and start session `id` sized rows x cols; the handle comes
    /// back as `UiEvent::Shell`.
    OpenShell {
        id: u64,
        node: String,
        rows: u16,
        cols: u16,
    },
    /// Record the host key a node showed on its first shell connection.
    PinHostKey(String, String),
    /// Import an existing host (manual provider); the report comes back in the status.
    ImportNode(Box<crate::engine::import::ImportRequest>),
    /// Fetch a node's SSH access and start following its logs as tail `id`; the handle
    /// comes back as `UiEvent::Tail`.
    TailNode {
        id: u64,
        node: String,
    },
    Quit,
}

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
    opts: Options,
    pub quit: bool,
}

const COMMANDS: &[&str] = &[
    "start",
    "stop",
    "reboot",
    "retry",
    "reinstall",
    "apply",
    "nodes",
    "zones",
    "firewalls",
    "domains",
    "refresh",
    "logs",
    "tail",
    "shell",
    "import",
    "theme",
    "record",
    "provider",
    "quit",
];

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
            opts,
            quit: false,
        };
        app.refresh_lists();
        app
    }

    pub fn snapshot(&self) -> &AppSnapshot {
        &self.snap
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
                        self.say(false, e)
                    }
                }
                Vec::new()
            }
            UiEvent::Theme(t) => {
                self.opts.theme = *t;
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
            UiEvent::Resize => Vec::new(),
            UiEvent::Paste(text) => {
                self.paste(&text);
                Vec::new()
            }
            UiEvent::Key(k) => self.key(k),
        }
    }

    fn paste(&mut self, text: &str) {
        if self.shells.focused() && !self.locked() {
            self.pane_paste(text);
            return;
        }
        let text: String = text.chars().filter(|c| !c.is_control()).collect();
        if self.locked() {
            self.password = Secret::new(format!("{}{text}", self.password.expose()));
            return;
        }
        if let Some(f) = &mut self.form {
            f.paste(&text);
            return;
        }
        if let Some(f) = &mut self.fields {
            f.paste(&text);
            return;
        }
        match &mut self.overlay {
            Overlay::Command(line) => line.push_str(&text),
            Overlay::Filter => {
                self.filter_mut().push_str(&text);
                self.refresh_lists();
            }
            Overlay::Confirm(Confirm { typed: Some(t), .. }) => t.push_str(&text),
            _ => {}
        }
    }

    fn filter_mut(&mut self) -> &mut String {
        if self.focus == Focus::Log {
            &mut self.log.filter
        } else {
            &mut self.filter
        }
    }

    fn key(&mut self, k: KeyEvent) -> Vec<Effect> {
        if k.kind != crossterm::event::KeyEventKind::Press {
            return Vec::new();
        }
        // The pane takes every key, Ctrl-C included, before the dashboard sees it.
        if self.shells.focused() && !self.locked() {
            return self.pane_key(k);
        }
        if k.modifiers.contains(KeyModifiers::CONTROL) && k.code == KeyCode::Char('c') {
            self.quit = true;
            return vec![Effect::Quit];
        }
        if self.locked() {
            return self.unlock_key(k);
        }
        if let Some(f) = &mut self.fields {
            return match f.key(k) {
                FieldsOutcome::Editing => Vec::new(),
                FieldsOutcome::Cancel => {
                    self.fields = None;
                    Vec::new()
                }
                FieldsOutcome::Submit(s) => {
                    self.fields = None;
                    vec![match s {
                        Submitted::Provider(kind, creds) => Effect::ConfigureProvider(kind, creds),
                        Submitted::Plan(edit) => Effect::EditPlan(edit),
                        Submitted::Import(req) => Effect::ImportNode(req),
                    }]
                }
            };
        }
        if let Some(f) = &mut self.form {
            return match f.key(k) {
                FormOutcome::Editing => Vec::new(),
                FormOutcome::Cancel => {
                    self.form = None;
                    Vec::new()
                }
                FormOutcome::NeedCatalog(p) => vec![Effect::LoadCatalog(p)],
                FormOutcome::Submit(req) => {
                    self.form = None;
                    vec![Effect::UpsertNode(req)]
                }
            };
        }
        match self.overlay.clone() {
            Overlay::Command(line) => return self.command_key(k, line),
            Overlay::Filter => {
                self.filter_key(k);
                return Vec::new();
            }
            Overlay::Confirm(c) => return self.confirm_key(k, c),
            Overlay::Help | Overlay::Details => {
                match self.opts.keymap.resolve(&k) {
                    Some(Command::MoveDown) => {
                        self.help_scroll = self.help_scroll.saturating_add(1)
                    }
                    Some(Command::MoveUp) => self.help_scroll = self.help_scroll.saturating_sub(1),
                    Some(Command::PageDown) => {
                        self.help_scroll = self.help_scroll.saturating_add(10)
                    }
                    Some(Command::PageUp) => self.help_scroll = self.help_scroll.saturating_sub(10),
                    _ if matches!(k.code, KeyCode::Esc | KeyCode::Enter | KeyCode::Char('q'))
                        || self.opts.keymap.resolve(&k) == Some(Command::Help) =>
                    {
                        self.overlay = Overlay::None;
                        self.help_scroll = 0;
                    }
                    _ => {}
                }
                return Vec::new();
            }
            Overlay::None => {}
        }
        match self.opts.keymap.resolve(&k) {
            Some(cmd) => self.command(cmd),
            None => Vec::new(),
        }
    }

    fn unlock_key(&mut self, k: KeyEvent) -> Vec<Effect> {
        if self.snap.lock == LockState::Uninitialized {
            if matches!(k.code, KeyCode::Esc | KeyCode::Char('q')) {
                self.quit = true;
                return vec![Effect::Quit];
            }
            return Vec::new();
        }
        match k.code {
            KeyCode::Enter if !self.password.is_empty() && !self.unlocking => {
                self.unlocking = true;
                self.say(true, "unlocking…");
                vec![Effect::Unlock(std::mem::take(&mut self.password))]
            }
            KeyCode::Backspace => {
                let mut p = self.password.expose().to_string();
                p.pop();
                self.password = Secret::new(p);
                Vec::new()
            }
            KeyCode::Esc => {
                self.quit = true;
                vec![Effect::Quit]
            }
            KeyCode::Char(c) => {
                self.password = Secret::new(format!("{}{c}", self.password.expose()));
                Vec::new()
            }
            _ => Vec::new(),
        }
    }

    fn filter_key(&mut self, k: KeyEvent) {
        match k.code {
            KeyCode::Enter => self.overlay = Overlay::None,
            KeyCode::Esc => {
                self.filter_mut().clear();
                self.overlay = Overlay::None;
            }
            KeyCode::Backspace => {
                self.filter_mut().pop();
            }
            KeyCode::Char(c) => self.filter_mut().push(c),
            _ => {}
        }
        self.refresh_lists();
    }

    fn confirm_key(&mut self, k: KeyEvent, mut c: Confirm) -> Vec<Effect> {
        match k.code {
            KeyCode::Esc => {
                self.overlay = Overlay::None;
                self.say(true, "cancelled");
                return Vec::new();
            }
            KeyCode::Tab | KeyCode::BackTab | KeyCode::Left | KeyCode::Right
                if c.typed.is_none() =>
            {
                c.on_ok = !c.on_ok;
            }
            KeyCode::Char('h') if c.typed.is_none() => c.on_ok = false,
            KeyCode::Char('l') if c.typed.is_none() => c.on_ok = true,
            KeyCode::Backspace => {
                if let Some(t) = &mut c.typed {
                    t.pop();
                }
            }
            KeyCode::Char(ch) => {
                if let Some(t) = &mut c.typed {
                    t.push(ch);
                }
            }
            KeyCode::Enter => {
                self.overlay = Overlay::None;
                let go = match &c.typed {
                    Some(t) => *t == c.target,
                    None => c.on_ok,
                };
                if !go {
                    self.say(
                        true,
                        if c.typed.is_some() {
                            "cancelled: the typed name did not match"
                        } else {
                            "cancelled"
                        },
                    );
                    return Vec::new();
                }
                return vec![match c.pending {
                    Pending::Node(a) => Effect::Node(c.target, a),
                    Pending::Remove => Effect::RemoveNode(c.target),
                }];
            }
            _ => {}
        }
        self.overlay = Overlay::Confirm(c);
        Vec::new()
    }

    fn command_key(&mut self, k: KeyEvent, mut line: String) -> Vec<Effect> {
        match k.code {
            KeyCode::Esc => {
                self.overlay = Overlay::None;
                return Vec::new();
            }
            KeyCode::Tab => {
                let matches: Vec<&str> = COMMANDS
                    .iter()
                    .copied()
                    .filter(|c| c.starts_with(line.trim()))
                    .collect();
                if let [one] = matches.as_slice() {
                    line = format!("{one} ");
                } else if !matches.is_empty() {
                    self.say(true, matches.join("  "));
                }
            }
            KeyCode::Backspace => {
                line.pop();
            }
            KeyCode::Char(c) => line.push(c),
            KeyCode::Enter => {
                self.overlay = Overlay::None;
                return self.run_line(line.trim());
            }
            _ => {}
        }
        self.overlay = Overlay::Command(line);
        Vec::new()
    }

    /// A `:` command.
    fn run_line(&mut self, line: &str) -> Vec<Effect> {
        let mut words = line.split_whitespace();
        let Some(word) = words.next() else {
            return Vec::new();
        };
        // `:stop NAME` acts on NAME: select it first.
        if matches!(
            word,
            "start" | "stop" | "reboot" | "retry" | "reinstall" | "shell"
        ) && let Some(name) = words.next()
        {
            let snap = self.snap.clone();
            self.tab = Tab::Nodes;
            self.focus = Focus::Table;
            if !self.lists[0].select_name(&snap.nodes, name, |n| &n.name) {
                self.say(false, format!("no node {name:?} (is a filter hiding it?)"));
                return Vec::new();
            }
        }
        let cmd = match word {
            "start" => Command::Start,
            "stop" => Command::Stop,
            "reboot" => Command::Reboot,
            "retry" => Command::Retry,
            "reinstall" => Command::Reinstall,
            "apply" => Command::Apply,
            "nodes" => Command::ViewNodes,
            "zones" => Command::ViewZones,
            "firewalls" => Command::ViewFirewalls,
            "domains" => Command::ViewDomains,
            "refresh" => Command::Refresh,
            "logs" => Command::ToggleLog,
            "shell" => Command::Shell,
            "tail" => Command::LogTail,
            "q" | "quit" => Command::Quit,
            "record" | "provider" | "import" if self.opts.readonly => {
                self.say(false, format!("{word}: not available in --readonly"));
                return Vec::new();
            }
            "import" => {
                self.fields = Some(Box::new(FieldsForm::import()));
                return Vec::new();
            }
            "record" => {
                let zone = words
                    .next()
                    .map(String::from)
                    .or_else(|| self.snap.zones.first().map(|z| z.name.clone()))
                    .unwrap_or_default();
                self.fields = Some(Box::new(FieldsForm::record(&zone)));
                return Vec::new();
            }
            "provider" => {
                let wanted = words.next();
                let desc = self
                    .opts
                    .providers
                    .iter()
                    .find(|d| wanted.is_none_or(|w| d.kind == w))
                    .cloned();
                match desc {
                    Some(d) => self.fields = Some(Box::new(FieldsForm::provider(&d))),
                    None => {
                        let kinds: Vec<&str> = self
                            .opts
                            .providers
                            .iter()
                            .map(|d| d.kind.as_str())
                            .collect();
                        self.say(
                            false,
                            format!(
                                "unknown or disabled provider {:?}; enabled here: {}",
                                wanted.unwrap_or(""),
                                kinds.join(", ")
                            ),
                        );
                    }
                }
                return Vec::new();
            }
            "theme" => {
                return match words.next() {
                    Some(name) => {
                        vec![Effect::LoadTheme(name.to_string(), self.opts.theme.depth())]
                    }
                    None => {
                        self.say(false, "usage: :theme NAME");
                        Vec::new()
                    }
                };
            }
            other => {
                self.say(false, format!("unknown command :{other}; Tab completes"));
                return Vec::new();
            }
        };
        self.command(cmd)
    }

    fn command(&mut self, cmd: Command) -> Vec<Effect> {
        let info = cmd.info();
        if info.mutating && self.opts.readonly {
            self.say(
                false,
                format!("{}: not available in --readonly", info.label),
            );
            return Vec::new();
        }
        let snap = self.snap.clone();
        let page = self.list().height.max(1) as isize;
        match cmd {
            Command::MoveUp | Command::MoveDown | Command::PageUp | Command::PageDown => {
                let delta = match cmd {
                    Command::MoveUp => -1,
                    Command::MoveDown => 1,
                    Command::PageUp => -page,
                    _ => page,
                };
                if self.focus == Focus::Log && self.log.open {
                    self.scroll_log(-delta);
                } else {
                    self.move_sel(delta, &snap);
                }
            }
            Command::Top | Command::Bottom => {
                if self.focus == Focus::Log && self.log.open {
                    self.log.scroll = if cmd == Command::Top {
                        self.log_len()
                    } else {
                        0
                    };
                } else {
                    self.jump(cmd == Command::Bottom, &snap);
                }
            }
            Command::NextView | Command::PrevView => {
                let i = self.tab.index() as isize + if cmd == Command::NextView { 1 } else { -1 };
                self.tab = Tab::ALL[i.rem_euclid(4) as usize];
                self.focus = Focus::Table;
            }
            Command::ViewNodes
            | Command::ViewZones
            | Command::ViewFirewalls
            | Command::ViewDomains => {
                self.tab = match cmd {
                    Command::ViewNodes => Tab::Nodes,
                    Command::ViewZones => Tab::Zones,
                    Command::ViewFirewalls => Tab::Firewalls,
                    _ => Tab::Domains,
                };
                self.focus = Focus::Table;
            }
            Command::Details => {
                if self.current_row_exists() {
                    self.overlay = Overlay::Details;
                }
            }
            Command::Back => {
                if self.focus == Focus::Log {
                    self.focus = Focus::Table;
                } else if !self.filter.is_empty() {
                    self.filter.clear();
                    self.refresh_lists();
                }
            }
            Command::Filter => self.overlay = Overlay::Filter,
            Command::Help => self.overlay = Overlay::Help,
            Command::Quit => {
                self.quit = true;
                return vec![Effect::Quit];
            }
            Command::CommandLine => self.overlay = Overlay::Command(String::new()),
            Command::Start | Command::Retry => {
                let action = if cmd == Command::Start {
                    Action::Start
                } else {
                    Action::Retry
                };
                return match self.selected_node() {
                    Some(n) => vec![Effect::Node(n.name.clone(), action)],
                    None => self.no_node(cmd.info().label),
                };
            }
            Command::Stop | Command::Reboot | Command::Reinstall | Command::Remove => {
                let Some(name) = self.selected_node().map(|n| n.name.clone()) else {
                    return self.no_node(cmd.info().label);
                };
                let pending = match cmd {
                    Command::Stop => Pending::Node(Action::Stop),
                    Command::Reboot => Pending::Node(Action::Reboot),
                    Command::Reinstall => Pending::Node(Action::Reinstall),
                    _ => Pending::Remove,
                };
                let typed = (cmd == Command::Reinstall).then(String::new);
                self.overlay = Overlay::Confirm(Confirm {
                    pending,
                    target: name,
                    on_ok: false,
                    typed,
                });
            }
            Command::Apply => return vec![Effect::Apply],
            Command::Refresh => {
                self.say(true, "reading every provider…");
                return vec![Effect::Refresh];
            }
            Command::Add | Command::Edit => return self.open_form(cmd == Command::Edit),
            Command::ToggleLog => {
                self.log.open = !self.log.open;
                self.focus = if self.log.open {
                    Focus::Log
                } else {
                    Focus::Table
                };
            }
            Command::LogGrow => self.log.height = (self.log.height + 2).min(60),
            Command::LogShrink => self.log.height = self.log.height.saturating_sub(2).max(3),
            // End and F follow the log where it has focus, and jump to the last row
            // elsewhere.
            Command::LogFollow if self.focus == Focus::Log && self.log.open => self.log.scroll = 0,
            Command::LogFollow => self.jump(true, &snap),
            Command::LogNodeOnly => self.log.node_only = !self.log.node_only,
            Command::LogTail => return self.toggle_tail(),
            Command::Shell => {
                return match self.selected_node().map(|n| n.name.clone()) {
                    Some(name) => self.open_shell(&name),
                    None => self.no_node(cmd.info().label),
                };
            }
            Command::NextPane | Command::LeavePane | Command::ZoomPane => {
                return self.pane_command(cmd);
            }
        }
        Vec::new()
    }

    fn open_form(&mut self, edit: bool) -> Vec<Effect> {
        let provider = self
            .snap
            .providers
            .first()
            .map(|p| p.id.clone())
            .unwrap_or_default();
        match (self.tab, edit) {
            (Tab::Nodes, _) => {}
            (Tab::Zones, false) => {
                self.fields = Some(Box::new(FieldsForm::zone(&provider)));
                return Vec::new();
            }
            (Tab::Firewalls, false) => {
                let cluster = self.lists[2]
                    .selected()
                    .and_then(|i| self.snap.firewalls.get(i))
                    .map(|f| f.name.clone())
                    .unwrap_or_default();
                self.fields = Some(Box::new(FieldsForm::firewall_rule(&cluster)));
                return Vec::new();
            }
            (Tab::Zones, true) => {
                let zone = self.lists[1]
                    .selected()
                    .and_then(|i| self.snap.zones.get(i))
                    .map(|z| z.name.clone())
                    .unwrap_or_default();
                self.fields = Some(Box::new(FieldsForm::record(&zone)));
                return Vec::new();
            }
            _ => {
                self.say(
                    false,
                    "domains are planned from the CLI for now; in Zones, n adds a zone and e a record",
                );
                return Vec::new();
            }
        }
        let providers: Vec<String> = self.snap.providers.iter().map(|p| p.id.clone()).collect();
        let form = if edit {
            match self.selected_node() {
                Some(n) if n.planned => NodeForm::edit(&providers, n),
                Some(n) => {
                    let msg = format!("{} is not in the plan; nothing to edit", n.name);
                    self.say(false, msg);
                    return Vec::new();
                }
                None => return self.no_node("edit"),
            }
        } else {
            let cluster = self
                .snap
                .nodes
                .first()
                .map(|n| n.cluster.clone())
                .filter(|c| !c.is_empty())
                .unwrap_or_else(|| "default".into());
            NodeForm::new(&providers, &cluster)
        };
        let effects = form
            .provider()
            .map(|p| vec![Effect::LoadCatalog(p.to_string())])
            .unwrap_or_default();
        self.form = Some(Box::new(form));
        effects
    }

    fn no_node(&mut self, what: &str) -> Vec<Effect> {
        self.say(false, format!("{what}: select a node first (Nodes view)"));
        Vec::new()
    }

    fn current_row_exists(&self) -> bool {
        self.lists[self.tab.index()].selected().is_some()
    }

    fn move_sel(&mut self, delta: isize, snap: &AppSnapshot) {
        match self.tab {
            Tab::Nodes => self.lists[0].move_by(delta, &snap.nodes, |n| &n.name),
            Tab::Zones => self.lists[1].move_by(delta, &snap.zones, |r| &r.name),
            Tab::Firewalls => self.lists[2].move_by(delta, &snap.firewalls, |r| &r.name),
            Tab::Domains => self.lists[3].move_by(delta, &snap.domains, |r| &r.name),
        }
    }

    fn jump(&mut self, end: bool, snap: &AppSnapshot) {
        match self.tab {
            Tab::Nodes => self.lists[0].jump(end, &snap.nodes, |n| &n.name),
            Tab::Zones => self.lists[1].jump(end, &snap.zones, |r| &r.name),
            Tab::Firewalls => self.lists[2].jump(end, &snap.firewalls, |r| &r.name),
            Tab::Domains => self.lists[3].jump(end, &snap.domains, |r| &r.name),
        }
    }

    /// Lines in the log panel's current source.
    fn log_len(&self) -> usize {
        match &self.log.tail {
            Some(t) => t.lines.len(),
            None => self.log.lines.len(),
        }
    }

    fn scroll_log(&mut self, delta: isize) {
        let max = self.log_len();
        self.log.scroll = (self.log.scroll as isize + delta).clamp(0, max as isize) as usize;
    }
}
