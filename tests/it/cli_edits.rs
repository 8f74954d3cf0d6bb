//! The real binary (issue 15): plan edits refused early with the valid choices, `nodes
//! set`, `firewalls remove-rule`, and `--readonly` refusing every write command.

use std::path::Path;
use std::process::Command;

fn cli(home: &Path, pw: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_legion"));
    c.env("LEGION_HOME", home)
        .env("LEGION_PASSWORD_FILE", pw)
        .env("LEGION_MOCK_NETWORK", "1")
        .env_remove("LEGION_DAEMON_TOKEN");
    c
}

fn run(home: &Path, pw: &Path, args: &[&str]) -> (i32, String, String) {
    let out = cli(home, pw).args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A home with the simulated cloud configured.
fn home() -> (tempfile::TempDir, std::path::PathBuf, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let pw = dir.path().join("pw");
    std::fs::write(&pw, "edits password\n").unwrap();
    assert_eq!(run(&home, &pw, &["config", "init"]).0, 0);
    let (code, _, err) = run(
        &home,
        &pw,
        &["provider", "configure", "mock", "--latency-ms", "5"],
    );
    assert_eq!(code, 0, "{err}");
    (dir, home, pw)
}

#[test]
fn edits_are_refused_early_and_nodes_set_shows_what_changes() {
    let (_dir, home, pw) = home();
    let refused = |args: &[&str], says: &str| {
        let (code, out, err) = run(&home, &pw, args);
        assert_eq!(code, 1, "{args:?}: {out}{err}");
        assert!(err.contains(says), "{args:?}: {err}");
    };
    let rule = [
        "firewalls",
        "add-rule",
        "prod",
        "--port",
        "443",
        "--source",
        "0.0.0.0/0",
    ];
    refused(&rule, "cluster prod has no nodes");
    assert_eq!(
        run(
            &home,
            &pw,
            &[
                "nodes",
                "add",
                "web-1",
                "--provider",
                "mock",
                "--cluster",
                "prod"
            ]
        )
        .0,
        0
    );
    refused(
        &[
            "nodes",
            "add",
            "web-1",
            "--provider",
            "mock",
            "--region",
            "sim-west",
        ],
        "node web-1 exists; change it with `legion nodes set web-1 --offer …`",
    );
    refused(
        &[
            "nodes",
            "add",
            "web-2",
            "--provider",
            "mock",
            "--role",
            "db",
        ],
        "role \"db\" has no install script",
    );
    refused(
        &[
            "nodes",
            "add",
            "web-2",
            "--provider",
            "mock",
            "--offer",
            "sim-huge",
        ],
        "choose one of: sim-small, sim-medium, sim-large",
    );
    refused(
        &["nodes", "add", "Web_2", "--provider", "mock"],
        "invalid node name",
    );
    for (port, source, says) in [
        ("22", "999.1.1.1/99", "--source: 999.1.1.1/99 is not a CIDR"),
        (
            "70000",
            "0.0.0.0/0",
            "--port: a port (22) or a range (8000-8100)",
        ),
        (
            "abc;reboot",
            "0.0.0.0/0",
            "--port: a port (22) or a range (8000-8100)",
        ),
    ] {
        refused(
            &[
                "firewalls",
                "add-rule",
                "prod",
                "--port",
                port,
                "--source",
                source,
            ],
            says,
        );
    }
    let (code, _, err) = run(
        &home,
        &pw,
        &[&rule[..], &["--description", "https"]].concat(),
    );
    assert_eq!(code, 0, "{err}");
    let (_, out, _) = run(&home, &pw, &["firewalls", "list"]);
    assert!(
        out.contains("rule 1: tcp 443 from 0.0.0.0/0  (https)"),
        "{out}"
    );

    let (code, out, err) = run(
        &home,
        &pw,
        &["nodes", "set", "web-1", "--offer", "sim-medium"],
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("~ offer    sim-small -> sim-medium"), "{out}");
    assert!(!out.contains("replacement"), "{out}");
    let (code, out, err) = run(
        &home,
        &pw,
        &["nodes", "set", "web-1", "--region", "sim-west"],
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("~ region   sim-east -> sim-west"), "{out}");
    assert!(out.contains("a replacement"), "{out}");
    let (_, out, _) = run(
        &home,
        &pw,
        &["nodes", "set", "web-1", "--offer", "sim-medium"],
    );
    assert!(out.contains("nothing changes"), "{out}");
    refused(
        &["nodes", "set", "web-1", "--image", "debian-11"],
        "no image \"debian-11\"",
    );
    refused(
        &["nodes", "set", "nope", "--offer", "sim-small"],
        "no node \"nope\" in the plan",
    );

    refused(
        &["firewalls", "remove-rule", "prod", "2"],
        "its rules: 1 (tcp 443 from 0.0.0.0/0)",
    );
    let (code, out, err) = run(&home, &pw, &["firewalls", "remove-rule", "prod", "1"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("removed from the firewall set of prod"),
        "{out}"
    );
    let (_, out, _) = run(&home, &pw, &["firewalls", "list"]);
    assert!(!out.contains("rule 1:"), "{out}");
}

#[test]
fn readonly_refuses_every_write_command_and_changes_nothing() {
    let (_dir, home, pw) = home();
    assert_eq!(
        run(
            &home,
            &pw,
            &[
                "nodes",
                "add",
                "web-1",
                "--provider",
                "mock",
                "--cluster",
                "prod"
            ]
        )
        .0,
        0
    );
    let state = std::fs::read(home.join("state.legion")).unwrap();
    let writes: &[&[&str]] = &[
        &["apply"],
        &["apply", "--wait"],
        &["config", "set", "management-sources", "10.0.0.0/8"],
        &["config", "init"],
        &["config", "passwd"],
        &["nodes", "add", "web-2", "--provider", "mock"],
        &["nodes", "set", "web-1", "--offer", "sim-large"],
        &[
            "nodes",
            "import",
            "old",
            "--host",
            "127.0.0.1",
            "--key-only",
        ],
        &["nodes", "start", "web-1"],
        &["nodes", "stop", "web-1"],
        &["nodes", "reboot", "web-1"],
        &["nodes", "retry", "web-1"],
        &["nodes", "reinstall", "web-1"],
        &["nodes", "retrust", "web-1"],
        &["nodes", "destroy", "web-1", "--yes"],
        &["zones", "add", "example.test", "--provider", "mock"],
        &["zones", "remove", "example.test"],
        &["records", "add", "example.test", "www", "A", "192.0.2.1"],
        &["records", "remove", "example.test", "www", "A"],
        &[
            "firewalls",
            "add-rule",
            "prod",
            "--port",
            "443",
            "--source",
            "0.0.0.0/0",
        ],
        &["firewalls", "remove-rule", "prod", "1"],
        &["provider", "configure", "mock", "--latency-ms", "1"],
        &["ssh-key", "export"],
        &["ssh", "web-1"],
    ];
    for args in writes {
        for readonly_first in [true, false] {
            let mut argv: Vec<&str> = args.to_vec();
            // `provider configure` takes every word after the kind as its flags.
            if readonly_first || args[0] == "provider" {
                argv.insert(0, "--readonly");
            } else {
                argv.push("--readonly");
            }
            let (code, out, err) = run(&home, &pw, &argv);
            assert_eq!(code, 1, "{argv:?}: {out}{err}");
            assert!(
                err.contains("--readonly: `legion ") && err.contains("run it without --readonly"),
                "{argv:?}: {err}"
            );
        }
    }
    assert_eq!(
        std::fs::read(home.join("state.legion")).unwrap(),
        state,
        "nothing was written"
    );
    for args in [
        &["nodes", "list"][..],
        &["status"],
        &["firewalls", "list"],
        &["config", "get", "management-sources"],
    ] {
        let mut argv = vec!["--readonly"];
        argv.extend_from_slice(args);
        let (code, out, err) = run(&home, &pw, &argv);
        assert_eq!(code, 0, "{argv:?}: {out}{err}");
    }
}

#[test]
fn readonly_demo_shows_the_fleet_without_applying_it() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_legion"))
        .arg("--home")
        .arg(dir.path())
        .args(["--readonly", "demo", "--once"])
        .env_remove("LEGION_HOME")
        .env_remove("LEGION_PASSWORD_FILE")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("east-1"),
        "the planned fleet is shown: {stdout}"
    );
    assert!(!stdout.contains("apply #"), "no apply ran: {stdout}");
    let cloud =
        std::fs::read_to_string(dir.path().join("demo/mock-cloud.json")).unwrap_or_default();
    assert!(!cloud.contains("east-1"), "no server was created: {cloud}");
}
