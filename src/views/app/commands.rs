//! What each command of the table does to the app, once the table says it is available.

use super::{App, Confirm, Effect, Focus, Overlay, Pending};
use crate::engine::actors::Action;
use crate::engine::snapshot::AppSnapshot;
use crate::views::fields::FieldsForm;
use crate::views::form::NodeForm;
use crate::views::keymap::Command;
use crate::views::lists::Tab;

impl App {
    /// Run a command of the table, if it is available here; else say why.
    pub(super) fn command(&mut self, cmd: Command) -> Vec<Effect> {
        if let Err(why) = cmd.available(&self.context()) {
            self.say(false, why.to_string());
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
            Command::Apply => return self.open_plan(),
            // Their keys work only while the plan overlay has the keyboard (`plan_key`).
            Command::PlanApply
            | Command::PlanCancel
            | Command::PlanChoose
            | Command::PlanSwitch => {}
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
            // Typed at the `:` line with their words; see `palette`.
            Command::Import | Command::Record | Command::Provider | Command::Theme => {}
        }
        Vec::new()
    }

    pub(super) fn open_form(&mut self, edit: bool) -> Vec<Effect> {
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
            (Tab::Firewalls, true) => {
                let current = self.snap.management_sources.join(", ");
                self.fields = Some(Box::new(FieldsForm::management_sources(&current)));
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

    pub(super) fn no_node(&mut self, what: &str) -> Vec<Effect> {
        self.say(false, format!("{what}: select a node first (Nodes view)"));
        Vec::new()
    }

    pub(super) fn current_row_exists(&self) -> bool {
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
    pub(super) fn log_len(&self) -> usize {
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
