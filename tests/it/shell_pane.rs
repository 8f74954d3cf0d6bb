//! The terminal pane end to end: the real binary in tmux, a Hetzner node (local fake)
//! whose address is a real sshd on loopback. Open a shell with `s`, run a command, leave
//! with Ctrl-\ to a live dashboard, quit.

#![allow(clippy::unwrap_used)]

use legion_testkit::rig as cloud_rig;
use legion_testkit::tmux;

#[test]
fn a_shell_in_the_dashboard_runs_commands_and_leaves_the_dashboard_live() {
    let Some(rig) = cloud_rig::Rig::hetzner() else {
        return;
    };
    rig.ok(&[
        "nodes",
        "add",
        "hz-1",
        "--provider",
        "hetzner",
        "--apply",
        "--wait",
    ]);
    let cmd = format!(
        "env {} TERM=xterm-256color {}; echo LEGION-EXITED $?; sleep 60",
        rig.env_line(),
        env!("CARGO_BIN_EXE_legion")
    );
    let Some(t) = tmux::Tmux::start(&cmd, 160, 40) else {
        return;
    };
    t.wait("the node, ready", |s| {
        s.lines()
            .any(|l| l.contains("│hz-1 ") && l.contains(" running  "))
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
