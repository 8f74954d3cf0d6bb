//! What the dashboard offers, generated from the command table: whether a command is
//! available for the selected row (and why not), the footer of each layer, the help
//! overlay's list and the `:` palette.
//!
//! Pure functions over the table and a [`Context`] (plain data the app builds from its
//! state): they never draw and never run a command. Whether a node action fits its node is
//! the engine's own rule ([`check_action`]), so the footer and the engine cannot disagree.

use super::command::{Arg, Command, Layer, Needs};
use crate::engine::actors::machine::{ActionView, check_action};
use crate::engine::snapshot::NodeRow;
use crate::views::lists::Tab;

/// What availability depends on.
#[derive(Clone, Copy, Debug)]
pub struct Context<'a> {
    pub readonly: bool,
    pub view: Tab,
    pub layer: Layer,
    /// The selected node, in the Nodes view.
    pub node: Option<&'a NodeRow>,
}

/// Why a command cannot run now; the status line shows it when the key is pressed anyway.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Unavailable {
    #[error("{0}: not available in --readonly")]
    Readonly(&'static str),
    #[error("{0}: select a node first (Nodes view)")]
    NoNode(&'static str),
    #[error("{label}: not in the {view} view")]
    OtherView {
        label: &'static str,
        view: &'static str,
    },
    /// The node's state does not accept the action: the engine's reason.
    #[error("{0}")]
    Refused(String),
}

impl Command {
    /// Whether the command can run in `ctx`; the error says why not.
    pub fn available(self, ctx: &Context<'_>) -> Result<(), Unavailable> {
        let info = self.info();
        info.allowed(ctx.readonly)?;
        match info.needs {
            Needs::Nothing => {}
            Needs::Node => {
                ctx.node.ok_or(Unavailable::NoNode(info.label))?;
            }
            Needs::NodeAction(action) => {
                let n = ctx.node.ok_or(Unavailable::NoNode(info.label))?;
                let view = ActionView {
                    name: &n.name,
                    machine: n.machine,
                    operation: n.operation.as_deref(),
                    has_server: n.server_id.is_some(),
                    execution: n.execution.as_ref(),
                };
                // `to_string` works whatever error type the engine's rule returns.
                check_action(view, action).map_err(|e| Unavailable::Refused(e.to_string()))?;
            }
        }
        if !info.views.is_empty() && !info.views.contains(&ctx.view) {
            return Err(Unavailable::OtherView {
                label: info.label,
                view: ctx.view.title(),
            });
        }
        Ok(())
    }
}

/// The footer of `ctx.layer`: the commands the table puts there, in footer order, that are
/// available now.
pub fn footer(ctx: &Context<'_>) -> Vec<Command> {
    let mut cmds: Vec<(u8, Command)> = Command::every()
        .filter_map(|c| {
            let f = c.info().footer?;
            f.layers.contains(&ctx.layer).then_some((f.rank, c))
        })
        .filter(|(_, c)| c.available(ctx).is_ok())
        .collect();
    cmds.sort_by_key(|&(rank, _)| rank);
    cmds.into_iter().map(|(_, c)| c).collect()
}

/// The help overlay's key list: every command keys can run that `--readonly` allows.
pub fn help(readonly: bool) -> impl Iterator<Item = Command> {
    Command::ALL
        .iter()
        .copied()
        .filter(move |c| c.info().allowed(readonly).is_ok())
}

/// The `:` palette: every command with a word that `--readonly` allows, in table order.
pub fn palette(readonly: bool) -> impl Iterator<Item = (&'static str, Arg, Command)> {
    Command::every().filter_map(move |c| {
        let info = c.info();
        let p = info.palette?;
        info.allowed(readonly).is_ok().then_some((p.word, p.arg, c))
    })
}

/// The palette as the help overlay shows it: `:start [NODE] :stop [NODE] ... :theme NAME`.
pub fn palette_line(readonly: bool) -> String {
    palette(readonly)
        .map(|(word, arg, _)| format!(":{word}{}", arg.hint()))
        .collect::<Vec<_>>()
        .join(" ")
}
