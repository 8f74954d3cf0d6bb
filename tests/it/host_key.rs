//! `nodes import --host-key-fingerprint` against a real sshd (issue 14 §4): a host that
//! presents another key is refused before the password is sent (sshd logs no password
//! attempt), the right fingerprint imports, and without the flag the output says the key
//! was trusted on first use.
//!
//! Needs root (the password test user); otherwise it says why it skipped.

use legion_testkit::sshd;

use std::process::Command;

use sshd::{Sshd, SshdOpts};

fn legion(
    home: &std::path::Path,
    pw: &std::path::Path,
    args: &[&str],
    password: &str,
) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_legion"))
        .env("LEGION_HOME", home)
        .env("LEGION_PASSWORD_FILE", pw)
        .env("IMPORT_PW", password)
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

#[test]
fn a_wrong_host_key_is_refused_before_the_password_is_sent() {
    let _user = crate::test_user_lock();
    let Some(user) = sshd::test_user() else {
        eprintln!("skipped: the password test user needs root");
        return;
    };
    let Some(sshd) = Sshd::start(SshdOpts {
        password_auth: true,
    }) else {
        eprintln!("skipped: no OpenSSH server (sshd) installed");
        return;
    };
    user.reset_ssh_dir();
    let dir = tempfile::tempdir().unwrap();
    let pw = dir.path().join("pw");
    std::fs::write(&pw, "host key test\n").unwrap();
    let home = dir.path().join("home");
    let (code, _, err) = legion(&home, &pw, &["config", "init"], "");
    assert_eq!(code, 0, "{err}");
    let port = sshd.port().to_string();
    let import = |name: &str, fingerprint: Option<&str>| {
        let mut args = vec![
            "nodes",
            "import",
            name,
            "--host",
            "127.0.0.1",
            "--port",
            &port,
            "--user",
            user.name,
            "--password-env",
            "IMPORT_PW",
        ];
        if let Some(f) = fingerprint {
            args.extend(["--host-key-fingerprint", f]);
        }
        legion(&home, &pw, &args, user.password.as_str())
    };

    // Another key's fingerprint (well formed): refused after the key exchange only.
    let wrong = format!("SHA256:{}", "A".repeat(43));
    let (code, _, err) = import("h1", Some(&wrong));
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("not the expected") && err.contains(&wrong),
        "{err}"
    );
    assert!(err.contains("nothing was sent"), "{err}");
    let log = sshd.log();
    assert!(
        !log.contains("password for"),
        "sshd saw a password attempt:\n{log}"
    );
    assert!(!user.home.join(".ssh/authorized_keys").exists());

    // A malformed fingerprint is refused before connecting.
    let (code, _, err) = import("h1", Some("SHA256:short"));
    assert_ne!(code, 0);
    assert!(err.contains("is not a host key fingerprint"), "{err}");

    // The right one passes the host key check; whatever the sudo check then says, the
    // password was used (sshd accepted it).
    let right = sshd.host_key_fingerprint();
    let (_, out, err) = import("h1", Some(&right));
    assert!(
        !err.contains("not the expected"),
        "the right fingerprint is accepted: {err}"
    );
    assert!(
        sshd.wait_log("Accepted password", std::time::Duration::from_secs(5)),
        "{}",
        sshd.log()
    );
    if out.contains("imported") {
        assert!(out.contains("matched the fingerprint given"), "{out}");
    }
}

#[test]
fn without_a_fingerprint_the_import_says_it_trusted_on_first_use() {
    let _user = crate::test_user_lock();
    let Some(sshd) = Sshd::start(SshdOpts {
        password_auth: false,
    }) else {
        eprintln!("skipped: no OpenSSH server (sshd) installed");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let pw = dir.path().join("pw");
    std::fs::write(&pw, "host key test\n").unwrap();
    let home = dir.path().join("home");
    let (code, _, err) = legion(&home, &pw, &["config", "init"], "");
    assert_eq!(code, 0, "{err}");
    // Legion's managed key, authorized for the user running the tests.
    let (code, out, err) = legion(&home, &pw, &["ssh-key", "show"], "");
    if code != 0 {
        eprintln!("skipped: cannot read Legion's public key here ({err})");
        return;
    }
    sshd.authorize(out.trim());
    let me = sshd::current_user();
    let port = sshd.port().to_string();
    let (code, out, err) = legion(
        &home,
        &pw,
        &[
            "nodes",
            "import",
            "h2",
            "--host",
            "127.0.0.1",
            "--port",
            &port,
            "--user",
            &me,
            "--key-only",
        ],
        "",
    );
    assert_eq!(code, 0, "{err}\n{out}");
    assert!(out.contains("trusted on first use"), "{out}");
    assert!(out.contains(&sshd.host_key_fingerprint()), "{out}");
}
