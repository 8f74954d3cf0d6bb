//! The daemon's wire format: one JSON object per line, both ways.
//!
//! Request: `{"id": 7, "token": "…", "method": "node_action", "params": {"name": "web-1",
//! "action": "start"}}` (`params` omitted for methods without any).
//! Reply: `{"id": 7, "result": …}` or `{"id": 7, "error": {"code": "refused", "message":
//! "…"}}`. A subscription answers `{"id": 7, "result": null}` and then sends events
//! `{"id": 7, "event": "snapshot" | "log" | "lagged", "data": …}` until the connection
//! closes. A line that is not a request gets `{"id": null, "error": …}`; a bad token
//! gets an error and the connection is closed.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::engine::EngineError;
use crate::engine::actors::Action;
use crate::engine::plan::{NodeRequest, PlanEdit};
use crate::engine::secret::Secret;

/// Protocol revision; a client refuses a daemon that speaks another.
pub const PROTOCOL: u32 = 1;

/// One request line.
#[derive(Debug, Serialize, Deserialize)]
pub struct Request {
    pub id: u64,
    pub token: Secret,
    #[serde(flatten)]
    pub call: Call,
}

/// What a request asks for. Secrets travel as [`Secret`] so `Debug` never shows them.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "method", content = "params", rename_all = "snake_case")]
pub enum Call {
    /// The daemon's [`DaemonStatus`].
    Status,
    /// Save, lock and exit.
    Shutdown,
    /// The current snapshot.
    Snapshot,
    Unlock {
        password: Secret,
    },
    /// Save and lock the engine (the daemon keeps running; `unlock` opens it again).
    Lock,
    ChangePassword {
        current: Secret,
        new: Secret,
    },
    ConfigureProvider {
        kind: String,
        credentials: BTreeMap<String, Secret>,
    },
    VerifyProvider {
        kind: String,
    },
    EditPlan {
        edit: PlanEdit,
    },
    UpsertNode {
        request: NodeRequest,
    },
    ImportNode {
        request: crate::engine::import::ImportRequest,
    },
    Plan,
    Providers,
    Catalog {
        kind: String,
    },
    Apply,
    Refresh,
    NodeAction {
        name: String,
        action: Action,
    },
    SshAccess {
        name: String,
    },
    PinHostKey {
        name: String,
        fingerprint: String,
    },
    Retrust {
        name: String,
    },
    ManagedKey,
    /// The newest operation-log entries (oldest first).
    Logs {
        limit: usize,
        #[serde(default)]
        resource: Option<String>,
    },
    /// Stream snapshots (the current one first, then each publication; a slow reader
    /// skips to the newest) and/or operation-log entries.
    Subscribe {
        #[serde(default)]
        snapshots: bool,
        #[serde(default)]
        logs: bool,
    },
}

impl Call {
    /// The method name, for the diagnostics log (never the parameters).
    pub fn method(&self) -> &'static str {
        match self {
            Call::Status => "status",
            Call::Shutdown => "shutdown",
            Call::Snapshot => "snapshot",
            Call::Unlock { .. } => "unlock",
            Call::Lock => "lock",
            Call::ChangePassword { .. } => "change_password",
            Call::ConfigureProvider { .. } => "configure_provider",
            Call::VerifyProvider { .. } => "verify_provider",
            Call::EditPlan { .. } => "edit_plan",
            Call::UpsertNode { .. } => "upsert_node",
            Call::ImportNode { .. } => "import_node",
            Call::Plan => "plan",
            Call::Providers => "providers",
            Call::Catalog { .. } => "catalog",
            Call::Apply => "apply",
            Call::Refresh => "refresh",
            Call::NodeAction { .. } => "node_action",
            Call::Logs { .. } => "logs",
            Call::SshAccess { .. } => "ssh_access",
            Call::PinHostKey { .. } => "pin_host_key",
            Call::Retrust { .. } => "retrust",
            Call::ManagedKey => "managed_key",
            Call::Subscribe { .. } => "subscribe",
        }
    }
}

/// An error on the wire.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WireError {
    /// `locked`, `wrong_password`, `refused`, `invalid`, `not_found`, `provider`,
    /// `unauthorized`, `bad_request`, `too_large`, `busy`, … (see docs/cli.md).
    pub code: String,
    pub message: String,
}

impl WireError {
    pub fn new(code: &str, message: impl Into<String>) -> WireError {
        WireError {
            code: code.to_string(),
            message: message.into(),
        }
    }
}

impl From<&EngineError> for WireError {
    fn from(e: &EngineError) -> WireError {
        WireError::new(e.code(), e.to_string())
    }
}

impl From<WireError> for EngineError {
    fn from(e: WireError) -> EngineError {
        EngineError::from_wire(&e.code, e.message)
    }
}

/// A reply or an event, as the client reads it.
#[derive(Debug, Deserialize)]
pub struct Incoming {
    pub id: Option<u64>,
    #[serde(default)]
    pub result: Option<serde_json::Value>,
    #[serde(default)]
    pub error: Option<WireError>,
    #[serde(default)]
    pub event: Option<String>,
    #[serde(default)]
    pub data: Option<serde_json::Value>,
}

/// `status`: who answers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DaemonStatus {
    pub version: String,
    pub protocol: u32,
    pub pid: u32,
    pub endpoint: String,
    /// Unix seconds.
    pub started: u64,
    pub clients: usize,
    pub requests: u64,
}

/// Serialize a reply; one larger than [`super::MAX_RESPONSE`] becomes a `too_large`
/// error for the same id.
pub fn reply_line(id: u64, outcome: Result<serde_json::Value, WireError>) -> String {
    let line = match outcome {
        Ok(result) => serde_json::json!({"id": id, "result": result}),
        Err(error) => serde_json::json!({"id": id, "error": error}),
    }
    .to_string();
    if line.len() > super::MAX_RESPONSE {
        return error_line(
            Some(id),
            &WireError::new(
                "too_large",
                format!(
                    "the reply is {} bytes, more than the {} a reply may carry",
                    line.len(),
                    super::MAX_RESPONSE
                ),
            ),
        );
    }
    line
}

pub fn error_line(id: Option<u64>, error: &WireError) -> String {
    serde_json::json!({"id": id, "error": error}).to_string()
}

/// An event line, or `None` when it would exceed the bound (the subscriber is told).
pub fn event_line<T: Serialize>(id: u64, event: &str, data: &T) -> String {
    let line = match serde_json::to_value(data) {
        Ok(data) => serde_json::json!({"id": id, "event": event, "data": data}).to_string(),
        Err(e) => {
            return error_line(Some(id), &WireError::new("internal", e.to_string()));
        }
    };
    if line.len() > super::MAX_RESPONSE {
        return error_line(
            Some(id),
            &WireError::new(
                "too_large",
                format!("a {event} event of {} bytes was dropped", line.len()),
            ),
        );
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_parse_with_and_without_params() {
        let r: Request = serde_json::from_str(r#"{"id":1,"token":"t","method":"status"}"#).unwrap();
        assert!(matches!(r.call, Call::Status));
        let r: Request = serde_json::from_str(
            r#"{"id":2,"token":"t","method":"node_action","params":{"name":"a","action":"start"}}"#,
        )
        .unwrap();
        assert!(
            matches!(r.call, Call::NodeAction { ref name, action: Action::Start } if name == "a")
        );
        let r: Request = serde_json::from_str(
            r#"{"id":3,"token":"t","method":"unlock","params":{"password":"hunter2"}}"#,
        )
        .unwrap();
        assert!(!format!("{r:?}").contains("hunter2"));
        assert!(!format!("{r:?}").contains("\"t\""));
        assert!(
            serde_json::from_str::<Request>(r#"{"id":4,"token":"t","method":"nope"}"#).is_err()
        );
        // Round trip: what the client writes, the server reads.
        let line = serde_json::to_string(&Request {
            id: 5,
            token: Secret::new("x"),
            call: Call::Subscribe {
                snapshots: true,
                logs: false,
            },
        })
        .unwrap();
        let back: Request = serde_json::from_str(&line).unwrap();
        assert!(matches!(
            back.call,
            Call::Subscribe {
                snapshots: true,
                logs: false
            }
        ));
    }

    #[test]
    fn errors_keep_their_kind_across_the_wire() {
        let e = EngineError::Refused("web-1 is stopping".into());
        let back: EngineError = WireError::from(&e).into();
        assert!(matches!(back, EngineError::Refused(ref m) if m == "web-1 is stopping"));
        let back: EngineError = WireError::from(&EngineError::Locked).into();
        assert!(back.is_locked());
    }
}
