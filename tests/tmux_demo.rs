//! End to end: the real `legion demo` in a real terminal (tmux), driven with keys and read
//! from the screen, as an operator would.

#![allow(clippy::unwrap_used)]

use std::path::Path;

use legion_testkit::tmux;
use tmux::Tmux;

fn row<'a>(screen: &'a str, node: &str) -> &'a str {
    screen
        .lines()
        .find(|l| l.contains(&format!("│{node} ")))
        .unwrap_or("")
}

/// The demo tests run one at a time: each starts a fleet (six sandboxed sshds with health
/// checks), heavy on a 2-core machine. (A shell that stayed "connecting" here was once
/// blamed on that load; it was the pane's lost wake-up, fixed in `shell_started`.)
static ONE_DEMO: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn demo_command(home: &Path) -> String {
    format!(
        "env -u NO_COLOR LEGION_HOME={} TERM=xterm-256color {} demo; echo LEGION-EXITED $?; sleep 60",
        home.display(),
        env!("CARGO_BIN_EXE_legion")
    )
}

#[test]
fn demo_dashboard_end_to_end() {
    let _one = ONE_DEMO.lock().unwrap_or_else(|p| p.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let Some(t) = Tmux::start(&demo_command(dir.path()), 160, 45) else {
        return;
    };
    // The seeded nodes appear and settle.
    let s = t.wait("the first apply to converge", |s| {
        s.contains("apply #1: converged") && s.matches(" running  ").count() >= 6
    });
    assert!(s.contains("DEMO"), "{s}");
    for n in ["east-1", "east-2", "east-3", "west-4", "west-5", "west-6"] {
        assert!(s.contains(n), "{n}:\n{s}");
    }

    // Stop east-2 through the confirmation dialog (focus starts on Cancel).
    t.text("j");
    t.text("o");
    t.wait_for("stop east-2?");
    t.keys(&["Tab"]);
    t.keys(&["Enter"]);
    t.wait("east-2 stopped", |s| row(s, "east-2").contains("stopped"));

    // An action the row does not accept is not offered; pressed anyway, it shows the
    // reason at once, without a confirmation.
    t.text("o");
    let s = t.wait_for("east-2 is already stopped");
    assert!(!s.contains("stop east-2?"), "{s}");

    // Start it again.
    t.text("u");
    t.wait("east-2 running and ready", |s| {
        let r = row(s, "east-2");
        r.contains(" running  ")
    });

    // Reboot.
    t.text("r");
    t.wait_for("reboot east-2?");
    t.keys(&["Tab"]);
    t.keys(&["Enter"]);
    t.wait_for("reboot east-2: accepted");
    // Back up and done: the footer offers an action only once the reboot has finished.
    t.wait("east-2 back up", |s| {
        let r = row(s, "east-2");
        r.contains(" running  ") && !r.contains("reboot")
    });

    // Reinstall asks for the node's name.
    t.text("R");
    t.wait_for("Type the node's name");
    t.text("east-2");
    t.keys(&["Enter"]);
    t.wait_for("reinstall east-2: accepted");
    t.wait("the reinstall to finish", |s| {
        let r = row(s, "east-2");
        r.contains(" running  ")
    });

    // `/` filters live; Esc clears.
    t.text("/");
    t.text("west");
    t.wait_for("Nodes 3/6");
    t.keys(&["Enter"]);
    t.keys(&["Escape"]);
    t.wait_for("Nodes 6/6");

    // `:` commands.
    t.text(":");
    t.text("zones");
    t.keys(&["Enter"]);
    t.wait_for("DNS Zones 2/2");
    t.text(":");
    t.text("nodes");
    t.keys(&["Enter"]);
    t.wait_for("Nodes 6/6");

    // The log panel follows the operation log.
    t.text("l");
    t.wait_for("Operation log");

    // Quitting restores the terminal.
    t.text("q");
    let s = t.wait_for("LEGION-EXITED 0");
    assert!(
        !s.contains("Nodes 6/6"),
        "the alternate screen was left:\n{s}"
    );
}

#[test]
fn demo_nodes_have_real_shells_and_logs_in_local_sandboxes() {
    let _one = ONE_DEMO.lock().unwrap_or_else(|p| p.into_inner());
    if legion::engine::find_sshd().is_none() {
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED: no OpenSSH server installed; the demo has no sandboxes (see TESTING.md)"
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let Some(t) = Tmux::start(&demo_command(dir.path()), 160, 45) else {
        return;
    };
    // Deployed over SSH into each node's sandbox.
    let s = t.wait("the first apply to converge", |s| {
        s.contains("apply #1: converged") && s.matches(" running  ").count() >= 6
    });
    assert!(s.contains("a local sshd per node"), "{s}");
    let identity = dir
        .path()
        .join("demo/sandboxes/east-1/root/etc/legion/node.json");
    let identity: serde_json::Value =
        serde_json::from_slice(&std::fs::read(identity).unwrap()).unwrap();
    assert_eq!(identity["name"], "east-1");

    // A shell on east-1: type a command, read its output.
    t.text("s");
    t.wait("the shell open", |s| {
        s.lines()
            .nth(1)
            .is_some_and(|l| l.starts_with(" ssh  1 east-1") && !l.contains('…'))
    });
    t.text("echo demo-$((6*7)) in $LEGION_ROOT");
    t.keys(&["Enter"]);
    t.wait("the command's output", |s| {
        s.lines()
            .any(|l| l.starts_with("demo-42 in ") && l.contains("sandboxes/east-1/root"))
    });

    // Leave the pane: the dashboard is live (an action goes through and shows).
    t.keys(&["C-\\"]);
    t.wait("the node table", |s| {
        s.contains("Nodes 6/6") && s.contains("ssh: east-1")
    });
    t.text("j");
    t.text("j");
    t.text("o");
    t.wait_for("stop east-3?");
    t.keys(&["Tab"]);
    t.keys(&["Enter"]);
    t.wait("east-3 stopped", |s| row(s, "east-3").contains("stopped"));

    // The log panel follows a node's log over SSH.
    t.text("k");
    t.text("T");
    t.wait("east-2's log", |s| {
        s.contains("Logs of east-2 · following") && s.contains("east-2 legion-demo[")
    });
    t.text("T");
    t.wait_for("Operation log");
    t.text("q");
    t.wait_for("LEGION-EXITED 0");
}

/// A read-only dashboard opens the plan overlay to read it, and its Apply is refused with
/// the reason: `--readonly demo` seeds a fresh demo and never applies, so the plan has the
/// whole fleet to create.
#[test]
fn readonly_reads_the_plan_and_cannot_apply_it() {
    let _one = ONE_DEMO.lock().unwrap_or_else(|p| p.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let command = format!(
        "env -u NO_COLOR LEGION_HOME={} TERM=xterm-256color {} --readonly demo; echo LEGION-EXITED $?; sleep 60",
        dir.path().display(),
        env!("CARGO_BIN_EXE_legion")
    );
    let Some(t) = Tmux::start(&command, 160, 45) else {
        return;
    };
    t.wait("the plan's counts in the header", |s| {
        s.contains("readonly") && s.contains("plan: ") && s.contains("to create")
    });
    t.text("a");
    let s = t.wait("the plan overlay", |s| {
        s.contains("Plan: ") && s.contains("(create)")
    });
    assert!(s.contains("east-1"), "{s}");
    assert!(s.contains("read-only: Apply is refused"), "{s}");
    // Scrolling works read-only.
    t.text("j");
    // Apply: focus it and press it; refused, the overlay stays open.
    t.keys(&["Tab"]);
    t.keys(&["Enter"]);
    let s = t.wait_for("apply: not available in --readonly");
    assert!(s.contains("Plan: "), "the plan stays open:\n{s}");
    // `y` (Apply's key) is not bound read-only; Esc closes and nothing was applied.
    t.text("y");
    t.keys(&["Escape"]);
    let s = t.wait("the overlay to close", |s| !s.contains("Plan: "));
    assert!(s.contains("apply: idle"), "nothing was applied:\n{s}");
    assert!(s.contains("to create"), "{s}");
    t.text("q");
    t.wait_for("LEGION-EXITED 0");
}
