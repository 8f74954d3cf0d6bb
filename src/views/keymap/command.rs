//! The command table: one row per command with everything the dashboard needs to know
//! about it. Adding a command is one variant, one row here and its effect in the app; the
//! footer, the help overlay, the `:` palette and the keymap file pick it up from the row.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::key::{Key, KeySpec};
use crate::engine::actors::Action;
use crate::views::lists::Tab;

/// Everything the dashboard can be asked to do, from a key or from the `:` line.
///
/// The serde names (snake_case) are the names used in the keymap file and by
/// [`CommandInfo::name`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Command {
    MoveUp,
    MoveDown,
    Top,
    Bottom,
    PageUp,
    PageDown,
    Details,
    Back,
    NextView,
    PrevView,
    ViewNodes,
    ViewZones,
    ViewFirewalls,
    ViewDomains,
    Refresh,
    Start,
    Stop,
    Reboot,
    Retry,
    Reinstall,
    Apply,
    Add,
    Edit,
    Remove,
    /// The plan overlay's Apply button.
    PlanApply,
    /// The plan overlay's Cancel button.
    PlanCancel,
    /// The plan overlay: press the focused button.
    PlanChoose,
    /// The plan overlay: move the focus between Cancel and Apply.
    PlanSwitch,
    ToggleLog,
    LogGrow,
    LogShrink,
    LogFollow,
    LogNodeOnly,
    LogTail,
    Shell,
    NextPane,
    LeavePane,
    ZoomPane,
    Filter,
    CommandLine,
    Help,
    Quit,
    /// `:import`: the import form for an existing host.
    Import,
    /// `:record [ZONE]`: the DNS record form.
    Record,
    /// `:provider [KIND]`: a provider's credentials form.
    Provider,
    /// `:theme NAME`: load another theme.
    Theme,
}

/// Where a command is listed in the help overlay.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Group {
    Navigate,
    Views,
    Node,
    Plan,
    Log,
    Shell,
    General,
}

impl Group {
    /// Every group, in display order.
    pub const ALL: &'static [Group] = &[
        Group::Navigate,
        Group::Views,
        Group::Node,
        Group::Plan,
        Group::Log,
        Group::Shell,
        Group::General,
    ];

    /// The heading used in the help overlay and in the defaults file.
    pub fn title(self) -> &'static str {
        match self {
            Group::Navigate => "Navigate",
            Group::Views => "Views",
            Group::Node => "Node",
            Group::Plan => "Plan",
            Group::Log => "Log",
            Group::Shell => "Shell pane",
            Group::General => "General",
        }
    }
}

/// What has the keyboard: a command's keys work only in the layers its row names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Layer {
    /// A resource table has focus.
    Table,
    /// The log panel has focus.
    Log,
    /// The help or details overlay is open.
    Overlay,
    /// The plan overlay is open: its buttons and scrolling. A key may mean something else
    /// here than in the other layers (Enter presses a button, Tab moves between them).
    Plan,
    /// A shell pane has focus: every other key goes to the remote.
    Pane,
}

/// What a command needs of the selected row before it can run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Needs {
    Nothing,
    /// A selected node (Nodes view).
    Node,
    /// A selected node whose state accepts this action (the engine's own rule).
    NodeAction(Action),
}

/// Where a command appears in the footer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Footer {
    /// Lower first; help and quit lead because a narrow terminal cuts the tail.
    pub rank: u8,
    /// The layers whose footer offers it.
    pub layers: &'static [Layer],
}

/// What may follow a command's word on the `:` line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arg {
    None,
    /// An optional node name: the node is selected first.
    Node,
    /// An optional zone name.
    Zone,
    /// An optional provider kind.
    ProviderKind,
    /// A required name.
    Name,
}

impl Arg {
    /// How the help overlay shows the argument.
    pub fn hint(self) -> &'static str {
        match self {
            Arg::None => "",
            Arg::Node => " [NODE]",
            Arg::Zone => " [ZONE]",
            Arg::ProviderKind => " [KIND]",
            Arg::Name => " NAME",
        }
    }
}

/// How the `:` line names a command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Palette {
    pub word: &'static str,
    /// A second word that runs it, never offered for completion (`q`).
    pub alias: Option<&'static str>,
    pub arg: Arg,
}

/// One row of the command table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CommandInfo {
    /// The snake_case id, as written in the keymap file.
    pub name: &'static str,
    /// A short label for the footer and for status messages.
    pub label: &'static str,
    /// One line for the help overlay and the defaults file.
    pub description: &'static str,
    pub group: Group,
    /// Changes something (nodes, the plan, credentials): refused in `--readonly` and never
    /// bound to Ctrl/Alt.
    pub mutating: bool,
    /// Needs a confirmation dialog before it is sent (the app shows it).
    pub destructive: bool,
    /// The keys bound when the user's keymap file does not mention the command.
    pub default_keys: &'static [KeySpec],
    /// The views where it applies; empty: every view.
    pub views: &'static [Tab],
    /// The layers where its keys work.
    pub layers: &'static [Layer],
    pub needs: Needs,
    pub footer: Option<Footer>,
    pub palette: Option<Palette>,
}

const DASHBOARD: &[Layer] = &[Layer::Table, Layer::Log];
const EVERYWHERE_BUT_PANE: &[Layer] = &[Layer::Table, Layer::Log, Layer::Overlay];
/// Movement: it also scrolls the plan overlay.
const MOVING: &[Layer] = &[Layer::Table, Layer::Log, Layer::Overlay, Layer::Plan];
const PLAN: &[Layer] = &[Layer::Plan];
const TABLE: &[Layer] = &[Layer::Table];
const LOG: &[Layer] = &[Layer::Log];

/// A row with the usual defaults: changes nothing, keys work in the table and the log,
/// every view, needs nothing, not in the footer nor on the `:` line.
const fn row(
    name: &'static str,
    label: &'static str,
    description: &'static str,
    group: Group,
    default_keys: &'static [KeySpec],
) -> CommandInfo {
    CommandInfo {
        name,
        label,
        description,
        group,
        mutating: false,
        destructive: false,
        default_keys,
        views: &[],
        layers: DASHBOARD,
        needs: Needs::Nothing,
        footer: None,
        palette: None,
    }
}

impl CommandInfo {
    const fn changes(self) -> Self {
        CommandInfo {
            mutating: true,
            ..self
        }
    }

    const fn confirms(self) -> Self {
        CommandInfo {
            mutating: true,
            destructive: true,
            ..self
        }
    }

    const fn views(self, views: &'static [Tab]) -> Self {
        CommandInfo { views, ..self }
    }

    const fn layers(self, layers: &'static [Layer]) -> Self {
        CommandInfo { layers, ..self }
    }

    const fn needs(self, needs: Needs) -> Self {
        CommandInfo { needs, ..self }
    }

    const fn footer(self, rank: u8, layers: &'static [Layer]) -> Self {
        CommandInfo {
            footer: Some(Footer { rank, layers }),
            ..self
        }
    }

    const fn palette(self, word: &'static str, arg: Arg) -> Self {
        CommandInfo {
            palette: Some(Palette {
                word,
                alias: None,
                arg,
            }),
            ..self
        }
    }

    const fn alias(self, alias: &'static str) -> Self {
        match self.palette {
            Some(p) => CommandInfo {
                palette: Some(Palette {
                    alias: Some(alias),
                    ..p
                }),
                ..self
            },
            None => self,
        }
    }

    /// The one `--readonly` check: whatever changes something is refused.
    pub fn allowed(&self, readonly: bool) -> Result<(), super::Unavailable> {
        if readonly && self.mutating {
            return Err(super::Unavailable::Readonly(self.label));
        }
        Ok(())
    }

    /// Whether its keys work in `layer`.
    pub fn applies_in(&self, layer: Layer) -> bool {
        self.layers.contains(&layer)
    }
}

impl Command {
    /// Every command keys can run, in display order (help overlay, defaults file).
    pub const ALL: &'static [Command] = &[
        Command::MoveUp,
        Command::MoveDown,
        Command::Top,
        Command::Bottom,
        Command::PageUp,
        Command::PageDown,
        Command::Details,
        Command::Back,
        Command::NextView,
        Command::PrevView,
        Command::ViewNodes,
        Command::ViewZones,
        Command::ViewFirewalls,
        Command::ViewDomains,
        Command::Refresh,
        Command::Start,
        Command::Stop,
        Command::Reboot,
        Command::Retry,
        Command::Reinstall,
        Command::Apply,
        Command::Add,
        Command::Edit,
        Command::Remove,
        Command::PlanApply,
        Command::PlanCancel,
        Command::PlanChoose,
        Command::PlanSwitch,
        Command::ToggleLog,
        Command::LogGrow,
        Command::LogShrink,
        Command::LogFollow,
        Command::LogNodeOnly,
        Command::LogTail,
        Command::Shell,
        Command::NextPane,
        Command::LeavePane,
        Command::ZoomPane,
        Command::Filter,
        Command::CommandLine,
        Command::Help,
        Command::Quit,
    ];

    /// The commands only the `:` line runs: they take words after them, so they have no key
    /// and no place in the keymap file.
    pub const TYPED: &'static [Command] = &[
        Command::Import,
        Command::Record,
        Command::Provider,
        Command::Theme,
    ];

    /// Every row of the table: [`Command::ALL`], then [`Command::TYPED`].
    pub fn every() -> impl Iterator<Item = Command> {
        Command::ALL.iter().chain(Command::TYPED).copied()
    }

    /// The command table: one row per command.
    pub const fn info(self) -> CommandInfo {
        use Group::*;
        const fn ch(c: char) -> KeySpec {
            KeySpec::plain(Key::Char(c))
        }
        const fn key(k: Key) -> KeySpec {
            KeySpec::plain(k)
        }
        const fn ctrl(c: char) -> KeySpec {
            KeySpec::ctrl_char(c)
        }
        const NODES: &[Tab] = &[Tab::Nodes];
        match self {
            Command::MoveUp => row(
                "move_up",
                "up",
                "Move the selection up one row",
                Navigate,
                &const { [ch('k'), key(Key::Up)] },
            )
            .layers(MOVING),
            Command::MoveDown => row(
                "move_down",
                "down",
                "Move the selection down one row",
                Navigate,
                &const { [ch('j'), key(Key::Down)] },
            )
            .layers(MOVING),
            Command::Top => row(
                "top",
                "top",
                "Jump to the first row",
                Navigate,
                &const { [ch('g'), key(Key::Home)] },
            )
            .layers(&[Layer::Table, Layer::Log, Layer::Plan]),
            Command::Bottom => row(
                "bottom",
                "bottom",
                "Jump to the last row",
                Navigate,
                &const { [ch('G')] },
            )
            .layers(&[Layer::Table, Layer::Log, Layer::Plan]),
            Command::PageUp => row(
                "page_up",
                "page up",
                "Scroll up one page",
                Navigate,
                &const { [key(Key::PageUp), ctrl('b')] },
            )
            .layers(MOVING),
            Command::PageDown => row(
                "page_down",
                "page down",
                "Scroll down one page",
                Navigate,
                &const { [key(Key::PageDown), ctrl('f')] },
            )
            .layers(MOVING),
            Command::Details => row(
                "details",
                "details",
                "Open the details of the selection: plan vs observed, execution, log lines",
                Navigate,
                &const { [key(Key::Enter)] },
            )
            .layers(EVERYWHERE_BUT_PANE)
            .footer(21, TABLE),
            Command::Back => row(
                "back",
                "back",
                "Close the overlay or dialog, or clear the filter",
                Navigate,
                &const { [key(Key::Esc)] },
            )
            .layers(EVERYWHERE_BUT_PANE)
            .footer(35, LOG),
            Command::NextView => row(
                "next_view",
                "next view",
                "Switch to the next view",
                Views,
                &const { [key(Key::Tab)] },
            ),
            Command::PrevView => row(
                "prev_view",
                "prev view",
                "Switch to the previous view",
                Views,
                &const { [key(Key::BackTab)] },
            ),
            Command::ViewNodes => row(
                "view_nodes",
                "nodes",
                "Show the Nodes view",
                Views,
                &const { [ch('1')] },
            )
            .palette("nodes", Arg::None),
            Command::ViewZones => row(
                "view_zones",
                "zones",
                "Show the DNS Zones view",
                Views,
                &const { [ch('2')] },
            )
            .palette("zones", Arg::None),
            Command::ViewFirewalls => row(
                "view_firewalls",
                "firewalls",
                "Show the Firewalls view",
                Views,
                &const { [ch('3')] },
            )
            .palette("firewalls", Arg::None),
            Command::ViewDomains => row(
                "view_domains",
                "domains",
                "Show the Domains view",
                Views,
                &const { [ch('4')] },
            )
            .palette("domains", Arg::None),
            Command::Refresh => row(
                "refresh",
                "refresh",
                "Read every provider's servers and zones now",
                Views,
                &const { [ctrl('r')] },
            )
            .palette("refresh", Arg::None),
            Command::Start => row(
                "start",
                "start",
                "Start the selected node",
                Node,
                &const { [ch('u')] },
            )
            .changes()
            .views(NODES)
            .needs(Needs::NodeAction(Action::Start))
            .footer(10, TABLE)
            .palette("start", Arg::Node),
            Command::Stop => row(
                "stop",
                "stop",
                "Stop the selected node (asks for confirmation)",
                Node,
                &const { [ch('o')] },
            )
            .confirms()
            .views(NODES)
            .needs(Needs::NodeAction(Action::Stop))
            .footer(11, TABLE)
            .palette("stop", Arg::Node),
            Command::Reboot => row(
                "reboot",
                "reboot",
                "Reboot the selected node (asks for confirmation)",
                Node,
                &const { [ch('r')] },
            )
            .confirms()
            .views(NODES)
            .needs(Needs::NodeAction(Action::Reboot))
            .footer(12, TABLE)
            .palette("reboot", Arg::Node),
            Command::Retry => row(
                "retry",
                "retry",
                "Retry the failed operation of the selected node",
                Node,
                &const { [ch('t')] },
            )
            .changes()
            .views(NODES)
            .needs(Needs::NodeAction(Action::Retry))
            .footer(13, TABLE)
            .palette("retry", Arg::Node),
            Command::Reinstall => row(
                "reinstall",
                "reinstall",
                "Reinstall the selected node (asks you to type its name)",
                Node,
                &const { [ch('R')] },
            )
            .confirms()
            .views(NODES)
            .needs(Needs::NodeAction(Action::Reinstall))
            .footer(14, TABLE)
            .palette("reinstall", Arg::Node),
            // Opening the plan changes nothing, so `--readonly` may read it; its Apply
            // button is `PlanApply`, which changes the cloud.
            Command::Apply => row(
                "apply",
                "apply",
                "Show the plan: what an apply would change",
                Plan,
                &const { [ch('a')] },
            )
            .footer(20, TABLE)
            .palette("apply", Arg::None),
            Command::Add => row(
                "add",
                "add",
                "Add a node, zone, record or firewall rule to the plan",
                Plan,
                &const { [ch('n')] },
            )
            .changes(),
            Command::Edit => row(
                "edit",
                "edit",
                "Edit the selection in the plan",
                Plan,
                &const { [ch('e')] },
            )
            .changes(),
            Command::Remove => row(
                "remove",
                "remove",
                "Remove the selection from the plan (asks for confirmation)",
                Plan,
                &const { [ch('D')] },
            )
            .confirms()
            .views(NODES)
            .needs(Needs::Node)
            .footer(15, TABLE),
            Command::PlanApply => row(
                "plan_apply",
                "apply",
                "Plan overlay: apply the plan shown (its Apply button)",
                Plan,
                &const { [ch('y')] },
            )
            .changes()
            .layers(PLAN),
            Command::PlanCancel => row(
                "plan_cancel",
                "cancel",
                "Plan overlay: close it, changing nothing (Cancel)",
                Plan,
                &const { [key(Key::Esc), ch('n'), ch('q')] },
            )
            .layers(PLAN),
            Command::PlanChoose => row(
                "plan_choose",
                "choose",
                "Plan overlay: press the focused button (Cancel first)",
                Plan,
                &const { [key(Key::Enter)] },
            )
            .layers(PLAN),
            Command::PlanSwitch => row(
                "plan_switch",
                "switch",
                "Plan overlay: move the focus between Cancel and Apply",
                Plan,
                &const { [key(Key::Tab), key(Key::BackTab)] },
            )
            .layers(PLAN),
            Command::ToggleLog => row(
                "toggle_log",
                "log",
                "Show or hide the log panel",
                Log,
                &const { [ch('l')] },
            )
            .footer(36, DASHBOARD)
            .palette("logs", Arg::None),
            Command::LogGrow => row(
                "log_grow",
                "log +",
                "Make the log panel taller",
                Log,
                &const { [ch('+')] },
            )
            .footer(33, LOG),
            Command::LogShrink => row(
                "log_shrink",
                "log -",
                "Make the log panel shorter",
                Log,
                &const { [ch('-')] },
            )
            .footer(34, LOG),
            Command::LogFollow => row(
                "log_follow",
                "follow",
                "Resume following the log",
                Log,
                &const { [ch('F'), key(Key::End)] },
            )
            .footer(30, LOG),
            Command::LogNodeOnly => row(
                "log_node_only",
                "node log",
                "Show only the selected node's lines in the log panel (toggle)",
                Log,
                &const { [ch('L')] },
            )
            .footer(31, LOG),
            Command::LogTail => row(
                "log_tail",
                "tail",
                "Follow the selected node's logs over SSH in the log panel (toggle)",
                Log,
                &const { [ch('T')] },
            )
            .palette("tail", Arg::None),
            Command::Shell => row(
                "shell",
                "shell",
                "Open an SSH shell on the selected node, or go back to its shell",
                Group::Shell,
                &const { [ch('s')] },
            )
            // A shell can change the node: `--readonly` refuses it.
            .changes()
            .views(NODES)
            .needs(Needs::Node)
            .footer(16, TABLE)
            .palette("shell", Arg::Node),
            Command::NextPane => row(
                "next_pane",
                "next shell",
                "Go to the next open shell",
                Group::Shell,
                &const { [ch(']')] },
            ),
            Command::LeavePane => row(
                "leave_pane",
                "dashboard",
                "Leave the shell for the dashboard (it keeps running); again goes back",
                Group::Shell,
                &const { [ctrl('\\')] },
            )
            .layers(&[Layer::Table, Layer::Log, Layer::Pane])
            .footer(50, &[Layer::Pane]),
            Command::ZoomPane => row(
                "zoom_pane",
                "zoom",
                "Shell full screen on/off (other keys all go to the remote)",
                Group::Shell,
                &const { [ctrl(']')] },
            )
            .layers(&[Layer::Table, Layer::Log, Layer::Pane])
            .footer(51, &[Layer::Pane]),
            Command::Filter => row(
                "filter",
                "filter",
                "Filter the rows by name, address or state",
                General,
                &const { [ch('/')] },
            )
            .footer(32, DASHBOARD),
            Command::CommandLine => row(
                "command_line",
                "command",
                "Open the command line (:start, :nodes, :theme NAME, ...)",
                General,
                &const { [ch(':')] },
            )
            .footer(37, TABLE),
            Command::Help => row(
                "help",
                "help",
                "Show this help",
                General,
                &const { [ch('?')] },
            )
            .layers(EVERYWHERE_BUT_PANE)
            .footer(0, DASHBOARD),
            Command::Quit => row(
                "quit",
                "quit",
                "Quit the dashboard",
                General,
                &const { [ch('q'), ctrl('c')] },
            )
            .layers(EVERYWHERE_BUT_PANE)
            .footer(1, DASHBOARD)
            .palette("quit", Arg::None)
            .alias("q"),
            Command::Import => row(
                "import",
                "import",
                "Import an existing host over SSH (manual provider)",
                Plan,
                &[],
            )
            .changes()
            .layers(&[])
            .palette("import", Arg::None),
            Command::Record => row(
                "record",
                "record",
                "Add a DNS record to a zone's plan",
                Plan,
                &[],
            )
            .changes()
            .layers(&[])
            .palette("record", Arg::Zone),
            Command::Provider => row(
                "provider",
                "provider",
                "Enter a provider's credentials",
                General,
                &[],
            )
            .changes()
            .layers(&[])
            .palette("provider", Arg::ProviderKind),
            Command::Theme => row("theme", "theme", "Load another colour theme", General, &[])
                .layers(&[])
                .palette("theme", Arg::Name),
        }
    }

    /// The snake_case id, as written in the keymap file.
    pub const fn name(self) -> &'static str {
        self.info().name
    }

    /// The command with this keymap-file name (only commands keys can run).
    pub fn from_name(name: &str) -> Option<Command> {
        Command::ALL.iter().copied().find(|c| c.name() == name)
    }

    /// The command a `:` line word runs.
    pub fn from_word(word: &str) -> Option<Command> {
        Command::every().find(|c| {
            c.info()
                .palette
                .is_some_and(|p| p.word == word || p.alias == Some(word))
        })
    }
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A command name that is not in the table.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown command `{0}`")]
pub struct UnknownCommand(pub String);

impl FromStr for Command {
    type Err = UnknownCommand;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Command::from_name(s).ok_or_else(|| UnknownCommand(s.to_string()))
    }
}
