//! The manual provider end to end through the real binary and a real sshd: importing a
//! host with a one-time password, the sudo check (refused without passwordless sudo,
//! accepted with it), key-only login afterwards, the SSH phases run under sudo, and the
//! cluster's firewall rules listed as operator tasks.
//!
//! Needs root (it creates the password test user and a sudoers drop-in); otherwise it
//! says SKIPPED.

#![allow(clippy::unwrap_used)]

use legion_testkit::sshd;

use std::process::Command;

use serde_json::Value;
use sshd::{Sshd, SshdOpts};

struct Home {
    dir: tempfile::TempDir,
    vars: Vec<(&'static str, String)>,
}

impl Home {
    fn new() -> Home {
        let dir = tempfile::tempdir().unwrap();
        let pw = dir.path().join("pw");
        std::fs::write(&pw, "manual end to end\n").unwrap();
        let vars = vec![
            ("LEGION_HOME", dir.path().join("home").display().to_string()),
            ("LEGION_PASSWORD_FILE", pw.display().to_string()),
        ];
        Home { dir, vars }
    }

    fn run_with(&self, args: &[&str], extra: &[(&str, &str)]) -> (i32, String, String) {
        let out = Command::new(env!("CARGO_BIN_EXE_legion"))
            .envs(self.vars.iter().map(|(k, v)| (*k, v.as_str())))
            .envs(extra.iter().copied())
            .env_remove("LEGION_DAEMON_TOKEN")
            .env_remove("LEGION_MOCK_NETWORK")
            .env_remove("LEGION_SSH_USER")
            .env_remove("LEGION_SSH_PORT")
            .args(args)
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    fn ok_with(&self, args: &[&str], extra: &[(&str, &str)]) -> String {
        let (code, out, err) = self.run_with(args, extra);
        assert_eq!(code, 0, "legion {args:?}: {err}\n{out}");
        out
    }
}

/// Removes the sudoers drop-in however the test ends.
struct DropIn(&'static str);

impl Drop for DropIn {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(self.0);
    }
}

#[test]
fn a_host_is_imported_with_a_password_then_managed_with_the_key_alone() {
    let _user = crate::test_user_lock();
    let Some(user) = sshd::test_user() else {
        return;
    };
    let Some(sshd) = Sshd::start(SshdOpts {
        password_auth: true,
    }) else {
        return;
    };
    user.reset_ssh_dir();
    let home = Home::new();
    home.ok_with(&["config", "init"], &[]);
    let port = sshd.port().to_string();
    let password = user.password.as_str();
    let import = |name: &str, extra: &[(&str, &str)]| {
        home.run_with(
            &[
                "nodes",
                "import",
                name,
                "--host",
                "127.0.0.1",
                "--port",
                &port,
                "--user",
                user.name,
                "--cluster",
                "edge",
                "--password-env",
                "IMPORT_PW",
                "--json",
            ],
            extra,
        )
    };

    // A wrong password: refused in words, nothing planned, no key installed.
    let (code, _, err) = import("m1", &[("IMPORT_PW", "not-the-password")]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("password"), "{err}");
    assert!(!err.contains("not-the-password"), "{err}");
    assert!(!user.home.join(".ssh/authorized_keys").exists());

    // sudo installed? Without it the refusal is "not installed"; with it, a password.
    let has_sudo = Command::new("sh")
        .args(["-c", "command -v sudo"])
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap()
        .success();
    let (code, _, err) = import("m1", &[("IMPORT_PW", password)]);
    assert_eq!(
        code, 1,
        "a user without passwordless sudo is refused: {err}"
    );
    assert!(
        err.contains("Legion needs root or passwordless sudo"),
        "{err}"
    );
    assert!(err.contains("NOPASSWD"), "the refusal names the fix: {err}");
    assert!(
        !user.home.join(".ssh/authorized_keys").exists(),
        "nothing is installed on a refused host"
    );
    let nodes: Value =
        serde_json::from_str(&home.ok_with(&["nodes", "list", "--json"], &[])).unwrap();
    assert_eq!(nodes.as_array().unwrap().len(), 0);
    if !has_sudo {
        writeln_skip("sudo is not installed; the passwordless-sudo import is not checked");
        return;
    }

    let path = "/etc/sudoers.d/legion-manual-test";
    std::fs::write(path, format!("{} ALL=(ALL) NOPASSWD: ALL\n", user.name)).unwrap();
    let _drop_in = DropIn(path);
    std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o440)).unwrap();
    let (code, out, err) = import("m1", &[("IMPORT_PW", password)]);
    assert_eq!(code, 0, "{err}\n{out}");
    let report: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["sudo"], "passwordless");
    assert_eq!(report["key_added"], true);
    assert_eq!(report["host_key"], sshd.host_key_fingerprint());
    assert_eq!(
        report["server_id"],
        format!("{}@127.0.0.1:{}", user.name, sshd.port())
    );
    let keys = std::fs::read_to_string(user.home.join(".ssh/authorized_keys")).unwrap();
    let managed = home.ok_with(&["ssh-key", "show"], &[]);
    assert!(keys.contains(managed.split_whitespace().nth(1).unwrap()));

    // From now on the key alone: `legion ssh` logs in with no password anywhere.
    let out = home.ok_with(&["ssh", "m1", "--", "id", "-un"], &[]);
    assert_eq!(out.trim(), user.name);
    // The password is in no file of the home (logs, state, operation log).
    for entry in walk(&home.dir.path().join("home")) {
        let bytes = std::fs::read(&entry).unwrap();
        assert!(
            !bytes
                .windows(password.len())
                .any(|w| w == password.as_bytes()),
            "{} holds the password",
            entry.display()
        );
    }

    // Deploy: the SSH phases run as the user, writing under sudo (into a sandbox owned
    // by root, so only sudo can write there; the hostname is left alone).
    let sandbox = tempfile::Builder::new()
        .prefix("legion-manual-")
        .tempdir()
        .unwrap();
    std::fs::set_permissions(
        sandbox.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let sandbox_s = sandbox.path().display().to_string();
    let deploy = [("LEGION_SSH_SANDBOX_ROOT", sandbox_s.as_str())];
    let out = home.ok_with(&["apply", "--wait"], &deploy);
    assert!(out.contains("apply #"), "{out}");
    let identity: Value = serde_json::from_slice(
        &std::fs::read(sandbox.path().join("etc/legion/node.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(identity["name"], "m1");
    assert_eq!(identity["cluster"], "edge");
    assert!(sandbox.path().join("var/lib/legion/installed").exists());
    use std::os::unix::fs::MetadataExt;
    assert_eq!(
        std::fs::metadata(sandbox.path().join("etc/legion/node.json"))
            .unwrap()
            .uid(),
        0,
        "written through sudo"
    );
    let row: Value =
        serde_json::from_str(&home.ok_with(&["nodes", "show", "m1", "--json"], &deploy)).unwrap();
    assert_eq!(row["provider"], "manual");
    assert_eq!(row["execution"]["status"], "succeeded", "{row}");
    assert_eq!(row["machine"], "running", "{row}");

    // Power control is not pretended: a stop is refused in words.
    let (code, _, err) = home.run_with(&["nodes", "stop", "m1", "--wait"], &deploy);
    assert_eq!(code, 1);
    assert!(err.contains("no power control"), "{err}");

    // The cluster's firewall set cannot be applied on a manual host: operator tasks.
    let fw: Value =
        serde_json::from_str(&home.ok_with(&["firewalls", "list", "--json"], &deploy)).unwrap();
    let edge = fw
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "edge")
        .unwrap_or_else(|| panic!("{fw}"));
    let tasks: Vec<&str> = edge["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    // Management access is a task too: the host's own firewall must keep SSH (the
    // import's port) open from where Legion connects.
    let mut want = [
        format!("open tcp {port} from 127.0.0.1/32 on m1 (127.0.0.1)"),
        "open tcp 4413 from 127.0.0.1/32 on m1 (127.0.0.1)".to_string(),
    ];
    want.sort();
    let mut tasks = tasks;
    tasks.sort();
    assert_eq!(tasks, want, "{edge}");
    let text = home.ok_with(&["firewalls", "list"], &deploy);
    assert!(text.contains("operator task: open tcp 4413"), "{text}");

    // A second import of the same name is refused before connecting.
    let (code, _, err) = import("m1", &[("IMPORT_PW", password)]);
    assert_eq!(code, 1);
    assert!(err.contains("already in the plan"), "{err}");

    // Destroy forgets the host and leaves it alone.
    home.ok_with(&["nodes", "destroy", "m1", "--yes"], &deploy);
    assert!(user.home.join(".ssh/authorized_keys").exists());
}

fn writeln_skip(why: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "SKIPPED: {why}");
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}
