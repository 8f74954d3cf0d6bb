//! What goes in and out of the app: [`UiEvent`]s from the runner, [`Effect`]s back to it,
//! and the errors events carry. Plain data; nothing here acts.

use crossterm::event::KeyEvent;
use std::sync::Arc;

use crate::core::oplog::OpEntry;
use crate::core::secret::Secret;
use crate::engine::actors::Action;
use crate::engine::snapshot::AppSnapshot;
use crate::engine::{EngineError, ErrorKind};
use crate::ssh::tail::TailHandle;
use crate::views::term::ShellHandle;
use crate::views::theme::Theme;

/// What reaches the UI thread.
pub enum UiEvent {
    Key(KeyEvent),
    Paste(String),
    /// The terminal's size now (columns, rows): the layout, and the size of a shell pane,
    /// are worked out here, never while drawing.
    Resize {
        width: u16,
        height: u16,
    },
    /// A new snapshot is in the watch channel.
    Snapshot(Arc<AppSnapshot>),
    Log(Arc<OpEntry>),
    /// The outcome of an effect, for the status line.
    Reply(Result<String, Failed>),
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
    /// The change set for the plan overlay (`Effect::LoadChanges`).
    Changes(Result<crate::engine::changes::ChangeSet, Failed>),
    /// A shell session has a new frame in its slot.
    Term(u64),
    /// A shell session's thread started, or why it could not.
    Shell(u64, Result<ShellHandle, SessionError>),
    /// A node log tail has lines in its mailbox.
    TailWoke(u64),
    /// A node log tail's thread started, or why it could not.
    Tail(u64, Result<TailHandle, SessionError>),
}

/// An engine command for the runner to send.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    Node(String, Action),
    Apply,
    /// Compute the change set; it comes back as `UiEvent::Changes`.
    LoadChanges,
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
    LoadTheme(String, crate::views::theme::ColorDepth),
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

impl Effect {
    /// Whether sending it changes something (the plan, a node, credentials, a pinned
    /// key) or opens a shell that can: what `--readonly` never sends, whatever asked
    /// for it. The command table refuses such commands first; this is the last check.
    pub fn writes(&self) -> bool {
        match self {
            Effect::Node(..)
            | Effect::Apply
            | Effect::RemoveNode(_)
            | Effect::UpsertNode(_)
            | Effect::EditPlan(_)
            | Effect::ConfigureProvider(..)
            | Effect::OpenShell { .. }
            | Effect::PinHostKey(..)
            | Effect::ImportNode(_) => true,
            Effect::Refresh
            | Effect::LoadCatalog(_)
            | Effect::LoadChanges
            | Effect::Unlock(_)
            | Effect::LoadTheme(..)
            | Effect::TailNode { .. }
            | Effect::Quit => false,
        }
    }
}

/// Why an effect did not work, as the status line says it: the engine's error kind when an
/// engine call failed (`None` for the dashboard's own failures: a theme file, a lost
/// connection) and the message with what was being done.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Failed {
    pub kind: Option<ErrorKind>,
    pub message: String,
}

impl Failed {
    /// An engine call failed while doing `doing` ("refresh", "import web-1").
    pub fn doing(doing: &str, e: &EngineError) -> Failed {
        Failed {
            kind: Some(e.kind()),
            message: format!("{doing}: {e}"),
        }
    }
}

impl From<EngineError> for Failed {
    fn from(e: EngineError) -> Failed {
        Failed {
            kind: Some(e.kind()),
            message: e.to_string(),
        }
    }
}

impl From<String> for Failed {
    fn from(message: String) -> Failed {
        Failed {
            kind: None,
            message,
        }
    }
}

impl From<&str> for Failed {
    fn from(message: &str) -> Failed {
        Failed::from(message.to_string())
    }
}

/// Why a shell session or a log tail could not start.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// The engine could not give the node's SSH access (no address yet, locked, unknown).
    #[error("{what} {node}: {reason}")]
    Access {
        /// "ssh" or "logs of".
        what: &'static str,
        node: String,
        reason: String,
    },
    /// The session's thread could not be started.
    #[error("{what} {node}: cannot start the {thread}: {source}")]
    Thread {
        what: &'static str,
        node: String,
        /// "session thread" or "thread".
        thread: &'static str,
        #[source]
        source: std::io::Error,
    },
}
