//! The terminal pane and the log tail end to end, against the same real sshd on loopback
//! (a Hetzner node from the local fake points at it), each beside its reference: the real
//! `legion` dashboard in a tmux session of 200x50 against plain `ssh` in the same kind of
//! session.
//! - bulk output: `seq 1 3000000`, `cat` of a 50 MiB text file and of an 8 MiB file of
//!   dense colour changes, each until its end marker is on the screen (tmux
//!   `capture-pane` polled every 10 ms; the same poll for both);
//! - keystroke echo: one character typed at the remote shell until it is on the screen
//!   (median of 30; tmux's own `send-keys` and `capture-pane` included, the same for both);
//! - the log tail: 50 MiB appended to a followed file, the dashboard's `T` panel against
//!   `ssh host tail -F FILE` in tmux (the command the tail runs), until the last line shows;
//! - CPU seconds (`/proc/PID/stat` utime + stime) of the `legion` process and of the tmux
//!   server drawing it, against `ssh` and its tmux server, for each of the above.
//!
//! `cargo bench --bench pane [-- WORKLOAD… legion|ssh perf]`: workloads `echo`, `seq`,
//! `cat`, `dense`, `tail` (all by default); `legion` or `ssh` runs one side only; `perf`
//! records a profile of the legion process per bulk workload into `target/perf-NAME.data`
//! (`perf report -i …`). Needs sshd and tmux; says so and exits otherwise.

#![allow(clippy::unwrap_used, dead_code)]

#[path = "common/e2e.rs"]
mod e2e;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use e2e::{CpuMeter, Tmux, median};
use legion_testkit::rig as cloud_rig;

const WIDTH: u16 = 200;
const HEIGHT: u16 = 50;
const POLL: Duration = Duration::from_millis(10);
const LIMIT: Duration = Duration::from_secs(300);
const ECHOES: usize = 30;

/// What one side measured for one bulk workload.
#[derive(Debug, Clone, Copy, Default)]
struct Bulk {
    secs: f64,
    /// CPU seconds of the program in the pane (legion or ssh).
    cpu_prog: f64,
    /// CPU seconds of the tmux server showing it.
    cpu_tmux: f64,
}

struct Args {
    workloads: Vec<String>,
    legion: bool,
    ssh: bool,
    perf: bool,
}

impl Args {
    fn parse() -> Args {
        let all = ["echo", "seq", "cat", "dense", "tail"];
        let given: Vec<String> = std::env::args().skip(1).collect();
        let mut workloads: Vec<String> = given
            .iter()
            .filter(|a| all.contains(&a.as_str()))
            .cloned()
            .collect();
        if workloads.is_empty() {
            workloads = all.iter().map(|s| s.to_string()).collect();
        }
        let legion = given.iter().any(|a| a == "legion");
        let ssh = given.iter().any(|a| a == "ssh");
        Args {
            workloads,
            legion: legion || !ssh,
            ssh: ssh || !legion,
            perf: given.iter().any(|a| a == "perf"),
        }
    }

    fn has(&self, w: &str) -> bool {
        self.workloads.iter().any(|x| x == w)
    }
}

fn text_file(path: &Path, mib: usize) -> usize {
    let mut out = String::with_capacity((mib << 20) + 256);
    let mut i = 0u64;
    while out.len() < mib << 20 {
        out.push_str(&format!(
            "2026-11-23T14:05:{:02}Z web-1 app[4242]: GET /api/v1/items/{i} 200 {}ms user=ops-{}\n",
            i % 60,
            i % 97,
            i % 13
        ));
        i += 1;
    }
    std::fs::write(path, &out).unwrap();
    out.len()
}

fn dense_file(path: &Path) -> usize {
    let mut out = String::new();
    let mut i = 0u32;
    while out.len() < 8 << 20 {
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
    std::fs::write(path, &out).unwrap();
    out.len()
}

/// `perf record` on `pid` until dropped (then SIGINT, so perf writes its file).
struct Perf(Option<Child>);

impl Perf {
    fn start(on: bool, pid: u32, name: &str) -> Perf {
        if !on {
            return Perf(None);
        }
        let out = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("target")
            .join(format!("perf-{name}.data"));
        let child = Command::new("perf")
            .args([
                "record",
                "-q",
                "-F",
                "1999",
                "-g",
                "-p",
                &pid.to_string(),
                "-o",
            ])
            .arg(&out)
            .stdout(std::process::Stdio::null())
            .spawn();
        match child {
            Ok(c) => {
                std::thread::sleep(Duration::from_millis(300));
                Perf(Some(c))
            }
            Err(e) => {
                println!("perf not started ({e}); no profile");
                Perf(None)
            }
        }
    }
}

impl Drop for Perf {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = Command::new("kill")
                .args(["-INT", &c.id().to_string()])
                .status();
            let _ = c.wait();
        }
    }
}

/// Run `command` at the shell in `t` (after a `clear`) and time it until `marker` is on
/// the screen. The command line is typed first; the clock starts at the Enter.
fn bulk(t: &Tmux, pids: [u32; 2], command: &str, marker: &str, perf: Perf) -> Bulk {
    t.line("clear");
    t.wait("a clear screen", |s| !s.contains("DONE-42"));
    t.text(command);
    std::thread::sleep(Duration::from_millis(300));
    let cpu = CpuMeter::start(&pids);
    let start = Instant::now();
    t.keys(&["Enter"]);
    let (_, at) = t.wait_every(marker, POLL, LIMIT, |s| {
        s.lines().any(|l| l.trim_end() == marker)
    });
    let used = cpu.read();
    drop(perf);
    Bulk {
        secs: (at - start).as_secs_f64(),
        cpu_prog: used[0],
        cpu_tmux: used[1],
    }
}

/// Median time from typing a character to seeing it, and how many never showed (2 s).
fn echo_latency(t: &Tmux) -> (Duration, usize) {
    t.line("clear");
    std::thread::sleep(Duration::from_millis(500));
    let mut lost = 0;
    let mut samples = Vec::new();
    for i in 0..ECHOES {
        let marker = format!("k{i:02}");
        t.text(&marker);
        std::thread::sleep(Duration::from_millis(80));
        let c = char::from(b'a' + (i % 26) as u8);
        let needle = format!("{marker}{c}");
        let start = Instant::now();
        t.text(&c.to_string());
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
        std::thread::sleep(Duration::from_millis(40));
    }
    (median(samples), lost)
}

#[derive(Default)]
struct Side {
    echo: Option<(Duration, usize)>,
    bulk: Vec<(&'static str, f64, Bulk)>,
}

/// The workloads of `args` at the shell in `t`, whose program is `prog`.
fn shell_side(args: &Args, t: &Tmux, prog: u32, files: &Files, name: &str) -> Side {
    let pids = [prog, t.server_pid()];
    let mut side = Side::default();
    if args.has("echo") {
        let (d, lost) = echo_latency(t);
        println!(
            "  {name}: keystroke echo median {:.1} ms ({lost} lost)",
            d.as_secs_f64() * 1e3
        );
        side.echo = Some((d, lost));
    }
    let perf = |w: &str| Perf::start(args.perf && name == "legion", prog, w);
    if args.has("seq") {
        let b = bulk(
            t,
            pids,
            "seq 1 3000000; echo SEQ-DONE-$((6*7))",
            "SEQ-DONE-42",
            perf("seq"),
        );
        println!("  {name}: seq {b:?}");
        side.bulk.push(("seq 1 3000000", files.seq_mib, b));
    }
    if args.has("cat") {
        let cmd = format!("cat {}; echo CAT-DONE-$((6*7))", files.text.display());
        let b = bulk(t, pids, &cmd, "CAT-DONE-42", perf("cat"));
        println!("  {name}: cat {b:?}");
        side.bulk.push(("cat 50 MiB text", files.text_mib, b));
    }
    if args.has("dense") {
        let cmd = format!("cat {}; echo DENSE-DONE-$((6*7))", files.dense.display());
        let b = bulk(t, pids, &cmd, "DENSE-DONE-42", perf("dense"));
        println!("  {name}: dense {b:?}");
        side.bulk
            .push(("cat 8 MiB dense colour", files.dense_mib, b));
    }
    side
}

struct Files {
    text: PathBuf,
    text_mib: f64,
    dense: PathBuf,
    dense_mib: f64,
    seq_mib: f64,
}

/// Append `text` and the end marker to `log` and time until the marker shows in `t`.
fn tail_append(t: &Tmux, pids: [u32; 2], log: &Path, text: &Path, perf: Perf) -> Bulk {
    let content = std::fs::read(text).unwrap();
    let cpu = CpuMeter::start(&pids);
    let start = Instant::now();
    {
        let mut f = std::fs::OpenOptions::new().append(true).open(log).unwrap();
        f.write_all(&content).unwrap();
        f.write_all(b"TAIL-DONE-42\n").unwrap();
    }
    let (_, at) = t.wait_every("the last line", POLL, LIMIT, |s| s.contains("TAIL-DONE-42"));
    let used = cpu.read();
    drop(perf);
    Bulk {
        secs: (at - start).as_secs_f64(),
        cpu_prog: used[0],
        cpu_tmux: used[1],
    }
}

fn followed(dir: &Path, name: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, "start\n").unwrap();
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o666)).unwrap();
    path
}

fn print_bulk(name: &str, mib: f64, legion: Option<Bulk>, ssh: Option<Bulk>) {
    let one = |who: &str, prog: &str, b: Bulk| {
        format!(
            "{who} {:.2} s ({:.1} MiB/s; CPU {prog} {:.2} s + tmux {:.2} s = {:.3} s/MiB)",
            b.secs,
            mib / b.secs,
            b.cpu_prog,
            b.cpu_tmux,
            (b.cpu_prog + b.cpu_tmux) / mib
        )
    };
    let mut line = format!("{name} ({mib:.1} MiB):");
    if let Some(l) = legion {
        line.push_str(&format!(" {};", one("legion", "legion", l)));
    }
    if let Some(s) = ssh {
        line.push_str(&format!(" {};", one("ssh in tmux", "ssh", s)));
    }
    if let (Some(l), Some(s)) = (legion, ssh) {
        line.push_str(&format!(
            " time ratio {:.2}, CPU ratio legion/ssh+tmux {:.2}, legion/tmux-of-ssh {:.2}",
            l.secs / s.secs,
            (l.cpu_prog + l.cpu_tmux) / (s.cpu_prog + s.cpu_tmux),
            l.cpu_prog / s.cpu_tmux.max(0.01)
        ));
    }
    println!("{line}");
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let args = Args::parse();
    let Some(rig) = cloud_rig::Rig::hetzner() else {
        return;
    };
    // The tail follows the role's log file (relative to the node root the rig sets).
    let roles = rig.home().join("roles");
    std::fs::create_dir_all(&roles).unwrap();
    std::fs::write(roles.join("web.logs"), "/app.log\n").unwrap();
    // Every planned role needs its install script (Legion's default install, with the role).
    std::fs::write(
        roles.join("web.sh"),
        "#!/bin/sh\nset -e\nmkdir -p \"$LEGION_ROOT/var/lib/legion\"\ndate > \"$LEGION_ROOT/var/lib/legion/installed\"\n",
    )
    .unwrap();
    rig.ok(&[
        "nodes",
        "add",
        "hz-1",
        "--provider",
        "hetzner",
        "--role",
        "web",
        "--apply",
        "--wait",
    ]);
    let sandbox = rig.sandbox();
    let text = sandbox.join("text.txt");
    let dense = sandbox.join("dense.txt");
    let files = Files {
        text_mib: text_file(&text, 50) as f64 / f64::from(1 << 20),
        text,
        dense_mib: dense_file(&dense) as f64 / f64::from(1 << 20),
        dense,
        // 1..=3000000 with newlines, as the remote's terminal turns them into CRLF.
        seq_mib: (1..=3_000_000u64)
            .map(|n| n.to_string().len() + 2)
            .sum::<usize>() as f64
            / f64::from(1 << 20),
    };
    let key = rig.dir.path().join("key");
    rig.ok(&["ssh-key", "export", "--path", key.to_str().unwrap()]);
    let ssh = |remote: &str| {
        format!(
            "ssh -tt -i {} -p {} -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null \
             -o LogLevel=ERROR {}@127.0.0.1 {remote}; sleep 600",
            key.display(),
            rig.sshd.port(),
            rig.user
        )
    };
    let dashboard = format!(
        "env {} TERM=xterm-256color {}; sleep 600",
        rig.env_line(),
        rig.bin.display()
    );
    let shell_work = ["echo", "seq", "cat", "dense"].iter().any(|w| args.has(w));

    let mut legion_side = None;
    if args.legion && shell_work {
        let t = Tmux::start("pane", &dashboard, WIDTH, HEIGHT).unwrap();
        let prog = t.child("legion");
        t.wait("the node", |s| s.contains("│hz-1 "));
        t.text("s");
        t.wait("the shell", |s| {
            s.lines()
                .nth(1)
                .is_some_and(|l| l.starts_with(" ssh  1 hz-1") && !l.contains('…'))
        });
        t.line("export PS1='$ '; echo READY-$((6*7))");
        t.wait("the prompt", |s| {
            // Typed before the first prompt shows, the output follows that prompt.
            s.lines()
                .any(|l| l.trim_end().ends_with("READY-42") && !l.contains("echo"))
        });
        legion_side = Some(shell_side(&args, &t, prog, &files, "legion"));
    }
    let mut ssh_side = None;
    if args.ssh && shell_work {
        let t = Tmux::start("ssh", &ssh(""), WIDTH, HEIGHT).unwrap();
        let prog = t.child("ssh");
        t.line("export PS1='$ '; echo READY-$((6*7))");
        t.wait("the prompt", |s| {
            // Typed before the first prompt shows, the output follows that prompt.
            s.lines()
                .any(|l| l.trim_end().ends_with("READY-42") && !l.contains("echo"))
        });
        ssh_side = Some(shell_side(&args, &t, prog, &files, "ssh"));
    }

    let mut tail = (None, None);
    if args.has("tail") {
        if args.legion {
            let log = followed(&sandbox, "app.log");
            let t = Tmux::start("tail", &dashboard, WIDTH, HEIGHT).unwrap();
            let prog = t.child("legion");
            t.wait("the node", |s| s.contains("│hz-1 "));
            t.text("T");
            t.wait("the tail", |s| {
                s.contains("Logs of hz-1 · following") && s.contains("start")
            });
            let perf = Perf::start(args.perf, prog, "tail");
            tail.0 = Some(tail_append(
                &t,
                [prog, t.server_pid()],
                &log,
                &files.text,
                perf,
            ));
            println!("  legion: tail {:?}", tail.0);
        }
        if args.ssh {
            let log = followed(&sandbox, "app2.log");
            let remote = format!("tail -n 200 -s 0.25 -F -- {}", log.display());
            let t = Tmux::start("tail-ssh", &ssh(&remote), WIDTH, HEIGHT).unwrap();
            let prog = t.child("ssh");
            t.wait("the tail", |s| s.lines().any(|l| l.trim_end() == "start"));
            tail.1 = Some(tail_append(
                &t,
                [prog, t.server_pid()],
                &log,
                &files.text,
                Perf(None),
            ));
        }
    }

    println!("--- terminal pane end to end, {WIDTH}x{HEIGHT}, same sshd ---");
    let echo = |s: &Option<Side>| s.as_ref().and_then(|s| s.echo);
    let (l, s) = (echo(&legion_side), echo(&ssh_side));
    if l.is_some() || s.is_some() {
        let ms = |e: Option<(Duration, usize)>| {
            e.map_or("-".into(), |(d, lost)| {
                format!("{:.1} ms ({lost} lost)", d.as_secs_f64() * 1e3)
            })
        };
        let diff = match (l, s) {
            (Some(l), Some(s)) => format!(
                "; legion − ssh {:+.1} ms",
                (l.0.as_secs_f64() - s.0.as_secs_f64()) * 1e3
            ),
            _ => String::new(),
        };
        println!(
            "keystroke echo, median of {ECHOES} (send-keys + capture-pane included): legion {}, ssh in tmux {}{diff}",
            ms(l),
            ms(s)
        );
    }
    let bulks = |s: &Option<Side>| s.as_ref().map(|s| s.bulk.clone()).unwrap_or_default();
    let (lb, sb) = (bulks(&legion_side), bulks(&ssh_side));
    let names: Vec<(&str, f64)> = lb.iter().chain(&sb).map(|(n, m, _)| (*n, *m)).collect();
    let mut seen = Vec::new();
    for (name, mib) in names {
        if seen.contains(&name) {
            continue;
        }
        seen.push(name);
        let find = |v: &Vec<(&str, f64, Bulk)>| v.iter().find(|x| x.0 == name).map(|x| x.2);
        print_bulk(name, mib, find(&lb), find(&sb));
    }
    if tail.0.is_some() || tail.1.is_some() {
        print_bulk(
            "log tail, 50 MiB appended (T panel vs ssh tail -F)",
            files.text_mib,
            tail.0,
            tail.1,
        );
    }
}
