//! The node log tail against a real sshd on loopback:
//! - throughput: a 64 MiB log file read through the tail thread and its mailbox to a
//!   consumer that takes a batch on every wake-up (as the UI does), against plain
//!   `ssh -i KEY host cat FILE` into a pipe that counts lines;
//! - latency: one line appended to a followed file (`tail -F`, as the tail runs it) until
//!   the consumer has it; median of 20.
//!
//! `cargo bench --bench tail` (needs sshd; says so and exits otherwise)

#![allow(clippy::unwrap_used, dead_code)]

use legion_testkit::sshd;

use std::io::{Read, Write};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use legion::ssh::SshAccess;
use legion::ssh::tail::{self, TailState};
use legion::ssh::{ManagedKey, Target};

const MIB: usize = 64;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn log_file(path: &std::path::Path) -> usize {
    let mut out = String::with_capacity((MIB << 20) + 256);
    let mut i = 0u64;
    while out.len() < MIB << 20 {
        out.push_str(&format!(
            "2026-11-23T14:05:{:02}Z web-1 app[4242]: GET /api/v1/items/{i} 200 {}ms user=ops-{}\n",
            i % 60,
            i % 97,
            i % 13
        ));
        i += 1;
    }
    std::fs::write(path, out).unwrap();
    i as usize
}

/// Run `command` through a tail thread; returns the lines received and the time until the
/// command ended.
fn through_tail(access: &SshAccess, command: &str) -> (usize, Duration) {
    let mut access = access.clone();
    access.log_command = command.to_string();
    let (tx, woke) = mpsc::channel();
    let start = Instant::now();
    let handle = tail::spawn("bench", access, move || tx.send(()).is_ok()).unwrap();
    let mut count = 0;
    loop {
        let _ = woke.recv_timeout(Duration::from_millis(100));
        let batch = handle.take();
        count += batch.lines.len() + batch.dropped as usize;
        if let Some(TailState::Closed(why)) = batch.state {
            assert!(why.contains("exit status 0"), "{why}");
            return (count, start.elapsed());
        }
        assert!(start.elapsed() < Duration::from_secs(300), "too slow");
    }
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let Some(sshd) = sshd::Sshd::start(sshd::SshdOpts::default()) else {
        return;
    };
    let user = if sshd::is_root() {
        sshd::test_user().unwrap().name.to_string()
    } else {
        sshd::current_user()
    };
    let key = ManagedKey::generate().unwrap();
    sshd.authorize_user(&user, key.public_openssh());
    let dir = tempfile::Builder::new()
        .prefix("legion-tail-bench-")
        .tempdir()
        .unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let big = dir.path().join("big.log");
    let lines = log_file(&big);
    std::fs::set_permissions(&big, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let access = SshAccess {
        target: Target::new("127.0.0.1", sshd.port(), user.clone()),
        key: key.clone(),
        pinned: None,
        sudo: false,
        root: String::new(),
        log_command: String::new(),
    };

    // Throughput through the tail thread.
    let mut runs = Vec::new();
    for _ in 0..3 {
        let (got, took) = through_tail(&access, &format!("exec cat {}", big.display()));
        assert_eq!(got, lines, "every line arrives");
        runs.push(took);
    }
    let tail_t = median(runs);

    // Plain ssh into a pipe that counts lines.
    let key_path = dir.path().join("key");
    {
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .mode(0o600)
            .open(&key_path)
            .unwrap();
        f.write_all(key.private_openssh().expose().as_bytes())
            .unwrap();
    }
    let mut runs = Vec::new();
    for _ in 0..3 {
        let start = Instant::now();
        let mut child = std::process::Command::new("ssh")
            .args(["-i"])
            .arg(&key_path)
            .args([
                "-o",
                "StrictHostKeyChecking=no",
                "-o",
                "UserKnownHostsFile=/dev/null",
                "-o",
                "LogLevel=ERROR",
                "-o",
                "BatchMode=yes",
                "-p",
                &sshd.port().to_string(),
                &format!("{user}@127.0.0.1"),
                &format!("cat {}", big.display()),
            ])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut out = child.stdout.take().unwrap();
        let mut buf = vec![0u8; 64 * 1024];
        let mut count = 0usize;
        loop {
            let n = out.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            count += buf[..n].iter().filter(|&&b| b == b'\n').count();
        }
        assert!(child.wait().unwrap().success());
        assert_eq!(count, lines);
        runs.push(start.elapsed());
    }
    let ssh_t = median(runs);
    let mib = |t: Duration| MIB as f64 / t.as_secs_f64();
    println!(
        "log tail throughput, {MIB} MiB ({lines} lines), median of 3: tail thread + mailbox {:.1} MiB/s ({:.0} lines/s, {:.2} s); plain ssh | count {:.1} MiB/s ({:.2} s); ratio {:.2}",
        mib(tail_t),
        lines as f64 / tail_t.as_secs_f64(),
        tail_t.as_secs_f64(),
        mib(ssh_t),
        ssh_t.as_secs_f64(),
        tail_t.as_secs_f64() / ssh_t.as_secs_f64()
    );

    // Latency: append one line to a followed file.
    let followed = dir.path().join("app.log");
    std::fs::write(&followed, "start\n").unwrap();
    std::fs::set_permissions(
        &followed,
        std::os::unix::fs::PermissionsExt::from_mode(0o666),
    )
    .unwrap();
    let mut access_f = access.clone();
    access_f.log_command = format!("exec tail -n 1 -s 0.25 -F -- {} 2>&1", followed.display());
    let (tx, woke) = mpsc::channel();
    let handle = tail::spawn("bench", access_f, move || tx.send(()).is_ok()).unwrap();
    let wait_for = |needle: &str| -> Duration {
        let start = Instant::now();
        loop {
            let _ = woke.recv_timeout(Duration::from_millis(50));
            if handle.take().lines.iter().any(|l| l == needle) {
                return start.elapsed();
            }
            assert!(start.elapsed() < Duration::from_secs(10), "lost {needle}");
        }
    };
    wait_for("start");
    let mut samples = Vec::new();
    for i in 0..20 {
        std::thread::sleep(Duration::from_millis(100));
        let line = format!("appended {i}");
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&followed)
            .unwrap();
        let start = Instant::now();
        writeln!(f, "{line}").unwrap();
        drop(f);
        let _ = wait_for(&line);
        samples.push(start.elapsed());
    }
    let max = samples.iter().max().copied().unwrap();
    println!(
        "log tail latency (tail -F, one appended line until the consumer has it), median of 20: {:.1} ms (max {:.1} ms)",
        median(samples).as_secs_f64() * 1000.0,
        max.as_secs_f64() * 1000.0
    );
}
