//! The SSH layer against a real OpenSSH server on a loopback port.

#![allow(clippy::unwrap_used)]

use legion_testkit::sshd;

use std::process::Command;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use legion::core::secret::Secret;
use legion::ssh::{
    self, Auth, AuthMethod, ConnectOptions, HostKeyFingerprint, KeyInstall, ManagedKey, SshError,
    SshSession, SudoStatus, Target,
};
use sha2::{Digest, Sha256};
use sshd::{Sshd, SshdOpts};

const T: Duration = Duration::from_secs(20);

fn me(sshd: &Sshd) -> Target {
    Target::new("127.0.0.1", sshd.port(), sshd::current_user())
}

/// A server that accepts the returned key for the user running the tests.
fn server_with_key() -> Option<(Sshd, ManagedKey)> {
    let sshd = Sshd::start(SshdOpts::default())?;
    let key = ManagedKey::generate().unwrap();
    sshd.authorize(key.public_openssh());
    Some((sshd, key))
}

fn login(sshd: &Sshd, key: &ManagedKey) -> SshSession {
    ssh::connect(&me(sshd), Auth::Key(key), None).unwrap().0
}

#[test]
fn key_login_runs_commands_and_reports_status() {
    let Some((sshd, key)) = server_with_key() else {
        return;
    };
    let (mut s, _) = ssh::connect(&me(&sshd), Auth::Key(&key), None).unwrap();
    let out = s.exec("echo out; echo err >&2; exit 3", T).unwrap();
    assert_eq!(out.status, 3);
    assert_eq!(out.stdout, "out\n");
    assert_eq!(out.stderr, "err\n");
    assert!(!out.success() && !out.truncated);

    let out = s.exec("printf 'a b'", T).unwrap();
    assert!(out.success());
    assert_eq!(out.stdout, "a b");

    let err = s.exec_checked("echo doomed >&2; exit 7", T).unwrap_err();
    assert!(matches!(err, SshError::CommandFailed { status: 7, .. }));
    let msg = err.to_string();
    assert!(
        msg.contains("exit status 7") && msg.contains("doomed"),
        "{msg}"
    );

    // Killed by a signal is not success, even though SSH sends no exit status.
    let out = s.exec("kill -KILL $$", T).unwrap();
    assert_eq!(out.signal.as_deref(), Some("KILL"));
    assert_eq!(out.status, 137);
    assert!(!out.success());
}

#[test]
fn output_is_bounded_to_its_tail_and_input_flows() {
    let Some((sshd, key)) = server_with_key() else {
        return;
    };
    let mut s = login(&sshd, &key);
    // ~1.3 MB on stdout and on stderr at once: neither stream may stall the other.
    let out = s
        .exec("seq 1 200000; seq 1 200000 >&2; echo done >&2", T)
        .unwrap();
    assert!(out.success());
    assert!(out.truncated);
    assert!(out.stdout.len() <= ssh::OUTPUT_TAIL_BYTES);
    assert!(out.stdout.ends_with("199999\n200000\n"));
    assert!(out.stderr.ends_with("200000\ndone\n"));

    // More input than SSH's window: flow control both ways.
    let input = vec![b'x'; 5_000_000];
    let out = s.exec_with_input("wc -c", &input, T).unwrap();
    assert_eq!(out.stdout.trim(), "5000000");
    // A command that ignores its input still finishes.
    let out = s.exec_with_input("echo ignored", &input, T).unwrap();
    assert_eq!(out.stdout, "ignored\n");
}

#[test]
fn exec_times_out_and_the_session_survives() {
    let Some((sshd, key)) = server_with_key() else {
        return;
    };
    let mut s = login(&sshd, &key);
    let started = Instant::now();
    let err = s.exec("sleep 30", Duration::from_secs(1)).unwrap_err();
    let took = started.elapsed();
    assert!(
        matches!(&err, SshError::Timeout { after, .. } if *after == Duration::from_secs(1)),
        "{err:?}"
    );
    assert!(err.to_string().contains("`sleep 30`"), "{err}");
    assert!(took < Duration::from_secs(3), "took {took:?}");
    // A chatty command must time out too.
    let err = s
        .exec(
            "while :; do echo tick; sleep 0.01; done",
            Duration::from_secs(1),
        )
        .unwrap_err();
    assert!(matches!(err, SshError::Timeout { .. }), "{err:?}");
    assert_eq!(s.exec("echo ok", T).unwrap().stdout, "ok\n");
}

#[test]
fn upload_writes_content_and_mode_atomically() {
    let Some((sshd, key)) = server_with_key() else {
        return;
    };
    let mut s = login(&sshd, &key);
    let path = sshd.dir().join("uploaded file");
    let remote = path.to_str().unwrap();
    let content: Vec<u8> = (0..=255u8).cycle().take(300_000).collect();
    s.upload(remote, &content, 0o640).unwrap();

    let q = format!("'{remote}'");
    let out = s.exec_checked(&format!("stat -c %a {q}"), T).unwrap();
    assert_eq!(out.stdout.trim(), "640");
    let out = s.exec_checked(&format!("sha256sum {q}"), T).unwrap();
    let want = hex::encode(Sha256::digest(&content));
    assert!(out.stdout.starts_with(&want), "{} vs {want}", out.stdout);

    // Overwrite with new content and a tighter mode; no temporary file is left behind.
    s.upload(remote, b"second\n", 0o600).unwrap();
    let out = s
        .exec_checked(&format!("cat {q}; stat -c %a {q}"), T)
        .unwrap();
    assert_eq!(out.stdout, "second\n600\n");
    let leftovers: Vec<_> = std::fs::read_dir(sshd.dir())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains("legion-upload"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    // A failed upload says where and why.
    let err = s
        .upload("/nonexistent-dir/legion/x", b"x", 0o600)
        .unwrap_err();
    assert!(
        matches!(&err, SshError::CommandFailed { command, .. } if command.contains("/nonexistent-dir/legion/x")),
        "{err:?}"
    );
}

#[test]
fn host_key_is_trusted_on_first_use_and_a_change_is_refused() {
    let Some((mut sshd, key)) = server_with_key() else {
        return;
    };
    let target = me(&sshd);
    let (s, seen) = ssh::connect(&target, Auth::Key(&key), None).unwrap();
    assert_eq!(seen.as_str(), sshd.host_key_fingerprint());
    assert_eq!(s.host_key(), &seen);
    drop(s);

    // Pinned and unchanged: fine.
    let (mut s, again) = ssh::connect(&target, Auth::Key(&key), Some(&seen)).unwrap();
    assert_eq!(again, seen);
    assert!(s.exec("true", T).unwrap().success());
    drop(s);

    sshd.restart_with_new_host_key();
    let new_fp = sshd.host_key_fingerprint();
    assert_ne!(new_fp, seen.as_str());
    let err = ssh::connect(&target, Auth::Key(&key), Some(&seen)).unwrap_err();
    match &err {
        SshError::HostKeyChanged { host, old, new } => {
            assert_eq!(host, &format!("127.0.0.1:{}", sshd.port()));
            assert_eq!(old, &seen);
            assert_eq!(new.as_str(), new_fp);
        }
        other => panic!("expected HostKeyChanged, got {other:?}"),
    }
    let msg = err.to_string();
    assert!(
        msg.contains(seen.as_str()) && msg.contains(&new_fp),
        "{msg}"
    );
    assert!(msg.contains("re-trust it explicitly"), "{msg}");
    // Refused before authenticating: the server never saw a login attempt.
    std::thread::sleep(Duration::from_millis(200));
    let log = sshd.log();
    assert!(!log.contains("Accepted"), "{log}");
    assert!(!log.contains("publickey"), "{log}");

    // The operator re-trusts explicitly (no pin): the new key is reported.
    let (_s, trusted) = ssh::connect(&target, Auth::Key(&key), None).unwrap();
    assert_eq!(trusted.as_str(), new_fp);
    assert_eq!(HostKeyFingerprint::parse(&new_fp).unwrap(), trusted);
}

#[test]
fn unknown_key_is_an_auth_failure_naming_the_key() {
    let Some((sshd, _key)) = server_with_key() else {
        return;
    };
    let stranger = ManagedKey::generate().unwrap();
    let err = ssh::connect(&me(&sshd), Auth::Key(&stranger), None).unwrap_err();
    match &err {
        SshError::AuthFailed { method, detail, .. } => {
            assert_eq!(*method, AuthMethod::PublicKey);
            assert!(detail.contains(stranger.fingerprint()), "{detail}");
        }
        other => panic!("expected AuthFailed, got {other:?}"),
    }
    assert!(!format!("{err} {err:?}").contains("PRIVATE KEY"));
}

#[test]
fn managed_key_is_what_openssh_tools_expect() {
    if Command::new("ssh-keygen").arg("-?").output().is_err() {
        eprintln!("SKIPPED: ssh-keygen not found (install the openssh-client package)");
        return;
    }
    let key = ManagedKey::generate().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let private = dir.path().join("id");
    std::fs::write(&private, key.private_openssh().expose()).unwrap();
    std::fs::set_permissions(
        &private,
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    let derived = Command::new("ssh-keygen")
        .arg("-y")
        .arg("-f")
        .arg(&private)
        .output()
        .unwrap();
    assert!(derived.status.success());
    let derived = String::from_utf8(derived.stdout).unwrap();
    assert_eq!(derived.trim(), key.public_openssh());
    let listed = Command::new("ssh-keygen")
        .arg("-lf")
        .arg(&private)
        .output()
        .unwrap();
    let listed = String::from_utf8(listed.stdout).unwrap();
    assert_eq!(listed.split_whitespace().nth(1), Some(key.fingerprint()));
}

#[test]
fn password_bootstrap_installs_the_managed_key() {
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
    let target = Target::new("127.0.0.1", sshd.port(), user.name);
    let key = ManagedKey::generate().unwrap();

    let err = ssh::connect(&target, Auth::Key(&key), None).unwrap_err();
    assert!(matches!(
        err,
        SshError::AuthFailed {
            method: AuthMethod::PublicKey,
            ..
        }
    ));
    let wrong = Secret::new("not-the-password");
    let err = ssh::connect(&target, Auth::Password(&wrong), None).unwrap_err();
    assert!(
        matches!(
            err,
            SshError::AuthFailed {
                method: AuthMethod::Password,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(!format!("{err} {err:?}").contains("not-the-password"));

    let password = Secret::new(user.password.clone());
    let (mut s, seen) = ssh::connect(&target, Auth::Password(&password), None).unwrap();
    assert_eq!(
        s.install_public_key(key.public_openssh()).unwrap(),
        KeyInstall::Added
    );
    assert_eq!(
        s.install_public_key(key.public_openssh()).unwrap(),
        KeyInstall::AlreadyPresent
    );
    drop(s);

    use std::os::unix::fs::PermissionsExt;
    let ssh_dir = user.home.join(".ssh");
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&ssh_dir), 0o700);
    assert_eq!(mode(&ssh_dir.join("authorized_keys")), 0o600);
    let keys = std::fs::read_to_string(ssh_dir.join("authorized_keys")).unwrap();
    assert_eq!(keys, format!("{}\n", key.public_openssh()));

    // Key login works, pinned to the key seen during the bootstrap.
    let (mut s, _) = ssh::connect(&target, Auth::Key(&key), Some(&seen)).unwrap();
    assert_eq!(s.exec("id -un", T).unwrap().stdout.trim(), user.name);
    drop(s);

    // And needs no password: a server that refuses passwords lets the key in.
    let keys_only = Sshd::start(SshdOpts::default()).unwrap();
    let target = Target::new("127.0.0.1", keys_only.port(), user.name);
    let err = ssh::connect(&target, Auth::Password(&password), None).unwrap_err();
    assert!(
        err.to_string().contains("does not accept passwords"),
        "{err}"
    );
    let (mut s, _) = ssh::connect(&target, Auth::Key(&key), None).unwrap();
    assert!(s.exec("true", T).unwrap().success());
}

#[test]
fn sudo_is_detected() {
    let Some((sshd, key)) = server_with_key() else {
        return;
    };
    let mut s = login(&sshd, &key);
    let status = s.sudo_check().unwrap();
    if sshd::is_root() {
        assert_eq!(status, SudoStatus::Root);
    } else {
        assert_ne!(status, SudoStatus::Root);
    }
    drop(s);

    let _user = crate::test_user_lock();
    let Some(user) = sshd::test_user() else {
        return;
    };
    let sshd = Sshd::start(SshdOpts {
        password_auth: true,
    })
    .unwrap();
    let target = Target::new("127.0.0.1", sshd.port(), user.name);
    let password = Secret::new(user.password.clone());
    let (mut s, _) = ssh::connect(&target, Auth::Password(&password), None).unwrap();
    let sudo_installed = s.exec("command -v sudo", T).unwrap().success();
    if !sudo_installed {
        assert_eq!(s.sudo_check().unwrap(), SudoStatus::Missing);
        eprintln!("SKIPPED: sudo is not installed; Passwordless/NeedsPassword not checked");
        return;
    }
    assert_eq!(s.sudo_check().unwrap(), SudoStatus::NeedsPassword);

    let dropin = std::path::Path::new("/etc/sudoers.d/legiontest-nopasswd");
    struct Remove<'a>(&'a std::path::Path);
    impl Drop for Remove<'_> {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(self.0);
        }
    }
    std::fs::write(dropin, format!("{} ALL=(ALL) NOPASSWD: ALL\n", user.name)).unwrap();
    let _cleanup = Remove(dropin);
    std::fs::set_permissions(dropin, std::os::unix::fs::PermissionsExt::from_mode(0o440)).unwrap();
    assert_eq!(s.sudo_check().unwrap(), SudoStatus::Passwordless);
}

#[test]
fn closed_port_is_refused_quickly() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let key = ManagedKey::generate().unwrap();
    let started = Instant::now();
    let err = ssh::connect(
        &Target::new("127.0.0.1", port, "root"),
        Auth::Key(&key),
        None,
    )
    .unwrap_err();
    assert!(matches!(err, SshError::Refused { .. }), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(
        err.to_string().contains(&format!("127.0.0.1:{port}")),
        "{err}"
    );
}

#[test]
fn unresolvable_host_is_unreachable() {
    let key = ManagedKey::generate().unwrap();
    let err = ssh::connect(
        &Target::new("no-such-host.invalid", 22, "root"),
        Auth::Key(&key),
        None,
    )
    .unwrap_err();
    assert!(matches!(err, SshError::Unreachable { .. }), "{err:?}");
    assert!(err.to_string().contains("no-such-host.invalid"), "{err}");
}

#[test]
fn silent_server_times_out_in_the_handshake() {
    // Accepts TCP (the kernel does, from the backlog) but never speaks SSH.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let key = ManagedKey::generate().unwrap();
    let opts = ConnectOptions {
        handshake_timeout: Duration::from_secs(1),
        ..ConnectOptions::default()
    };
    let started = Instant::now();
    let err = ssh::connect_with(
        &Target::new("127.0.0.1", port, "root"),
        Auth::Key(&key),
        None,
        &opts,
    )
    .unwrap_err();
    assert!(
        matches!(&err, SshError::Timeout { during, .. } if during.contains("handshake")),
        "{err:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    drop(listener);
}

#[test]
fn dropped_connection_is_an_error_not_a_hang() {
    let Some((sshd, key)) = server_with_key() else {
        return;
    };
    let mut s = login(&sshd, &key);
    let (tx, rx) = mpsc::channel();
    let worker = std::thread::spawn(move || {
        let result = s.exec("sleep 60", Duration::from_secs(120));
        tx.send(result).unwrap();
        s
    });
    // Wait until the command runs, then kill the server side of the session.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !sshd.session_processes().iter().any(|(_, c)| c == "sleep") {
        assert!(
            Instant::now() < deadline,
            "the remote command never started"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    sshd.kill_sessions();
    let result = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("exec hung after the connection dropped");
    let err = result.unwrap_err();
    assert!(matches!(err, SshError::Disconnected { .. }), "{err:?}");
    assert!(err.to_string().contains("connection lost"), "{err}");

    // The session stays an error, never a hang.
    let mut s = worker.join().unwrap();
    let started = Instant::now();
    assert!(s.exec("true", Duration::from_secs(5)).is_err());
    assert!(started.elapsed() < Duration::from_secs(6));
}
