//! `legion demo --once` judges the fleet and exits without waiting out its timeout: 0 with
//! every row running and in sync, 1 at once (naming the row and why) when a zone waits on
//! something no node will bring.

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

fn legion(home: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_legion"));
    c.arg("--home")
        .arg(home)
        .env_remove("LEGION_HOME")
        .env_remove("LEGION_PASSWORD_FILE")
        .env_remove("LEGION_DAEMON_TOKEN");
    c
}

/// The timeout `--once` is given: far above what the demo takes even on a loaded machine,
/// so finishing in under half of it shows it did not wait it out.
const TIMEOUT: Duration = Duration::from_secs(400);

fn once(home: &Path) -> (Output, Duration) {
    let started = Instant::now();
    let out = legion(home)
        .args(["demo", "--once", "--timeout"])
        .arg(format!("{}s", TIMEOUT.as_secs()))
        .output()
        .unwrap();
    (out, started.elapsed())
}

#[test]
fn demo_once_settles_then_fails_early_on_a_zone_nothing_will_unblock() {
    let dir = tempfile::tempdir().unwrap();
    let (out, took) = once(dir.path());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(took < TIMEOUT / 2, "it waited {took:?}:\n{stdout}");
    assert!(stdout.contains("demo settled: 6 nodes running"), "{stdout}");
    for node in ["east-1", "east-2", "east-3", "west-4", "west-5", "west-6"] {
        let line = stdout
            .lines()
            .find(|l| l.starts_with(node))
            .unwrap_or_else(|| panic!("{node} missing:\n{stdout}"));
        assert!(line.contains(" running "), "{line}");
    }
    for zone in ["demo.legion.test", "example.test"] {
        let line = stdout.lines().find(|l| l.starts_with(zone)).unwrap();
        assert!(line.contains(" converged "), "{line}");
    }

    // Destroy the node the site's `www` record points at: that zone now waits for an
    // address no node will ever have. `--once` says so and exits, instead of waiting.
    let demo = dir.path().join("demo");
    let destroyed = legion(&demo)
        .args(["nodes", "destroy", "east-1", "--yes", "--password-file"])
        .arg(demo.join("demo-password"))
        .env("LEGION_MOCK_NETWORK", "1")
        .output()
        .unwrap();
    assert!(
        destroyed.status.success(),
        "{}",
        String::from_utf8_lossy(&destroyed.stderr)
    );
    let (out, took) = once(dir.path());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(took < TIMEOUT / 2, "it waited {took:?}: {stderr}");
    assert!(
        stderr.contains(
            "demo did not settle: zone example.test: waiting (node east-1 has no address yet)"
        ) && stderr.contains("it will not come without a plan change"),
        "{stderr}"
    );
    assert!(!stderr.contains("within"), "not a timeout: {stderr}");
}
