//! The terminal pane against plain `ssh`, both inside the same tmux (200x50), against a
//! real sshd on loopback (a Hetzner node from the local fake points at it):
//! - throughput: `cat` of a file of dense coloured output until a marker shows on screen;
//! - keystroke echo: one character typed at the remote shell until it shows on screen
//!   (median of 20; includes tmux's own send-keys and capture-pane, the same for both).
//!
//! `cargo bench --bench pane` (needs sshd and tmux; says so and exits otherwise)

#![allow(clippy::unwrap_used, dead_code)]

use legion_testkit::rig as cloud_rig;
use legion_testkit::tmux;

use std::time::{Duration, Instant};

const MB: usize = 8;

fn dense_file(path: &std::path::Path) {
    let mut out = String::new();
    let mut i = 0u32;
    while out.len() < MB << 20 {
        for c in 0..16u32 {
            out.push_str(&format!(
                "\x1b[38;5;{}m{:04x}\x1b[48;5;{}m colour \x1b[1m bold \x1b[0m",
                (i + c) % 256,
                i,
                (i * 7 + c) % 256
            ));
        }
        out.push('\n');
        i += 1;
    }
    std::fs::write(path, out).unwrap();
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// Time from `cat` to the marker on screen.
fn throughput(t: &tmux::Tmux, file: &std::path::Path) -> Duration {
    t.text(&format!(
        "clear; cat {}; echo CAT-DONE-$((6*7))",
        file.display()
    ));
    let start = Instant::now();
    t.keys(&["Enter"]);
    t.wait("the cat to finish", |s| s.contains("CAT-DONE-42"));
    start.elapsed()
}

/// Median time from typing a character to seeing it, and how many of the 20 keystrokes
/// never showed (within 2 s).
fn echo_latency(t: &tmux::Tmux) -> (Duration, usize) {
    std::thread::sleep(Duration::from_millis(500));
    let mut lost = 0;
    let mut samples = Vec::new();
    for i in 0..20u8 {
        let marker = format!("k{i:02}");
        t.text(&marker);
        std::thread::sleep(Duration::from_millis(50));
        let c = char::from(b'a' + i % 26);
        let needle = format!("{marker}{c}");
        let start = Instant::now();
        t.type_now(&c.to_string());
        // Poll tightly: the harness's 50 ms poll would hide the difference.
        loop {
            if t.screen().contains(&needle) {
                samples.push(start.elapsed());
                break;
            }
            if start.elapsed() > Duration::from_secs(2) {
                lost += 1;
                break;
            }
        }
        t.keys(&["C-u"]);
    }
    (median(samples), lost)
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
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
    let file = rig.sandbox().join("dense.txt");
    dense_file(&file);
    let key = rig.dir.path().join("key");
    rig.ok(&["ssh-key", "export", "--path", key.to_str().unwrap()]);

    // Through the pane.
    let cmd = format!(
        "env {} TERM=xterm-256color {}; sleep 600",
        rig.env_line(),
        env!("CARGO_BIN_EXE_legion")
    );
    let Some(t) = tmux::Tmux::start(&cmd, 200, 50) else {
        return;
    };
    t.wait("the node", |s| s.contains("│hz-1 "));
    t.text("s");
    t.wait("the shell", |s| {
        s.lines()
            .nth(1)
            .is_some_and(|l| l.starts_with(" ssh  1 hz-1") && !l.contains('…'))
    });
    t.text("export PS1='$ '");
    t.keys(&["Enter"]);
    let pane_echo = echo_latency(&t);
    let pane = throughput(&t, &file);
    drop(t);

    // Plain ssh in the same tmux.
    let ssh = format!(
        "ssh -tt -i {} -p {} -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null \
         -o LogLevel=ERROR {}@127.0.0.1; sleep 600",
        key.display(),
        rig.sshd.port(),
        rig.user
    );
    let t = tmux::Tmux::start(&ssh, 200, 50).unwrap();
    t.text("export PS1='$ '");
    t.keys(&["Enter"]);
    std::thread::sleep(Duration::from_millis(500));
    let plain_echo = echo_latency(&t);
    let plain = throughput(&t, &file);

    let mb = (std::fs::metadata(&file).unwrap().len() as f64) / (1 << 20) as f64;
    println!(
        "dense coloured output ({mb:.1} MiB) at 200x50: pane {:.1} MiB/s ({:.2} s), plain ssh in tmux {:.1} MiB/s ({:.2} s); ratio {:.2}",
        mb / pane.as_secs_f64(),
        pane.as_secs_f64(),
        mb / plain.as_secs_f64(),
        plain.as_secs_f64(),
        pane.as_secs_f64() / plain.as_secs_f64()
    );
    println!(
        "keystroke echo, median of 20 (tmux send-keys + capture-pane included): pane {:.1} ms ({} not echoed), plain ssh {:.1} ms ({} not echoed)",
        pane_echo.0.as_secs_f64() * 1e3,
        pane_echo.1,
        plain_echo.0.as_secs_f64() * 1e3,
        plain_echo.1
    );
}
