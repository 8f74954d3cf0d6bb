//! The real `legion` binary, as a script would use it: the demo runs to a converged
//! apply, the state it leaves is encrypted and reopens, and errors exit non-zero.

#![allow(clippy::unwrap_used)]

use std::process::Command;

fn legion(home: &std::path::Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_legion"));
    c.arg("--home")
        .arg(home)
        .env_remove("LEGION_HOME")
        .env_remove("LEGION_PASSWORD_FILE");
    c
}

#[test]
fn demo_converges_then_reopens_and_status_reads_it() {
    let dir = tempfile::tempdir().unwrap();
    let out = legion(dir.path())
        .args(["demo", "--once"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("apply #1: converged"), "{stdout}");
    for node in ["east-1", "east-2", "east-3", "west-4", "west-5", "west-6"] {
        assert!(stdout.contains(node), "{node} missing:\n{stdout}");
    }
    let demo = dir.path().join("demo");
    // Encrypted at rest, private.
    let raw = std::fs::read(demo.join("state.legion")).unwrap();
    assert!(raw.starts_with(b"LEGIONST"));
    assert!(!raw.windows(6).any(|w| w == b"east-1"));
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(demo.join("state.legion"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);

    // Running it again reopens the same demo: the next apply has nothing to create.
    let out = legion(dir.path())
        .args(["demo", "--once"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("apply #2: converged"), "{stdout}");

    // `status --json` unlocks with the password file and prints one object.
    let out = legion(&demo)
        .args(["status", "--json", "--password-file"])
        .arg(demo.join("demo-password"))
        .env("LEGION_MOCK_NETWORK", "1")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["lock"], "unlocked");
    assert_eq!(v["nodes"].as_array().unwrap().len(), 6);
}

#[test]
fn wrong_password_and_missing_state_exit_with_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let pw = dir.path().join("pw");
    std::fs::write(&pw, "first password\n").unwrap();
    let home = dir.path().join("home");
    let out = legion(&home)
        .args(["status", "--password-file"])
        .arg(&pw)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("legion config init"));

    let out = legion(&home)
        .args(["config", "init", "--password-file"])
        .arg(&pw)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let before = std::fs::read(home.join("state.legion")).unwrap();

    std::fs::write(&pw, "not the password\n").unwrap();
    let out = legion(&home)
        .args(["status", "--password-file"])
        .arg(&pw)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(3),
        "locked / wrong password has its own exit code"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("wrong password"));
    assert_eq!(
        std::fs::read(home.join("state.legion")).unwrap(),
        before,
        "nothing rewritten"
    );

    let out = legion(&home).args(["frobnicate"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "usage errors exit 2");
}

/// `legion` on a temporary LEGION_HOME with a password file and the simulated cloud.
fn cli(home: &std::path::Path, pw: &std::path::Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_legion"));
    c.env("LEGION_HOME", home)
        .env("LEGION_PASSWORD_FILE", pw)
        .env("LEGION_MOCK_NETWORK", "1");
    c
}

fn run(c: &mut Command) -> (i32, String, String) {
    let out = c.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn nodes_lifecycle_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let pw = dir.path().join("pw");
    std::fs::write(&pw, "cli password\n").unwrap();
    let (code, _, err) = run(cli(&home, &pw).args(["config", "init"]));
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = run(cli(&home, &pw).args(["provider", "configure", "nope"]));
    assert_eq!(code, 1);
    assert!(err.contains("valid here: mock"), "{err}");
    let (code, _, err) =
        run(cli(&home, &pw).args(["provider", "configure", "mock", "--bogus", "1"]));
    assert_eq!(code, 1);
    assert!(
        err.contains("--latency-ms VALUE | --latency-ms-env VAR"),
        "{err}"
    );
    let (code, _, err) = run(cli(&home, &pw).args([
        "provider",
        "configure",
        "mock",
        "--seed-env",
        "NOT_SET_ANYWHERE",
    ]));
    assert_eq!(code, 1);
    assert!(err.contains("not set"), "{err}");
    let (code, _, err) = run(cli(&home, &pw).env("SIM_LATENCY", "10").args([
        "provider",
        "configure",
        "mock",
        "--latency-ms-env",
        "SIM_LATENCY",
        "--seed",
        "9",
    ]));
    assert_eq!(code, 0, "{err}");
    let (code, out, err) = run(cli(&home, &pw).args([
        "nodes",
        "add",
        "web-1",
        "--provider",
        "mock",
        "--apply",
        "--wait",
    ]));
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("converged"), "{out}");

    let (code, out, _) = run(cli(&home, &pw).args(["nodes", "list", "--json"]));
    assert_eq!(code, 0);
    let nodes: serde_json::Value = serde_json::from_str(&out).unwrap();
    let web = &nodes.as_array().unwrap()[0];
    assert_eq!(web["name"], "web-1");
    assert_eq!(web["machine"], "running");
    assert_eq!(web["region"], "sim-east", "the policy's default region");
    assert!(web["address"].as_str().unwrap().starts_with("198.51.100."));

    for (action, machine) in [
        ("stop", "stopped"),
        ("start", "running"),
        ("reboot", "running"),
        ("reinstall", "running"),
    ] {
        let (code, out, err) = run(cli(&home, &pw).args(["nodes", action, "web-1", "--wait"]));
        assert_eq!(code, 0, "{action}: {out}{err}");
        assert!(out.contains(&format!("({machine}")), "{action}: {out}");
    }
    // A refused action exits 1 with the engine's reason.
    let (code, _, err) = run(cli(&home, &pw).args(["nodes", "start", "web-1", "--wait"]));
    assert_eq!(code, 1);
    assert!(err.contains("already running"), "{err}");

    let (code, _, err) = run(cli(&home, &pw).args(["nodes", "destroy", "web-1"]));
    assert_eq!(code, 1);
    assert!(err.contains("--yes"), "{err}");
    let (code, out, err) = run(cli(&home, &pw).args(["nodes", "destroy", "web-1", "--yes"]));
    assert_eq!(code, 0, "{out}{err}");
    let (_, out, _) = run(cli(&home, &pw).args(["nodes", "list", "--json"]));
    assert_eq!(out.trim(), "[]");
    // The simulated cloud has no server left.
    let cloud = std::fs::read_to_string(home.join("mock-cloud.json")).unwrap();
    assert!(!cloud.contains("web-1"), "{cloud}");
}

#[test]
fn zones_records_firewalls_and_logs_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let pw = dir.path().join("pw");
    std::fs::write(&pw, "cli password\n").unwrap();
    assert_eq!(run(cli(&home, &pw).args(["config", "init"])).0, 0);
    assert_eq!(
        run(cli(&home, &pw).args(["provider", "configure", "mock", "--latency-ms", "5"])).0,
        0
    );
    assert_eq!(
        run(cli(&home, &pw).args(["zones", "add", "example.test", "--provider", "mock"])).0,
        0
    );
    let (code, _, err) =
        run(cli(&home, &pw).args(["records", "add", "example.test", "www", "BOGUS", "x"]));
    assert_eq!(code, 1);
    assert!(err.contains("unknown record type"), "{err}");
    assert_eq!(
        run(cli(&home, &pw).args(["records", "add", "example.test", "www", "A", "@db"])).0,
        0
    );
    // A rule needs a cluster with nodes: plan db in prod first.
    assert_eq!(
        run(cli(&home, &pw).args([
            "nodes",
            "add",
            "db",
            "--provider",
            "mock",
            "--cluster",
            "prod"
        ]))
        .0,
        0
    );
    let (code, _, err) =
        run(cli(&home, &pw).args(["firewalls", "add-rule", "prod", "--source", "0.0.0.0/0"]));
    assert_eq!(code, 1, "tcp needs a port");
    assert!(err.contains("--port"), "{err}");
    assert_eq!(
        run(cli(&home, &pw).args([
            "firewalls",
            "add-rule",
            "prod",
            "--port",
            "443",
            "--source",
            "0.0.0.0/0"
        ]))
        .0,
        0
    );
    let (code, out, err) = run(cli(&home, &pw).args(["apply", "--wait"]));
    assert_eq!(code, 0, "{out}{err}");
    let (_, out, _) = run(cli(&home, &pw).args(["records", "list", "--json"]));
    let records: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(records[0]["value"], "@db");
    let (_, out, _) = run(cli(&home, &pw).args(["zones", "list", "--json"]));
    let zones: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(zones[0]["state"], "converged", "{zones}");
    let (_, out, _) = run(cli(&home, &pw).args(["firewalls", "list", "--json"]));
    let fws: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(fws[0]["name"], "prod");
    assert_eq!(fws[0]["state"], "converged", "{fws}");
    // The operation log needs no password and filters by node.
    let (code, out, _) = run(cli(&home, &pw)
        .env_remove("LEGION_PASSWORD_FILE")
        .args(["logs", "--node", "db", "--json"]));
    assert_eq!(code, 0);
    let lines: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(!lines.is_empty());
    assert!(lines.iter().all(|e| e["resource"] == "node/db"));
    assert!(
        lines
            .iter()
            .any(|e| e["kind"] == "provider_write" && e["path"] == "/servers")
    );
}

#[test]
fn completions_and_man_page() {
    for shell in ["bash", "zsh", "fish"] {
        let out = Command::new(env!("CARGO_BIN_EXE_legion"))
            .args(["completions", shell])
            .output()
            .unwrap();
        assert!(out.status.success());
        assert!(String::from_utf8_lossy(&out.stdout).contains("legion"));
    }
    let out = Command::new(env!("CARGO_BIN_EXE_legion"))
        .arg("man")
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains(".TH legion 1"));
    let out = Command::new(env!("CARGO_BIN_EXE_legion"))
        .args(["completions", "tcsh"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(2),
        "an unknown shell is a usage error"
    );
}

#[test]
fn catalog_marks_defaults_and_passwd_changes_the_password() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let pw = dir.path().join("pw");
    let new = dir.path().join("new");
    std::fs::write(&pw, "first\n").unwrap();
    std::fs::write(&new, "second\n").unwrap();
    assert_eq!(run(cli(&home, &pw).args(["config", "init"])).0, 0);
    assert_eq!(
        run(cli(&home, &pw).args(["provider", "configure", "mock"])).0,
        0
    );
    let (code, out, err) = run(cli(&home, &pw).args(["provider", "verify", "mock"]));
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("credentials work"), "{out}");
    let (code, _, err) = run(cli(&home, &pw).args(["provider", "verify", "nope"]));
    assert_eq!(code, 1);
    assert!(err.contains("not configured"), "{err}");
    let (code, out, err) = run(cli(&home, &pw).args(["refresh"]));
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("providers read"), "{out}");
    // `config init` never overwrites a state.
    let (code, _, err) = run(cli(&home, &pw).args(["config", "init"]));
    assert_eq!(code, 1);
    assert!(err.contains("already holds"), "{err}");
    let (code, out, err) = run(cli(&home, &pw).args(["catalog", "mock"]));
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("* sim-east"), "{out}");
    assert!(out.contains("* sim-small"), "{out}");
    assert!(
        !out.contains("sim-legacy"),
        "deprecated offers are not offered:\n{out}"
    );
    let (_, out, _) = run(cli(&home, &pw).args(["catalog", "mock", "--json"]));
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["defaults"]["offer"], "sim-small");
    let (code, _, _) = run(cli(&home, &pw)
        .args(["config", "passwd", "--new-password-file"])
        .arg(&new));
    assert_eq!(code, 0);
    assert_eq!(
        run(cli(&home, &pw).args(["status"])).0,
        3,
        "the old password no longer opens it"
    );
    assert_eq!(run(cli(&home, &new).args(["status"])).0, 0);
}

use legion_testkit::tmux;

/// On a terminal without a password file, `config init` asks twice and refuses a
/// mismatch; other commands ask once. Nothing is echoed.
#[test]
fn passwords_are_asked_on_a_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let cmd = format!(
        "env -u LEGION_PASSWORD_FILE -u LEGION_DAEMON_TOKEN LEGION_HOME={home} LEGION_MOCK_NETWORK=1 sh -c '{bin} config init; echo INIT-EXIT $?; {bin} config init; echo INIT2-EXIT $?; {bin} status; echo STATUS-EXIT $?'; sleep 60",
        home = home.display(),
        bin = env!("CARGO_BIN_EXE_legion")
    );
    let Some(t) = tmux::Tmux::start(&cmd, 120, 40) else {
        return;
    };
    t.wait_for("New Legion password:");
    settle();
    t.text("correct horse");
    t.keys(&["Enter"]);
    t.wait_for("New Legion password again:");
    settle();
    t.text("battery staple");
    t.keys(&["Enter"]);
    let s = t.wait_for("INIT-EXIT 1");
    assert!(s.contains("differ"), "{s}");
    assert!(
        !home.join("state.legion").exists(),
        "nothing written on a mismatch"
    );
    for prompts in [3, 4] {
        t.wait("the next password prompt", |s| {
            s.lines()
                .filter(|l| l.starts_with("New Legion password"))
                .count()
                >= prompts
        });
        settle();
        t.text("correct horse");
        t.keys(&["Enter"]);
    }
    t.wait_for("INIT2-EXIT 0");
    assert!(home.join("state.legion").exists());
    t.wait_for("Legion password:");
    settle();
    t.text("correct horse");
    t.keys(&["Enter"]);
    let s = t.wait_for("STATUS-EXIT 0");
    assert!(s.contains("engine: this process"), "{s}");
    assert!(!s.contains("correct horse"), "never echoed:\n{s}");
}

/// The prompt is printed a moment before echo is switched off; a person types after that.
fn settle() {
    std::thread::sleep(std::time::Duration::from_millis(250));
}
