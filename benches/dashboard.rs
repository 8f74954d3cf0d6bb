//! Dashboard figures, printed as plain lines:
//! - frame time of the Nodes view with 10,000 nodes at 200x60 (median, p99), and what
//!   handing ratatui all 10,000 rows would cost instead;
//! - bytes written to the terminal when one node's state changes, against a full redraw
//!   (the real crossterm backend writing into a counter: the bytes a pty would carry);
//! - CPU time and wake-ups of an idle, settled `legion demo` over 30 s, measured from
//!   /proc on the real binary running in a real terminal (tmux), when tmux is installed.
//!
//! `cargo bench --bench dashboard` (`LEGION_BENCH_IDLE_SECS` changes the idle window)

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use legion::engine::snapshot::{AppSnapshot, ApplyView, LockState, NodeRow};
use legion::engine::snapshot::{Machine, System};
use legion::providers::HealthReading;
use legion::views::app::{App, Options, UiEvent};
use legion::views::keymap::Keymap;
use legion::views::theme::{ColorDepth, Theme};
use ratatui::Terminal;
use ratatui::backend::CrosstermBackend;
use ratatui::buffer::Buffer;
use ratatui::layout::{Constraint, Rect};
use ratatui::widgets::{Row, Table, Widget};

fn node(i: usize) -> NodeRow {
    NodeRow {
        name: format!("node-{i:05}"),
        status: legion::engine::status::NodeStatus::Running,
        cluster: "fleet".into(),
        role: "worker".into(),
        provider: "mock".into(),
        region: if i.is_multiple_of(2) {
            "sim-east"
        } else {
            "sim-west"
        }
        .into(),
        offer: "sim-small".into(),
        image: "debian-12".into(),
        machine: Machine::Running,
        system: System::Ready,
        health: Some(HealthReading::Healthy),
        address: Some(format!(
            "10.{}.{}.{}",
            (i >> 16) & 255,
            (i >> 8) & 255,
            i & 255
        )),
        server_id: Some(format!("sv-{i}")),
        operation: None,
        last_error: None,
        error_class: None,
        waiting: None,
        planned: true,
        live: true,
        execution: None,
        diffs: vec![],
        ops_started: 1,
        ops_finished: 1,
        pending: None,
    }
}

fn snapshot(n: usize, seq: u64) -> AppSnapshot {
    let mut s = AppSnapshot::empty("/home/op/.local/share/legion".into(), LockState::Unlocked);
    s.seq = seq;
    s.apply = ApplyView::Finished {
        id: 1,
        ok: true,
        failed: vec![],
        waiting: vec![],
    };
    s.nodes = (0..n).map(node).collect();
    s
}

fn app(snap: Arc<AppSnapshot>) -> App {
    let mut app = App::new(
        snap.clone(),
        Options {
            readonly: false,
            demo: None,
            attached: None,
            theme: Theme::default().with_depth(ColorDepth::Ansi256),
            keymap: Keymap::defaults(),
            providers: vec![],
        },
    );
    app.handle(UiEvent::Snapshot(snap));
    app
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[(((sorted.len() - 1) as f64) * p).round() as usize]
}

fn frame_time() {
    let n = 10_000;
    let snap = Arc::new(snapshot(n, 1));
    let app = app(snap);
    let area = Rect::new(0, 0, 200, 60);
    let mut times = Vec::new();
    for _ in 0..300 {
        let t = Instant::now();
        let mut buf = Buffer::empty(area);
        app.render(area, &mut buf);
        times.push(t.elapsed());
    }
    times.sort();
    println!(
        "Nodes view, 10,000 nodes at 200x60: frame median {:.3} ms, p99 {:.3} ms (visible rows only)",
        percentile(&times, 0.5).as_secs_f64() * 1e3,
        percentile(&times, 0.99).as_secs_f64() * 1e3
    );
    // For contrast: a table given every row, as a naive dashboard would.
    let all = snapshot(n, 1);
    let mut times = Vec::new();
    for _ in 0..20 {
        let t = Instant::now();
        let rows: Vec<Row> = all
            .nodes
            .iter()
            .map(|r| {
                Row::new(vec![
                    r.name.clone(),
                    r.provider.clone(),
                    r.region.clone(),
                    r.machine.to_string(),
                    r.system.to_string(),
                    r.address.clone().unwrap_or_default(),
                ])
            })
            .collect();
        let mut buf = Buffer::empty(area);
        Table::new(rows, [Constraint::Length(16); 6]).render(area, &mut buf);
        times.push(t.elapsed());
    }
    times.sort();
    println!(
        "  the same table handed all 10,000 rows: median {:.3} ms",
        percentile(&times, 0.5).as_secs_f64() * 1e3
    );
}

/// A writer that counts bytes.
#[derive(Clone, Default)]
struct Counter(Arc<Mutex<usize>>);

impl Write for Counter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if let Ok(mut n) = self.0.lock() {
            *n += buf.len();
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn bytes_per_change() -> io::Result<()> {
    let counter = Counter::default();
    let backend = CrosstermBackend::new(counter.clone());
    let mut term = Terminal::with_options(
        backend,
        ratatui::TerminalOptions {
            viewport: ratatui::Viewport::Fixed(Rect::new(0, 0, 200, 60)),
        },
    )?;
    let snap = Arc::new(snapshot(60, 1));
    let mut app = app(snap.clone());
    let draw = |term: &mut Terminal<CrosstermBackend<Counter>>, app: &mut App| -> io::Result<()> {
        term.draw(|f| {
            let area = f.area();
            app.render(area, f.buffer_mut());
        })
        .map(|_| ())
    };
    draw(&mut term, &mut app)?;
    let full = counter.0.lock().map(|n| *n).unwrap_or(0);
    // One node's machine goes from running to stopped.
    let mut next = (*snap).clone();
    next.seq = 2;
    next.nodes[3].machine = Machine::Stopped;
    next.nodes[3].system = System::Unreachable("server is stopped".into());
    app.handle(UiEvent::Snapshot(Arc::new(next)));
    let before = counter.0.lock().map(|n| *n).unwrap_or(0);
    draw(&mut term, &mut app)?;
    let one = counter.0.lock().map(|n| *n).unwrap_or(0) - before;
    // And an unchanged snapshot: the run loop compares frames and writes nothing; here
    // ratatui alone would still send its cursor bytes.
    let before = counter.0.lock().map(|n| *n).unwrap_or(0);
    draw(&mut term, &mut app)?;
    let same = counter.0.lock().map(|n| *n).unwrap_or(0) - before;
    println!(
        "bytes to the terminal at 200x60: full redraw {full}, one node's state change {one} ({:.1}% of full), unchanged frame through ratatui {same} (the dashboard skips that write: 0)",
        one as f64 * 100.0 / full as f64
    );
    Ok(())
}

/// Per thread of `pid`: name, utime+stime (clock ticks), voluntary and involuntary
/// context switches.
fn proc_counts(pid: u32) -> Option<BTreeMap<u32, (String, u64, u64, u64)>> {
    let mut out = BTreeMap::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).ok()? {
        let dir = task.ok()?.path();
        let tid: u32 = dir.file_name()?.to_str()?.parse().ok()?;
        let stat = std::fs::read_to_string(dir.join("stat")).ok()?;
        let (head, after) = stat.rsplit_once(')')?;
        let name = head.split_once('(')?.1.to_string();
        let fields: Vec<&str> = after.split_whitespace().collect();
        let ticks = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
        let status = std::fs::read_to_string(dir.join("status")).ok()?;
        let field = |key: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|v| v.trim().parse::<u64>().ok())
                .unwrap_or(0)
        };
        out.insert(
            tid,
            (
                name,
                ticks,
                field("voluntary_ctxt_switches:"),
                field("nonvoluntary_ctxt_switches:"),
            ),
        );
    }
    Some(out)
}

fn tmux(socket: &str, args: &[&str]) -> io::Result<String> {
    let out = Command::new("tmux")
        .args(["-L", socket])
        .args(args)
        .output()?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn idle_demo() -> io::Result<()> {
    if Command::new("tmux").arg("-V").output().is_err() {
        println!("idle demo: SKIPPED (tmux is not installed; it gives the binary a real terminal)");
        return Ok(());
    }
    let secs: u64 = std::env::var("LEGION_BENCH_IDLE_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(30);
    let dir = tempfile::tempdir()?;
    let socket = format!("legion-bench-{}", std::process::id());
    let bin = env!("CARGO_BIN_EXE_legion");
    let log = dir.path().join("pane.out");
    let cmd = format!(
        "env TERM=xterm-256color {bin} --home {} demo",
        dir.path().display()
    );
    tmux(
        &socket,
        &[
            "-f",
            "/dev/null",
            "new-session",
            "-d",
            "-s",
            "b",
            "-x",
            "200",
            "-y",
            "60",
            &cmd,
        ],
    )?;
    // Every byte the binary writes to its terminal also goes to this file.
    tmux(
        &socket,
        &[
            "pipe-pane",
            "-t",
            "b",
            "-o",
            &format!("cat >> {}", log.display()),
        ],
    )?;
    let settled = |s: &str| s.contains("apply #1: converged") && s.matches(" ready ").count() >= 6;
    let deadline = Instant::now() + Duration::from_secs(120);
    while !settled(&tmux(&socket, &["capture-pane", "-p", "-t", "b"])?) {
        if Instant::now() > deadline {
            println!("idle demo: did not settle within 120 s");
            let _ = tmux(&socket, &["kill-server"]);
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    // Let the first health readings land.
    std::thread::sleep(Duration::from_secs(3));
    let pane_pid: u32 = tmux(
        &socket,
        &["display-message", "-p", "-t", "b", "#{pane_pid}"],
    )?
    .trim()
    .parse()
    .unwrap_or(0);
    let pid = if std::fs::read_to_string(format!("/proc/{pane_pid}/comm"))
        .unwrap_or_default()
        .starts_with("legion")
    {
        pane_pid
    } else {
        find_child(pane_pid, "legion").unwrap_or(0)
    };
    let Some(start) = proc_counts(pid) else {
        println!("idle demo: could not read /proc for the legion process");
        let _ = tmux(&socket, &["kill-server"]);
        return Ok(());
    };
    let bytes_before = std::fs::metadata(&log).map(|m| m.len()).unwrap_or(0);
    std::thread::sleep(Duration::from_secs(secs));
    let end = proc_counts(pid).unwrap_or_else(|| start.clone());
    let written = std::fs::metadata(&log).map(|m| m.len()).unwrap_or(0) - bytes_before;
    // Per thread present at the end (threads that ended in between are not counted).
    let mut ticks = 0;
    let mut wakeups = 0;
    let mut by_name: BTreeMap<String, u64> = BTreeMap::new();
    for (tid, (name, t, v, n)) in &end {
        let (_, t0, v0, n0) = start.get(tid).cloned().unwrap_or_default();
        ticks += t - t0;
        wakeups += (v - v0) + (n - n0);
        *by_name.entry(name.clone()).or_default() += v - v0;
    }
    let tick = 100.0; // USER_HZ on Linux
    println!(
        "idle settled demo over {secs} s: CPU {:.2} s ({:.3}% of one core), {wakeups} context switches ({:.1}/s) over all threads {by_name:?}, {written} bytes written to the terminal",
        ticks as f64 / tick,
        ticks as f64 / tick / secs as f64 * 100.0,
        wakeups as f64 / secs as f64,
    );
    // Through the same pty: the bytes of one node's state change (start a stopped node:
    // the status line, then its row as it goes starting -> running -> ready), against a
    // full redraw (forced by a resize).
    let screen =
        |socket: &str| tmux(socket, &["capture-pane", "-p", "-t", "b"]).unwrap_or_default();
    let row_of = |s: &str, n: &str| {
        s.lines()
            .find(|l| l.contains(&format!("│{n} ")))
            .unwrap_or("")
            .to_string()
    };
    let size = |log: &std::path::Path| std::fs::metadata(log).map(|m| m.len()).unwrap_or(0);
    let quiet = |log: &std::path::Path| {
        let mut last = size(log);
        loop {
            std::thread::sleep(Duration::from_millis(700));
            let now = size(log);
            if now == last {
                return now;
            }
            last = now;
        }
    };
    let wait = |socket: &str, what: &dyn Fn(&str) -> bool| {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !what(&screen(socket)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    tmux(&socket, &["send-keys", "-t", "b", "o"])?;
    wait(&socket, &|s: &str| s.contains("stop east-1?"));
    tmux(&socket, &["send-keys", "-t", "b", "Tab"])?;
    tmux(&socket, &["send-keys", "-t", "b", "Enter"])?;
    wait(&socket, &|s: &str| row_of(s, "east-1").contains("stopped"));
    let before = quiet(&log);
    tmux(&socket, &["send-keys", "-t", "b", "u"])?;
    wait(&socket, &|s: &str| {
        let r = row_of(s, "east-1");
        r.contains("running") && r.contains("ready")
    });
    let change = quiet(&log) - before;
    tmux(
        &socket,
        &["resize-window", "-t", "b", "-x", "199", "-y", "60"],
    )?;
    let before = quiet(&log);
    tmux(
        &socket,
        &["resize-window", "-t", "b", "-x", "200", "-y", "60"],
    )?;
    let full = quiet(&log) - before;
    println!(
        "through the pty at 200x60: starting one stopped node (every frame until it is ready) {change} bytes; a full redraw {full} bytes"
    );
    let _ = tmux(&socket, &["kill-server"]);
    Ok(())
}

/// The pid of the first descendant of `parent` whose command name starts with `name`.
fn find_child(parent: u32, name: &str) -> Option<u32> {
    let mut frontier = vec![parent];
    while let Some(p) = frontier.pop() {
        let children = std::fs::read_to_string(format!("/proc/{p}/task/{p}/children")).ok()?;
        for c in children
            .split_whitespace()
            .filter_map(|c| c.parse::<u32>().ok())
        {
            let comm = std::fs::read_to_string(format!("/proc/{c}/comm")).unwrap_or_default();
            if comm.trim().starts_with(name) {
                return Some(c);
            }
            frontier.push(c);
        }
    }
    None
}

fn main() -> io::Result<()> {
    if !std::env::args().any(|a| a == "--bench") {
        return Ok(());
    }
    frame_time();
    bytes_per_change()?;
    idle_demo()
}
