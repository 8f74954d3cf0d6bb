//! The Legion home as files on a shared host (issue 14 §4–5): what Legion creates is
//! private from its first byte, read-only commands write nothing, and a home that is
//! read-only or holds something other than a regular file at the state path gives a
//! clear error, fast, never a panic or a hang.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// `legion` on `home` with a password file; nothing from the test's environment leaks in.
fn legion(home: &Path, pw: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_legion"));
    c.arg("--home")
        .arg(home)
        .arg("--password-file")
        .arg(pw)
        .env_remove("LEGION_HOME")
        .env_remove("LEGION_PASSWORD_FILE")
        .env_remove("LEGION_DAEMON_TOKEN")
        .stdin(Stdio::null());
    c
}

/// Runs `c`, killing it after `limit`: (exit code, stdout, stderr). A command that had
/// to be killed fails the test with what it printed.
fn run(c: &mut Command, limit: Duration) -> (i32, String, String) {
    let mut child = c
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if start.elapsed() > limit {
            child.kill().unwrap();
            let out = child.wait_with_output().unwrap();
            panic!(
                "still running after {limit:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

const LIMIT: Duration = Duration::from_secs(60);

/// A home with a state (`config init`) and its password file, in a fresh temp dir.
fn initialized() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let pw = dir.path().join("pw");
    std::fs::write(&pw, "correct horse\n").unwrap();
    let home = dir.path().join("home");
    let (code, _, err) = run(legion(&home, &pw).args(["config", "init"]), LIMIT);
    assert_eq!(code, 0, "{err}");
    (dir, home, pw)
}

fn mode(p: &Path) -> u32 {
    std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o777
}

#[test]
fn read_only_commands_leave_the_state_and_its_backup_untouched() {
    let (_dir, home, pw) = initialized();
    // One command that writes (the first unlock completes the state), so a .bak exists.
    let (code, _, err) = run(legion(&home, &pw).args(["nodes", "list"]), LIMIT);
    assert_eq!(code, 0, "{err}");
    let state = home.join("state.legion");
    let bak = home.join("state.legion.bak");
    let before = (std::fs::read(&state).unwrap(), std::fs::read(&bak).ok());
    for _ in 0..2 {
        let (code, _, err) = run(legion(&home, &pw).args(["nodes", "list"]), LIMIT);
        assert_eq!(code, 0, "{err}");
    }
    let after = (std::fs::read(&state).unwrap(), std::fs::read(&bak).ok());
    assert!(
        before == after,
        "nodes list rewrote the state or rotated its backup"
    );
}

#[test]
fn a_fifo_at_the_state_path_fails_fast_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let pw = dir.path().join("pw");
    std::fs::write(&pw, "correct horse\n").unwrap();
    let home = dir.path().join("home");
    std::fs::create_dir(&home).unwrap();
    let fifo = home.join("state.legion");
    let made = Command::new("mkfifo").arg(&fifo).status();
    if !made.is_ok_and(|s| s.success()) {
        eprintln!("skipped: `mkfifo` is not available to make a FIFO");
        return;
    }
    let (code, _, err) = run(
        legion(&home, &pw).args(["nodes", "list"]),
        Duration::from_secs(20),
    );
    assert_ne!(code, 0);
    assert_ne!(code, 101, "a panic: {err}");
    assert!(err.contains("is a FIFO, not a regular file"), "{err}");
}

#[test]
fn a_symlinked_state_file_is_refused_and_its_target_left_alone() {
    let (dir, home, pw) = initialized();
    let state = home.join("state.legion");
    let elsewhere = dir.path().join("elsewhere.legion");
    std::fs::rename(&state, &elsewhere).unwrap();
    std::os::unix::fs::symlink(&elsewhere, &state).unwrap();
    let before = std::fs::read(&elsewhere).unwrap();
    let (code, _, err) = run(legion(&home, &pw).args(["nodes", "list"]), LIMIT);
    assert_ne!(code, 0);
    assert!(
        err.contains("is a symbolic link, not a regular file"),
        "{err}"
    );
    assert!(std::fs::symlink_metadata(&state).unwrap().is_symlink());
    assert_eq!(std::fs::read(&elsewhere).unwrap(), before);
}

#[test]
fn the_home_logs_and_every_file_are_private_from_creation() {
    let (_dir, home, pw) = initialized();
    let (code, _, err) = run(legion(&home, &pw).args(["nodes", "list"]), LIMIT);
    assert_eq!(code, 0, "{err}");
    assert_eq!(mode(&home), 0o700);
    assert_eq!(mode(&home.join("logs")), 0o700);
    let mut files = 0;
    for dir in [home.clone(), home.join("logs")] {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            if entry.file_type().unwrap().is_file() {
                files += 1;
                let m = mode(&entry.path());
                assert_eq!(m, 0o600, "{} is {m:04o}", entry.path().display());
            }
        }
    }
    let logs: Vec<_> = std::fs::read_dir(home.join("logs"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        logs.iter().any(|n| n.starts_with("legion.log.")),
        "{logs:?}"
    );
    assert!(logs.iter().any(|n| n == "operations.jsonl"), "{logs:?}");
    assert!(files >= 4, "state, lock, two logs: {files}");
}

#[test]
fn a_loose_existing_home_is_tightened_with_a_warning() {
    let (_dir, home, pw) = initialized();
    std::fs::set_permissions(&home, std::fs::Permissions::from_mode(0o755)).unwrap();
    let (code, _, err) = run(legion(&home, &pw).args(["nodes", "list"]), LIMIT);
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("from 0755 to 0700") && err.contains("warning"),
        "{err}"
    );
    assert_eq!(mode(&home), 0o700);
    let (code, _, err) = run(legion(&home, &pw).args(["nodes", "list"]), LIMIT);
    assert_eq!(code, 0, "{err}");
    assert!(!err.contains("warning"), "said once: {err}");
}

#[test]
fn diagnostics_logs_are_pruned_to_the_retention_count() {
    let (_dir, home, pw) = initialized();
    let logs = home.join("logs");
    for day in 1..=20 {
        std::fs::write(logs.join(format!("legion.log.2020-01-{day:02}")), b"old\n").unwrap();
    }
    let (code, _, err) = run(legion(&home, &pw).args(["nodes", "list"]), LIMIT);
    assert_eq!(code, 0, "{err}");
    let kept = std::fs::read_dir(&logs)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("legion.log."))
        .count();
    assert!(kept <= 14, "{kept} diagnostics files kept");
}

/// Unmounts on drop, also when the test fails.
struct Mounted(PathBuf);

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn a_read_only_home_gives_a_clear_error_not_a_panic() {
    if !rustix::process::geteuid().is_root() {
        eprintln!("skipped: a read-only bind mount needs root");
        return;
    }
    let (dir, home, pw) = initialized();
    let ro = dir.path().join("ro-home");
    std::fs::create_dir(&ro).unwrap();
    let bound = Command::new("mount")
        .arg("--bind")
        .arg(&home)
        .arg(&ro)
        .status();
    if !bound.is_ok_and(|s| s.success()) {
        eprintln!("skipped: `mount --bind` failed (no mount namespace rights here)");
        return;
    }
    let guard = Mounted(ro.clone());
    let remounted = Command::new("mount")
        .args(["-o", "remount,ro,bind"])
        .arg(&ro)
        .status();
    if !remounted.is_ok_and(|s| s.success()) {
        eprintln!("skipped: cannot remount the bind mount read-only");
        return;
    }
    // Root ignores permission bits, not a read-only mount.
    assert!(std::fs::write(ro.join("probe"), b"x").is_err());
    for args in [&["nodes", "list"][..], &["status"][..]] {
        let (code, _, err) = run(legion(&ro, &pw).args(args), LIMIT);
        assert_ne!(code, 101, "{args:?} panicked: {err}");
        assert!(
            err.contains("continuing without the diagnostics log"),
            "said why there is no file log: {err}"
        );
        assert_eq!(
            err.matches("diagnostics log").count(),
            1,
            "said once: {err}"
        );
        if code != 0 {
            assert!(err.contains("Read-only file system"), "{args:?}: {err}");
        }
    }
    drop(guard);
}

#[test]
fn the_simulated_cloud_removes_temporary_files_left_by_a_killed_saver() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(legion::providers::mock::FILE_NAME);
    // No process has this pid (above the kernel's pid_max).
    let dead = dir.path().join(".mock-cloud.json.2147483646.tmp");
    // pid 1 is always alive: its file may be a save in progress.
    let live = dir.path().join(".mock-cloud.json.1.tmp");
    std::fs::write(&dead, b"{").unwrap();
    std::fs::write(&live, b"{").unwrap();
    let cloud = legion::providers::mock::MockCloud::open(&path, 1).unwrap();
    assert!(!dead.exists(), "a dead saver's temporary file is removed");
    assert!(live.exists(), "a live writer's is left alone");
    assert_eq!(mode(&path), 0o600);
    drop(cloud);
}

#[test]
fn the_password_change_says_what_was_re_encrypted() {
    let (dir, home, pw) = initialized();
    // A save first, so a previous generation exists to be dropped.
    let (code, _, err) = run(legion(&home, &pw).args(["nodes", "list"]), LIMIT);
    assert_eq!(code, 0, "{err}");
    let new = dir.path().join("new-pw");
    std::fs::write(&new, "battery staple\n").unwrap();
    let (code, out, err) = run(
        legion(&home, &pw)
            .args(["config", "passwd", "--new-password-file"])
            .arg(&new),
        LIMIT,
    );
    assert_eq!(code, 0, "{err}");
    let state = home.join("state.legion");
    for said in [
        format!(
            "{} (plans, tracked resources, provider credentials",
            state.display()
        ),
        "re-encrypted under a new salt and key".to_string(),
        format!("{}.bak was deleted", state.display()),
        "copies made outside Legion".to_string(),
    ] {
        assert!(out.contains(&said), "{said:?} missing from:\n{out}");
    }
    assert!(!home.join("state.legion.bak").exists());
}
