//! The daemon's wire format: one JSON object per line, both ways.
//!
//! Request: `{"id": 7, "token": "…", "method": "node_action", "params": {"name": "web-1",
//! "action": "start"}}` (`params` omitted for methods without any).
//! Reply: `{"id": 7, "result": …}` or `{"id": 7, "error": {"code": "refused", "message":
//! "…"}}`. A subscription answers `{"id": 7, "result": null}` and then sends events
//! `{"id": 7, "event": "snapshot" | "log" | "lagged", "data": …}` until the connection
//! closes. `apply_progress` streams small `progress` events (`{"id": 7, "event":
//! "progress", "data": {…}}`) and ends with its reply, the last progress, once the apply
//! has finished. A line that is not a request gets `{"id": null, "error": …}`; a bad
//! token gets an error and the connection is closed.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::core::secret::Secret;
use crate::engine::snapshot::{AppSnapshot, ApplyView, LockState, NodeRow};
use crate::engine::{EngineError, ErrorKind};
use crate::providers::ProviderError;

/// Protocol revision; a client refuses a daemon that speaks another. 2: `status` says
/// whether the engine is unlocked and counts subscriptions; `apply_progress`.
pub const PROTOCOL: u32 = 2;

/// One request line. `method` is a call of the engine API (`crate::engine::api`) or one
/// of the daemon's own ([`DaemonCall`]); `params` holds the call's named parameters.
/// `Debug` shows neither the token nor the parameters (passwords, credentials).
#[derive(Serialize, Deserialize)]
pub struct Request {
    pub id: u64,
    pub token: Secret,
    pub method: String,
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub params: Value,
}

impl std::fmt::Debug for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Request")
            .field("id", &self.id)
            .field("method", &self.method)
            .finish_non_exhaustive()
    }
}

impl Request {
    /// The method name, for the diagnostics log (never the parameters, which may hold
    /// passwords and credentials; `Debug` of a [`Secret`] never shows them either).
    pub fn method(&self) -> &str {
        &self.method
    }
}

/// Requests about the daemon and the connection rather than the engine.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "method", content = "params", rename_all = "snake_case")]
pub enum DaemonCall {
    /// The daemon's [`DaemonStatus`].
    Status,
    /// Save, lock and exit.
    Shutdown,
    /// The current snapshot (serialized once per publication and shared).
    Snapshot,
    /// Stream snapshots (the current one first, then each publication; a slow reader
    /// skips to the newest) and/or operation-log entries.
    Subscribe {
        #[serde(default)]
        snapshots: bool,
        #[serde(default)]
        logs: bool,
    },
    /// Follow apply `apply` to its end with [`ApplyProgress`] events (never whole
    /// snapshots); the reply is the last one. `node` asks for that node's row in it.
    ApplyProgress {
        apply: u64,
        #[serde(default)]
        node: Option<String>,
    },
}

impl DaemonCall {
    /// The daemon's own call a request names, if it names one.
    pub fn parse(method: &str, params: &Value) -> Option<Result<DaemonCall, serde_json::Error>> {
        if !matches!(
            method,
            "status" | "shutdown" | "snapshot" | "subscribe" | "apply_progress"
        ) {
            return None;
        }
        let mut v = serde_json::Map::new();
        v.insert("method".into(), Value::String(method.into()));
        if !params.is_null() {
            v.insert("params".into(), params.clone());
        }
        Some(serde_json::from_value(Value::Object(v)))
    }
}

/// An error on the wire: its kind (`code`), the message an operator reads, and for a
/// provider failure the provider's structured errors.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WireError {
    /// `locked`, `wrong_password`, `refused`, `invalid`, `not_found`, `provider`,
    /// `unauthorized`, `bad_request`, `too_large`, `busy`, … (see docs/cli.md).
    pub code: ErrorKind,
    pub message: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub providers: Vec<ProviderError>,
}

impl WireError {
    pub fn new(code: ErrorKind, message: impl Into<String>) -> WireError {
        WireError {
            code,
            message: message.into(),
            providers: Vec::new(),
        }
    }
}

impl From<&EngineError> for WireError {
    fn from(e: &EngineError) -> WireError {
        WireError {
            code: e.kind(),
            message: e.to_string(),
            providers: e.provider_errors().to_vec(),
        }
    }
}

impl From<WireError> for EngineError {
    fn from(e: WireError) -> EngineError {
        EngineError::from_wire(e.code, e.message, e.providers)
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
    /// Whether the daemon's engine is unlocked (from its last snapshot).
    pub lock: LockState,
    /// Snapshot and log subscriptions opened since the daemon started (not secret: a
    /// count, so that a test can see that a command never subscribed).
    pub subscriptions: u64,
}

/// Where an apply stands, small whatever the fleet's size: what `apply --wait` follows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApplyProgress {
    /// The snapshot this was read from.
    pub seq: u64,
    /// The apply: its stage and counts while it runs, what failed or still differs once
    /// it has finished.
    pub apply: ApplyView,
    /// Nodes per status, as `nodes list` words it (`running`, `deploying (install)`, …).
    pub nodes: BTreeMap<String, usize>,
    /// The row of the node the caller asked about, if it is (still) in the snapshot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<NodeRow>,
}

impl ApplyProgress {
    /// Read from a snapshot (one pass over its rows).
    pub fn of(snap: &AppSnapshot, node: Option<&str>) -> ApplyProgress {
        let mut nodes: BTreeMap<String, usize> = BTreeMap::new();
        let mut label = String::new();
        for row in &snap.nodes {
            use std::fmt::Write;
            label.clear();
            let _ = write!(label, "{}", row.status);
            match nodes.get_mut(label.as_str()) {
                Some(n) => *n += 1,
                None => {
                    nodes.insert(label.clone(), 1);
                }
            }
        }
        ApplyProgress {
            seq: snap.seq,
            apply: snap.apply.clone(),
            nodes,
            node: node.and_then(|n| snap.node(n).cloned()),
        }
    }

    /// Apply `id` (or a later one) has finished.
    pub fn done(&self, id: u64) -> bool {
        matches!(&self.apply, ApplyView::Finished { id: done, .. } if *done >= id)
    }

    /// The same news as `other`, ignoring the snapshot it was read from.
    pub fn same_as(&self, other: &ApplyProgress) -> bool {
        self.apply == other.apply && self.nodes == other.nodes && self.node == other.node
    }
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
                ErrorKind::TooLarge,
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
            return error_line(
                Some(id),
                &WireError::new(ErrorKind::Internal, e.to_string()),
            );
        }
    };
    if line.len() > super::MAX_RESPONSE {
        return error_line(
            Some(id),
            &WireError::new(
                ErrorKind::TooLarge,
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
        assert!(matches!(
            DaemonCall::parse(&r.method, &r.params),
            Some(Ok(DaemonCall::Status))
        ));
        let r: Request = serde_json::from_str(
            r#"{"id":2,"token":"t","method":"node_action","params":{"name":"a","action":"start"}}"#,
        )
        .unwrap();
        assert_eq!(r.method(), "node_action");
        assert!(DaemonCall::parse(&r.method, &r.params).is_none());
        let r: Request = serde_json::from_str(
            r#"{"id":3,"token":"t","method":"unlock","params":{"password":"hunter2"}}"#,
        )
        .unwrap();
        assert!(!format!("{r:?}").contains("hunter2"), "{r:?}");
        assert!(!format!("{r:?}").contains("\"t\""), "{r:?}");
        // Round trip: what the client writes, the server reads.
        let line = serde_json::to_string(&Request {
            id: 5,
            token: Secret::new("x"),
            method: "subscribe".into(),
            params: serde_json::json!({"snapshots": true}),
        })
        .unwrap();
        let back: Request = serde_json::from_str(&line).unwrap();
        assert!(matches!(
            DaemonCall::parse(&back.method, &back.params),
            Some(Ok(DaemonCall::Subscribe {
                snapshots: true,
                logs: false
            }))
        ));
    }

    #[test]
    fn errors_keep_their_kind_across_the_wire() {
        let e = EngineError::Refused("web-1 is stopping".into());
        let back: EngineError = WireError::from(&e).into();
        assert!(matches!(back, EngineError::Refused(ref m) if m == "web-1 is stopping"));
        let back: EngineError = WireError::from(&EngineError::Locked).into();
        assert!(back.is_locked());
        let line = serde_json::to_string(&WireError::from(&EngineError::Locked)).unwrap();
        assert_eq!(
            line,
            r#"{"code":"locked","message":"Legion is locked: unlock it first"}"#
        );
    }
}
