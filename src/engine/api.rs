//! The engine's one API: every call a face can make, written once.
//!
//! [`engine_calls!`] holds the list: name, parameters, result. From it come
//! - the [`EngineApi`] trait, which the local [`Engine`](super::Engine) implements,
//! - [`dispatch`], which the daemon's server uses to run a call read off its socket,
//! - the daemon client's implementation (`daemon::client`, through `Transport`),
//! - the [`Link`](crate::link::Link) a face holds (local engine or daemon), which forwards.
//!
//! Adding a call touches this list and `impl EngineApi for Engine`; nothing else. A call's
//! name is its method on the wire and its parameter names are the keys of `params`, so the
//! list is also the daemon protocol (docs/cli.md). Snapshots and log streams are not calls:
//! they arrive on watches and subscriptions ([`crate::link::Link::snapshots`]).

use std::future::Future;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::actors::Action;
use super::error::{EngineError, ErrorKind};
use super::import::{ImportReport, ImportRequest};
use super::plan::{NodeRequest, PlanEdit};
use super::state::model::Plan;
use crate::core::oplog::OpEntry;
use crate::core::secret::Secret;
use crate::providers::{Catalog, CatalogPolicy, Credentials, Descriptor};
use crate::ssh::ManagedKey;
use crate::ssh::SshAccess;

/// A provider's catalog and the policy that picks defaults from it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CatalogReply {
    pub catalog: Arc<Catalog>,
    pub policy: CatalogPolicy,
}

/// Calls `$m!` with the list of every engine call. The one place a call is declared.
macro_rules! engine_calls {
    ($m:ident) => {
        $m! {
            /// Open the state with its password.
            fn unlock(password: Secret) -> ();
            /// Save and lock the state (the daemon keeps running; `unlock` opens it again).
            fn lock() -> ();
            fn change_password(current: Secret, new: Secret) -> ();
            /// Store credentials for a provider kind and connect it.
            fn configure_provider(kind: String, credentials: Credentials) -> ();
            /// Ask a configured provider whether its credentials work (one read, no writes).
            fn verify_provider(kind: String) -> ();
            /// The descriptors of every provider enabled here (forms and CLI flags).
            fn providers() -> Vec<Descriptor>;
            /// A provider's catalog (cached after the first read) and its policy.
            fn catalog(kind: String) -> CatalogReply;
            /// A copy of the operator's plan.
            fn plan() -> Plan;
            fn edit_plan(edit: PlanEdit) -> ();
            /// Check a whole plan document and (unless `dry_run`) make it the plan as one
            /// edit; refusals come back in the report, each with its place in the document.
            fn import_plan(
                document: crate::engine::plan_file::PlanDocument,
                mode: crate::engine::plan_file::ImportMode,
                dry_run: bool
            ) -> crate::engine::plan_file::ImportReport;
            /// Plan a node, filling empty choices from the provider's catalog policy.
            fn upsert_node(request: NodeRequest) -> ();
            /// Import an existing host as a node of the manual provider.
            fn import_node(request: ImportRequest) -> ImportReport;
            /// Why an apply of the current plan would refuse a firewall set (it would block
            /// SSH from where Legion connects); empty when none would.
            fn lockouts() -> Vec<String>;
            /// What an apply of the current plan would change, resource by resource.
            fn changes() -> crate::engine::changes::ChangeSet;
            /// Start an apply; returns its id. Progress and outcome are in the snapshot.
            fn apply() -> u64;
            /// Read every provider now.
            fn refresh() -> ();
            /// Start, stop, reboot, retry or reinstall a node; returns the operation's
            /// number once the node's actor accepted it.
            fn node_action(name: String, action: Action) -> u64;
            /// How to reach a node over SSH: address, user, managed key, pinned host key.
            fn ssh_access(name: String) -> SshAccess;
            /// Pin a node's host key seen on first contact.
            fn pin_host_key(name: String, fingerprint: String) -> ();
            /// Forget a node's pinned host key; returns the one it had.
            fn retrust(name: String) -> Option<String>;
            /// Legion's managed SSH key.
            fn managed_key() -> ManagedKey;
            /// The newest operation-log entries (oldest first), of one resource if given.
            fn logs(limit: usize, resource: Option<String>) -> Vec<Arc<OpEntry>>;
        }
    };
}
pub(crate) use engine_calls;

macro_rules! define_api {
    ($( $(#[$doc:meta])* fn $name:ident($($arg:ident: $ty:ty),*) -> $out:ty; )*) => {
        /// Every call of the engine. Futures are `Send`, so a server can run them on tasks.
        pub trait EngineApi: Send + Sync {
            $(
                $(#[$doc])*
                fn $name(&self, $($arg: $ty),*)
                    -> impl Future<Output = Result<$out, EngineError>> + Send;
            )*
        }

        /// The method names on the wire, in declaration order (only the test reads them;
        /// the server matches names in `dispatch`).
        #[cfg(test)]
        pub(crate) const METHODS: &[&str] = &[$(stringify!($name)),*];

        /// Run one call read off the wire against `api`; `None` when `method` is not a call
        /// of the engine (the caller answers `bad_request`).
        pub(crate) async fn dispatch<A: EngineApi>(
            api: &A,
            method: &str,
            params: Value,
        ) -> Option<Result<Value, EngineError>> {
            match method {
                $(
                    stringify!($name) => Some(async move {
                        #[derive(Deserialize)]
                        #[allow(dead_code)]
                        struct Params { $($arg: $ty),* }
                        let params = if params.is_null() { Value::Object(Map::new()) } else { params };
                        let Params { $($arg),* } = serde_json::from_value(params)
                            .map_err(|e| EngineError::Remote {
                                kind: ErrorKind::BadRequest,
                                message: format!("{}: {e}", stringify!($name)),
                            })?;
                        let out = api.$name($($arg),*).await?;
                        serde_json::to_value(out).map_err(|e| EngineError::Remote {
                            kind: ErrorKind::Internal,
                            message: e.to_string(),
                        })
                    }.await),
                )*
                _ => None,
            }
        }
    };
}
engine_calls!(define_api);

/// Something that carries a call to an engine elsewhere and brings back its result (the
/// daemon client). Every type that implements it implements [`EngineApi`].
pub(crate) trait Transport: Send + Sync {
    fn call_raw(
        &self,
        method: &'static str,
        params: Value,
    ) -> impl Future<Output = Result<Value, EngineError>> + Send;
}

/// Encode one parameter for the wire.
pub(crate) fn param<T: Serialize>(v: &T) -> Result<Value, EngineError> {
    serde_json::to_value(v).map_err(|e| EngineError::Remote {
        kind: ErrorKind::Internal,
        message: e.to_string(),
    })
}

/// Decode a result from the wire.
pub(crate) fn reply<T: serde::de::DeserializeOwned>(v: Value) -> Result<T, EngineError> {
    serde_json::from_value(v).map_err(|e| EngineError::Remote {
        kind: ErrorKind::BadReply,
        message: format!("the daemon's reply was not understood: {e}"),
    })
}

macro_rules! transport_api {
    ($( $(#[$doc:meta])* fn $name:ident($($arg:ident: $ty:ty),*) -> $out:ty; )*) => {
        impl<T: Transport> EngineApi for T {
            $(
                async fn $name(&self, $($arg: $ty),*) -> Result<$out, EngineError> {
                    #[allow(unused_mut)]
                    let mut params = Map::new();
                    $( params.insert(stringify!($arg).to_owned(), param(&$arg)?); )*
                    reply(self.call_raw(stringify!($name), Value::Object(params)).await?)
                }
            )*
        }
    };
}
engine_calls!(transport_api);

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// A transport that runs each call through `dispatch` against a recording engine:
    /// what the client side encodes, the server side decodes.
    struct Loopback(Recorder);

    #[derive(Default)]
    struct Recorder {
        calls: Mutex<Vec<String>>,
    }

    macro_rules! recorder_api {
        ($( $(#[$doc:meta])* fn $name:ident($($arg:ident: $ty:ty),*) -> $out:ty; )*) => {
            impl EngineApi for Recorder {
                $(
                    async fn $name(&self, $($arg: $ty),*) -> Result<$out, EngineError> {
                        #[allow(unused_mut)]
                        let mut call = stringify!($name).to_string();
                        $( call.push_str(&format!(" {}={}", stringify!($arg), param(&$arg)?)); )*
                        self.calls.lock().unwrap().push(call);
                        Err(EngineError::NotFound(stringify!($name).into()))
                    }
                )*
            }
        };
    }
    engine_calls!(recorder_api);

    impl Transport for Loopback {
        async fn call_raw(
            &self,
            method: &'static str,
            params: Value,
        ) -> Result<Value, EngineError> {
            // Through JSON text, as on the socket.
            let params: Value = serde_json::from_str(&params.to_string()).unwrap();
            dispatch(&self.0, method, params).await.unwrap()
        }
    }

    #[tokio::test]
    async fn a_call_crosses_the_wire_with_its_parameters_and_error() {
        let link = Loopback(Recorder::default());
        let e = link
            .node_action("web-1".into(), Action::Reboot)
            .await
            .unwrap_err();
        assert!(matches!(e, EngineError::NotFound(ref m) if m == "node_action"));
        let e = link.logs(5, None).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotFound);
        let calls = link.0.calls.lock().unwrap().clone();
        assert_eq!(
            calls,
            [
                "node_action name=\"web-1\" action=\"reboot\"",
                "logs limit=5 resource=null"
            ]
        );
    }

    #[tokio::test]
    async fn unknown_methods_and_bad_parameters_are_told_apart() {
        let r = Recorder::default();
        assert!(dispatch(&r, "format_disk", Value::Null).await.is_none());
        let e = dispatch(&r, "node_action", serde_json::json!({"name": 3}))
            .await
            .unwrap()
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::BadRequest);
        // No parameters at all is fine for a call that takes none.
        let e = dispatch(&r, "apply", Value::Null)
            .await
            .unwrap()
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotFound);
        assert!(METHODS.contains(&"apply") && METHODS.contains(&"import_node"));
    }
}
