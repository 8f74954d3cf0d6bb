//! Text and values from a provider API are hostile input (issue 14 §3, §4 `legion ssh`),
//! through the real binary against the providers' fakes and a real sshd:
//! - every class of terminal sequence (OSC 52 clipboard write, OSC 0 title, CSI line
//!   rewrite, DCS, a C1 CSI, bidi override and isolate, raw `\r` and backspace) put in a
//!   catalog field and echoed back in a provider error reaches no terminal: each text
//!   command's stdout and stderr bytes hold none of them, and show the escaped form;
//!   JSON output holds them as `\u` escapes;
//! - a login user of `-oProxyCommand=…` from the API is refused by `legion ssh` before
//!   anything runs;
//! - `legion ssh` hands the managed key to a private agent, never a file or an argv, and
//!   leaves no agent and no directory behind, whether `ssh` ends or `legion` is killed
//!   with SIGTERM, SIGHUP or SIGINT.

use legion_testkit::hetzner::HetznerFake;
use legion_testkit::ovh::OvhFake;
use legion_testkit::rig::Rig;

use std::path::Path;
use std::time::{Duration, Instant};

/// One of each class of sequence a hostile API string can carry.
const HOSTILE: &str = "evil\x1b]52;c;cHduZWQ=\x07\x1b]0;owned\x07\x1b[2K\rfake\x1bP+q544e\x1b\\\u{9b}2J\u{202e}gnp\u{2066}x\u{2069}\x08\x7f";

/// Bytes a terminal would act on: ESC, BEL, BS, CR, DEL, C1 controls, bidi controls.
fn assert_inert(what: &str, bytes: &[u8]) {
    let text = String::from_utf8_lossy(bytes);
    for (i, b) in bytes.iter().enumerate() {
        assert!(
            !matches!(b, 0x1b | 0x07 | 0x08 | b'\r' | 0x7f),
            "{what}: raw byte {b:#04x} at {i}:\n{text}"
        );
    }
    for c in text.chars() {
        let bidi = matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{200E}' | '\u{200F}' | '\u{061C}');
        assert!(
            !('\u{80}'..='\u{9f}').contains(&c) && !bidi,
            "{what}: raw {c:?}:\n{text}"
        );
    }
}

fn run(rig: &Rig<impl Sized>, args: &[&str]) -> (i32, Vec<u8>, Vec<u8>) {
    let out = rig.cmd().args(args).output().unwrap();
    (out.status.code().unwrap_or(-1), out.stdout, out.stderr)
}

/// The escaped form the operator sees instead, in text output.
fn shows_text_escapes(s: &str) -> bool {
    [
        "\\x1b]52;c;cHduZWQ=\\x07",
        "\\x1b]0;owned",
        "\\x1b[2K\\rfake",
        "\\x1bP+q",
        "\\u{9b}2J",
        "\\u{202e}gnp",
        "\\x08\\x7f",
    ]
    .iter()
    .all(|e| s.contains(e))
}

/// The same as JSON `\u` escapes (serde's for C0, Legion's for C1 and bidi).
fn shows_json_escapes(s: &str) -> bool {
    [
        "\\u001b]52;c;cHduZWQ=\\u0007",
        "\\u001b[2K\\rfake",
        "\\u009b2J",
        "\\u202egnp",
        "\\b\\u007f",
    ]
    .iter()
    .all(|e| s.contains(e))
}

fn ovh_rig() -> Option<Rig<OvhFake>> {
    Rig::start("ovh", || {
        let fake = OvhFake::start();
        fake.set_task_duration(Duration::from_millis(30));
        fake.set_server_ipv4("127.0.0.1");
        let vars = fake.legion_vars();
        (fake, vars)
    })
}

#[test]
fn hostile_provider_text_is_shown_escaped_by_every_text_command() {
    let Some(rig) = ovh_rig() else {
        return;
    };
    // A catalog field (the images' login user) carries every class.
    rig.fake.set_image_user(HOSTILE);
    let (code, out, err) = run(&rig, &["catalog", "ovh"]);
    assert_eq!(code, 0, "{}", String::from_utf8_lossy(&err));
    assert_inert("catalog", &out);
    assert_inert("catalog stderr", &err);
    assert!(
        shows_text_escapes(&String::from_utf8_lossy(&out)),
        "{}",
        String::from_utf8_lossy(&out)
    );
    let (code, out, _) = run(&rig, &["catalog", "ovh", "--json"]);
    assert_eq!(code, 0);
    assert_inert("catalog --json", &out);
    assert!(
        shows_json_escapes(&String::from_utf8_lossy(&out)),
        "{}",
        String::from_utf8_lossy(&out)
    );

    // An error that echoes what it was sent: the region, refused against the catalog.
    let (code, out, err) = run(
        &rig,
        &[
            "nodes",
            "add",
            "ovh-x",
            "--provider",
            "ovh",
            "--region",
            HOSTILE,
            "--offer",
            "d2-4",
            "--image",
            "Ubuntu 24.04",
            "--apply",
            "--wait",
        ],
    );
    let err_s = String::from_utf8_lossy(&err).into_owned();
    assert_ne!(code, 0, "{err_s}");
    assert_inert("nodes add --apply stdout", &out);
    assert_inert("nodes add --apply stderr (the error chain)", &err);
    // Refused when planned (the region is not in the catalog), quoting what was sent.
    assert!(
        err_s.contains("OVHcloud Public Cloud has no region \"evil\\u{1b}]52;c;"),
        "the error shows the escaped text: {err_s}"
    );

    let mut shown_anywhere = false;
    for args in [
        &["nodes", "list"][..],
        &["nodes", "show", "ovh-x"],
        &["status"],
        &["logs"],
        &["zones", "list"],
        &["firewalls", "list"],
        &["records", "list"],
        &["provider", "list"],
    ] {
        let (_, out, err) = run(&rig, args);
        assert_inert(&format!("{args:?}"), &out);
        assert_inert(&format!("{args:?} stderr"), &err);
        shown_anywhere |= String::from_utf8_lossy(&out).contains("\\x1b]52;c;");
    }
    // The hostile region was refused when planned: no list has it to show.
    assert!(!shown_anywhere, "the refused node was planned anyway");
    for args in [
        &["nodes", "list", "--json"][..],
        &["nodes", "show", "ovh-x", "--json"],
        &["status", "--json"],
        &["logs", "--json"],
    ] {
        let (_, out, err) = run(&rig, args);
        assert_inert(&format!("{args:?}"), &out);
        assert_inert(&format!("{args:?} stderr"), &err);
    }
}

#[test]
fn a_login_user_that_is_an_ssh_option_is_refused() {
    let Some(rig) = ovh_rig() else {
        return;
    };
    let marker = rig.dir.path().join("pwned");
    let user = format!("-oProxyCommand=touch {}", marker.display());
    rig.fake.set_image_user(&user);
    // Deployed as the rig's user (LEGION_SSH_USER); the image's user is recorded.
    rig.ok(&[
        "nodes",
        "add",
        "ovh-1",
        "--provider",
        "ovh",
        "--apply",
        "--wait",
    ]);
    let out = rig
        .cmd()
        .env_remove("LEGION_SSH_USER")
        .args(["ssh", "ovh-1", "--", "touch", &marker.display().to_string()])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("refusing login user"), "{err}");
    assert!(err.contains("LEGION_SSH_USER"), "says what to do: {err}");
    std::thread::sleep(Duration::from_millis(200));
    assert!(!marker.exists(), "nothing ran");
}

/// Every live process's argv, by pid.
fn cmdlines() -> Vec<(u32, String)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if let Ok(raw) = std::fs::read(e.path().join("cmdline")) {
            out.push((pid, String::from_utf8_lossy(&raw).replace('\0', " ")));
        }
    }
    out
}

/// Nothing of `legion ssh` is left under `runtime`: no directory, no agent.
fn assert_clean(runtime: &Path) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let left: Vec<_> = std::fs::read_dir(runtime)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .collect();
        let procs: Vec<_> = cmdlines()
            .into_iter()
            .filter(|(_, c)| c.contains(&runtime.display().to_string()))
            .collect();
        if left.is_empty() && procs.is_empty() {
            return;
        }
        assert!(Instant::now() < deadline, "left behind: {left:?} {procs:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn legion_ssh_keeps_the_key_in_a_private_agent_and_cleans_up() {
    let Some(rig) = Rig::<HetznerFake>::hetzner() else {
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
    let runtime = tempfile::tempdir().unwrap();
    let exported = rig.dir.path().join("exported_key");
    rig.ok(&[
        "ssh-key",
        "export",
        "--path",
        &exported.display().to_string(),
    ]);
    let private = std::fs::read_to_string(&exported).unwrap();
    // A line of the key's body: what must appear in no argv and no file.
    let needle = private.lines().nth(2).unwrap().to_string();
    assert!(needle.len() > 20, "{private:?}");

    // Ends normally.
    let out = rig
        .cmd()
        .env("XDG_RUNTIME_DIR", runtime.path())
        .args(["ssh", "hz-1", "--", "echo", "via-the-agent"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("via-the-agent"),
        "{err}"
    );
    assert_clean(runtime.path());

    // Killed by a signal while the remote command runs.
    for sig in ["TERM", "HUP", "INT"] {
        let child = rig
            .cmd()
            .env("XDG_RUNTIME_DIR", runtime.path())
            .args(["ssh", "hz-1", "--", "sleep", "30"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        let session_dir = loop {
            // The system ssh is running once its remote command is in its argv.
            let running = cmdlines()
                .iter()
                .any(|(_, c)| c.starts_with("ssh ") && c.contains("sleep 30"));
            let dir = std::fs::read_dir(runtime.path()).unwrap().flatten().next();
            if let (true, Some(dir)) = (running, dir) {
                break dir.path();
            }
            assert!(Instant::now() < deadline, "legion ssh did not start ssh");
            std::thread::sleep(Duration::from_millis(50));
        };
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&session_dir)
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o700, "{}", session_dir.display());
        assert!(session_dir.join("agent.sock").exists(), "a private agent");
        for (pid, c) in cmdlines() {
            assert!(
                !c.contains(&needle) && !c.contains("PRIVATE KEY"),
                "pid {pid}: {c}"
            );
        }
        for e in std::fs::read_dir(&session_dir).unwrap().flatten() {
            let bytes = std::fs::read(e.path()).unwrap_or_default();
            let text = String::from_utf8_lossy(&bytes);
            assert!(
                !text.contains(&needle) && !text.contains("PRIVATE KEY"),
                "{}",
                e.path().display()
            );
        }
        let ok = std::process::Command::new("kill")
            .args([&format!("-{sig}"), &child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok);
        let out = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(err.contains(&format!("legion received SIG{sig}")), "{err}");
        assert_clean(runtime.path());
    }
}
