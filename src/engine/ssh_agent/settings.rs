//! The SSH agent's settings: who logs in on which provider's nodes, on which port, under
//! which root directory, and the role files of the Legion home (`roles/<role>.sh`,
//! `.probe`, `.logs`) that decide what a node installs, how its readiness is probed and
//! which logs its tail follows. Pure reads of the environment and of those files: no SSH.

use crate::providers::Env;

/// A role file of the home could not be read or says something unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RoleFileError {
    #[error("reading the install script {path}: {detail}")]
    InstallScript { path: String, detail: String },
    #[error("reading {path}: {detail}")]
    ReadProbe { path: String, detail: String },
    #[error("{path}: {url:?} is not an http:// or https:// URL")]
    BadProbe { path: String, url: String },
}

/// The install script when the role has none of its own: prepare the node and record
/// Legion's identity on it. `LEGION_ROOT`, `LEGION_NODE` and `LEGION_ROLE` are set.
pub const DEFAULT_INSTALL: &str = r#"#!/bin/sh
# Legion's default install: record the node's identity and when it was installed.
set -eu
mkdir -p "$LEGION_ROOT/var/lib/legion"
cp "$LEGION_ROOT/etc/legion/node.json" "$LEGION_ROOT/var/lib/legion/identity.json"
date -u +%Y-%m-%dT%H:%M:%SZ > "$LEGION_ROOT/var/lib/legion/installed"
echo "legion: $LEGION_NODE installed as $LEGION_ROLE"
"#;
/// The log files followed when the role names none.
const DEFAULT_LOG_FILES: [&str; 2] = ["/var/log/syslog", "/var/log/messages"];
/// Lines of history the log tail starts with.
const LOG_BACKLOG: u32 = 200;

/// How the SSH agent logs in and what it runs, read once when a session unlocks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshSettings {
    /// `LEGION_SSH_USER` when set: every node logs in as this user (without sudo).
    pub user: Option<String>,
    /// Each provider's login user ([`crate::providers::ProviderModule::ssh_user`]), used
    /// when `user` is not set; a user other than root runs system commands under sudo.
    pub provider_users: std::collections::BTreeMap<String, String>,
    pub port: u16,
    /// `LEGION_SSH_SANDBOX_ROOT`, `Some(dir)`: write under `dir` on the node (`{node}`
    /// names the node) and leave its hostname alone.
    pub node_root: Option<String>,
    /// Per-role install scripts: `<dir>/<role>.sh` (the Legion home's `roles/`).
    pub roles_dir: Option<std::path::PathBuf>,
}

impl SshSettings {
    pub fn from_env(env: &Env) -> SshSettings {
        SshSettings {
            user: env
                .get("LEGION_SSH_USER")
                .filter(|u| !u.is_empty())
                .map(String::from),
            provider_users: Default::default(),
            port: env
                .get("LEGION_SSH_PORT")
                .and_then(|p| p.parse().ok())
                .unwrap_or(22),
            node_root: env
                .get("LEGION_SSH_SANDBOX_ROOT")
                .filter(|r| !r.is_empty())
                .map(String::from),
            roles_dir: None,
        }
    }

    /// The install script for `role`: `roles/<role>.sh` in the home when present, else
    /// [`DEFAULT_INSTALL`].
    pub fn install_script(&self, role: &str) -> Result<String, RoleFileError> {
        let Some(path) = self
            .roles_dir
            .as_ref()
            .filter(|_| safe_role(role))
            .map(|d| d.join(format!("{role}.sh")))
        else {
            return Ok(DEFAULT_INSTALL.to_string());
        };
        match std::fs::read_to_string(&path) {
            Ok(script) => Ok(script),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(DEFAULT_INSTALL.to_string()),
            Err(e) => Err(RoleFileError::InstallScript {
                path: path.display().to_string(),
                detail: e.to_string(),
            }),
        }
    }

    /// The role's HTTP readiness probe: the URL in `roles/<role>.probe` (one line, as
    /// reached from the node itself, e.g. `http://127.0.0.1:8080/healthz`), if any.
    pub fn http_probe(&self, role: &str) -> Result<Option<String>, RoleFileError> {
        let Some(path) = self
            .roles_dir
            .as_ref()
            .filter(|_| safe_role(role))
            .map(|d| d.join(format!("{role}.probe")))
        else {
            return Ok(None);
        };
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(RoleFileError::ReadProbe {
                    path: path.display().to_string(),
                    detail: e.to_string(),
                });
            }
        };
        let url = text
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty() && !l.starts_with('#'));
        match url {
            None => Ok(None),
            Some(u)
                if (u.starts_with("http://") || u.starts_with("https://"))
                    && !u.contains(|c: char| c.is_whitespace() || c == '\'' || c == '"') =>
            {
                Ok(Some(u.to_string()))
            }
            Some(u) => Err(RoleFileError::BadProbe {
                path: path.display().to_string(),
                url: u.to_string(),
            }),
        }
    }

    /// The files a role's logs are in: `roles/<role>.logs` in the home (one path per
    /// line, `#` comments), else the system log files. Under a node root they are
    /// relative to it.
    pub fn log_files(&self, role: &str, root: &str) -> Vec<String> {
        let listed = self
            .roles_dir
            .as_ref()
            .filter(|_| safe_role(role))
            .and_then(|d| std::fs::read_to_string(d.join(format!("{role}.logs"))).ok());
        let files: Vec<String> = match listed {
            Some(text) => text
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .map(String::from)
                .collect(),
            // A node under a root has no system logs of its own; one file stands in for
            // them (something on the machine writes it).
            None if !root.is_empty() => vec![DEFAULT_LOG_FILES[0].to_string()],
            None => DEFAULT_LOG_FILES.iter().map(|f| f.to_string()).collect(),
        };
        files.into_iter().map(|f| format!("{root}{f}")).collect()
    }

    /// What the log tail runs: `journalctl -f` when the node has a journal (not under a
    /// node root, where the journal is the host's), else `tail -F` of the role's files.
    /// Under `sudo -n` for a non-root login, so the system logs are readable.
    pub fn log_command(&self, role: &str, sudo: bool, root: &str) -> String {
        let files: Vec<String> = self
            .log_files(role, root)
            .iter()
            .map(|f| quote(f))
            .collect();
        let sudo = if sudo { "sudo -n " } else { "" };
        let tail = format!(
            "exec {sudo}tail -n {LOG_BACKLOG} -s 0.25 -F -- {} 2>&1",
            files.join(" ")
        );
        if !root.is_empty() {
            return tail;
        }
        format!(
            "if command -v journalctl >/dev/null 2>&1 && {sudo}journalctl -q -n 1 >/dev/null 2>&1; \
             then exec {sudo}journalctl -f -n {LOG_BACKLOG} --no-pager -o short-iso 2>&1; else {tail}; fi"
        )
    }

    /// Who logs in on a node of `provider` whose image logs in as `image_user` (when
    /// the catalog said), and whether system commands need sudo: `LEGION_SSH_USER`, else
    /// the image's user, else the provider's default, else root.
    pub fn login_user(&self, provider: &str, image_user: Option<&str>) -> (String, bool) {
        if let Some(u) = &self.user {
            return (u.clone(), false);
        }
        match image_user.or(self.provider_users.get(provider).map(String::as_str)) {
            Some(u) if u != "root" => (u.to_string(), true),
            _ => ("root".to_string(), false),
        }
    }

    /// Where Legion's files go on nodes: `""` (the node's `/`) unless a node root is set.
    pub fn root(&self) -> &str {
        self.node_root.as_deref().unwrap_or("")
    }

    /// Where Legion's files go on `node`: [`Self::root`] with `{node}` replaced by the
    /// node's name (one directory per node when one machine plays several).
    pub fn root_for(&self, node: &str) -> String {
        self.root().replace("{node}", node)
    }
}

/// A role name that can be part of a file name.
fn safe_role(role: &str) -> bool {
    !role.is_empty()
        && role
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// Single-quote for `sh`.
pub(super) fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(user: Option<&str>, root: Option<&str>) -> SshSettings {
        SshSettings {
            user: user.map(String::from),
            provider_users: [
                ("hetzner".to_string(), "root".to_string()),
                ("ovh".to_string(), "ubuntu".to_string()),
            ]
            .into(),
            port: 22,
            node_root: root.map(String::from),
            roles_dir: None,
        }
    }

    #[test]
    fn a_node_root_can_name_the_node() {
        assert_eq!(settings(None, None).root_for("web-1"), "");
        assert_eq!(settings(None, Some("/t/box")).root_for("web-1"), "/t/box");
        let per_node = settings(None, Some("/t/box/{node}"));
        assert_eq!(per_node.root_for("web-1"), "/t/box/web-1");
        assert_eq!(per_node.root_for("db-2"), "/t/box/db-2");
    }

    #[test]
    fn the_login_user_comes_from_the_provider_unless_overridden() {
        let s = settings(None, None);
        assert_eq!(s.login_user("hetzner", None), ("root".into(), false));
        assert_eq!(s.login_user("ovh", None), ("ubuntu".into(), true));
        assert_eq!(s.login_user("unknown", None), ("root".into(), false));
        // The image's own user (OVHcloud's Debian logs in as `debian`) comes first.
        assert_eq!(s.login_user("ovh", Some("debian")), ("debian".into(), true));
        assert_eq!(s.login_user("ovh", Some("root")), ("root".into(), false));
        let s = settings(Some("ops"), None);
        assert_eq!(s.login_user("ovh", None), ("ops".into(), false));
        assert_eq!(s.login_user("ovh", Some("debian")), ("ops".into(), false));
    }

    #[test]
    fn the_log_command_prefers_the_journal_on_real_hosts_only() {
        let s = settings(None, None);
        let real = s.log_command("web", true, "");
        assert!(real.contains("sudo -n journalctl -f"), "{real}");
        assert!(
            real.contains("'/var/log/syslog' '/var/log/messages'"),
            "{real}"
        );
        let boxed = s.log_command("web", false, "/sb");
        assert!(!boxed.contains("journalctl"), "{boxed}");
        assert!(
            boxed.contains("tail -n 200 -s 0.25 -F -- '/sb/var/log/syslog'"),
            "{boxed}"
        );
    }

    #[test]
    fn probes_must_be_http_urls() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = settings(None, None);
        s.roles_dir = Some(dir.path().to_path_buf());
        assert_eq!(s.http_probe("web"), Ok(None));
        std::fs::write(
            dir.path().join("web.probe"),
            "# health\nhttp://127.0.0.1:8080/healthz\n",
        )
        .unwrap();
        assert_eq!(
            s.http_probe("web"),
            Ok(Some("http://127.0.0.1:8080/healthz".into()))
        );
        std::fs::write(dir.path().join("web.probe"), "ftp://x'; rm -rf /\n").unwrap();
        assert!(
            s.http_probe("web")
                .unwrap_err()
                .to_string()
                .contains("not an http")
        );
        // A role that cannot name a file has no probe.
        assert_eq!(s.http_probe("../etc"), Ok(None));
    }
}
