//! `--readonly` on the command line: which commands change something, and the refusal.
//!
//! One table ([`writes`]) over the parsed command, checked once in `cli::run` before a
//! command starts, so a write command is refused whatever it would have done (plan edits,
//! applies, node actions, credentials, the state's password, a shell, the managed key).
//! Reading commands (status, lists, `show`, logs, catalog, `provider verify`, `refresh`,
//! the daemon's own commands) run as usual. `legion --readonly demo` shows the demo's
//! fleet without applying it (`cli::demo`); the dashboard has its own check, the command
//! table's `mutating` flag (`views::keymap`).

use super::Command;
use super::config::ConfigCommand;
use super::network::{FirewallsCommand, RecordsCommand, ZonesCommand};
use super::nodes::NodesCommand;
use super::provider::ProviderCommand;
use super::ssh::SshKeyCommand;

/// A write command refused under `--readonly` (exit code 1, see docs/cli.md).
#[derive(Debug, thiserror::Error)]
#[error("--readonly: `legion {command}` {why}; run it without --readonly")]
pub(crate) struct ReadonlyRefused {
    pub command: &'static str,
    pub why: &'static str,
}

/// The command's name and what it would change, when it changes something.
pub(super) fn writes(command: &Command) -> Option<ReadonlyRefused> {
    const PLAN: &str = "changes the plan";
    const NODE: &str = "acts on a node";
    let (command, why) = match command {
        Command::Apply { .. } => ("apply", "changes the cloud"),
        Command::Config { command } => match command {
            ConfigCommand::Set { .. } => ("config set", PLAN),
            ConfigCommand::Init => ("config init", "creates a state"),
            ConfigCommand::Passwd { .. } => ("config passwd", "changes the state's password"),
            ConfigCommand::Get { .. } => return None,
        },
        Command::Nodes { command } => match command {
            NodesCommand::Add { .. } => ("nodes add", PLAN),
            NodesCommand::Set(_) => ("nodes set", PLAN),
            NodesCommand::Import { .. } => {
                ("nodes import", "logs in to a host and changes the plan")
            }
            NodesCommand::Start(_) => ("nodes start", NODE),
            NodesCommand::Stop(_) => ("nodes stop", NODE),
            NodesCommand::Reboot(_) => ("nodes reboot", NODE),
            NodesCommand::Retry(_) => ("nodes retry", NODE),
            NodesCommand::Reinstall(_) => ("nodes reinstall", NODE),
            NodesCommand::Retrust { .. } => ("nodes retrust", "forgets a pinned host key"),
            NodesCommand::Destroy { .. } => ("nodes destroy", "deletes a server"),
            NodesCommand::List { .. } | NodesCommand::Show { .. } => return None,
        },
        Command::Zones { command } => match command {
            ZonesCommand::Add { .. } => ("zones add", PLAN),
            ZonesCommand::Remove { .. } => ("zones remove", PLAN),
            ZonesCommand::List { .. } => return None,
        },
        Command::Records { command } => match command {
            RecordsCommand::Add { .. } => ("records add", PLAN),
            RecordsCommand::Remove { .. } => ("records remove", PLAN),
            RecordsCommand::List { .. } => return None,
        },
        Command::Firewalls { command } => match command {
            FirewallsCommand::AddRule { .. } => ("firewalls add-rule", PLAN),
            FirewallsCommand::RemoveRule { .. } => ("firewalls remove-rule", PLAN),
            FirewallsCommand::List { .. } => return None,
        },
        Command::Provider { command } => match command {
            ProviderCommand::Configure { .. } => ("provider configure", "stores credentials"),
            ProviderCommand::List { .. } | ProviderCommand::Verify { .. } => return None,
        },
        Command::SshKey { command } => match command {
            SshKeyCommand::Export { .. } => (
                "ssh-key export",
                "hands out the key that can change every node",
            ),
            SshKeyCommand::Show => return None,
        },
        Command::Ssh { .. } => ("ssh", "opens a shell that can change the node"),
        // `plan` (`show`, `export`) only reads; `import` writes.
        Command::Plan(args) => super::plan::writes(args)?,
        Command::Demo(_)
        | Command::Completions { .. }
        | Command::Man
        | Command::Keymap { .. }
        | Command::Status { .. }
        | Command::Logs(_)
        | Command::Catalog(_)
        | Command::Refresh
        | Command::Daemon { .. } => return None,
    };
    Some(ReadonlyRefused { command, why })
}
