//! The terminal pane end to end: the real binary in tmux, a Hetzner node (local fake)
//! whose address is a real sshd on loopback. Open a shell with `s`, run a command, leave
//! with Ctrl-\ to a live dashboard, quit.

#![allow(clippy::unwrap_used)]

#[path = "fakes/hetzner.rs"]
mod hetzner_fake;
#[path = "common/sshd.rs"]
mod sshd;
#[path = "common/tmux.rs"]
mod tmux;

use std::process::Command;
use std::time::Duration;

fn run(c: &mut Command) -> (i32, String, String) {
    let out = c.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_shell_in_the_dashboard_runs_commands_and_leaves_the_dashboard_live() {
    let Some(sshd) = sshd::Sshd::start(sshd::SshdOpts::default()) else {
        return;
    };
    let fake = hetzner_fake::HetznerFake::start();
    fake.set_action_duration(Duration::from_millis(30));
    fake.set_server_ipv4("127.0.0.1");
    let dir = tempfile::tempdir().unwrap();
    let pw = dir.path().join("pw");
    std::fs::write(&pw, "shell pane\n").unwrap();
    let vars = [
        ("LEGION_HOME", dir.path().join("home").display().to_string()),
        ("LEGION_PASSWORD_FILE", pw.display().to_string()),
        ("LEGION_HETZNER_API_URL", fake.base_url()),
        ("LEGION_HETZNER_ACTION_POLL_MS", "10".into()),
        ("HCLOUD_TOKEN", fake.token()),
        ("LEGION_SSH_PORT", sshd.port().to_string()),
        ("LEGION_SSH_USER", sshd::current_user()),
        (
            "LEGION_SSH_SANDBOX_ROOT",
            dir.path().join("node-root").display().to_string(),
        ),
    ];
    let ok = |args: &[&str]| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_legion"));
        c.envs(vars.iter().map(|(k, v)| (*k, v.as_str())))
            .env_remove("LEGION_DAEMON_TOKEN")
            .env_remove("LEGION_MOCK_NETWORK");
        let (code, out, err) = run(c.args(args));
        assert_eq!(code, 0, "legion {args:?}: {err}\n{out}");
        out
    };
    ok(&["config", "init"]);
    sshd.authorize(ok(&["ssh-key", "show"]).trim());
    ok(&["provider", "configure", "hetzner"]);
    ok(&[
        "nodes",
        "add",
        "hz-1",
        "--provider",
        "hetzner",
        "--apply",
        "--wait",
    ]);

    let env: String = vars.iter().map(|(k, v)| format!("{k}={v} ")).collect();
    let cmd = format!(
        "env {env} TERM=xterm-256color {}; echo LEGION-EXITED $?; sleep 60",
        env!("CARGO_BIN_EXE_legion")
    );
    let Some(t) = tmux::Tmux::start(&cmd, 160, 40) else {
        return;
    };
    t.wait("the node, ready", |s| {
        s.lines()
            .any(|l| l.contains("│hz-1 ") && l.contains("ready"))
    });
    t.text("s");
    // The tab line shows the session; the connecting mark goes once the shell is open.
    t.wait("the shell open", |s| {
        s.lines()
            .nth(1)
            .is_some_and(|l| l.starts_with(" ssh  1 hz-1") && !l.contains('…'))
    });
    t.text("echo legion-$((40+2))");
    t.keys(&["Enter"]);
    t.wait("the command's output", |s| {
        s.lines().any(|l| l.trim_end() == "legion-42")
    });
    // Ctrl-\ leaves: the node table again, the session listed, the dashboard live.
    t.keys(&["C-\\"]);
    let s = t.wait("the node table", |s| {
        s.lines().any(|l| l.contains("│hz-1 ")) && s.contains("ssh: hz-1")
    });
    assert!(!s.contains("legion-42"), "{s}");
    t.text("?");
    t.wait_for("Keys (j/k scroll, Esc closes)");
    t.keys(&["Escape"]);
    t.text("q");
    t.wait_for("LEGION-EXITED 0");
}
