//! Helpers for the end-to-end terminal benches (`benches/pane.rs`): a tmux server of the
//! bench's own that can be polled tightly and asked for its pids, and CPU time read from
//! `/proc/PID/stat`.
//!
//! The test kit's `tmux` harness sleeps after every key (Esc followed at once by a key
//! reads as Alt-key) and polls every 50 ms; a timing needs neither.

#![allow(dead_code, clippy::unwrap_used)]

use std::process::Command;
use std::time::{Duration, Instant};

/// A private tmux server (its own socket), killed on drop.
pub struct Tmux {
    socket: String,
}

impl Tmux {
    /// `None` (after saying why) when tmux is not installed.
    pub fn start(name: &str, cmd: &str, width: u16, height: u16) -> Option<Tmux> {
        if Command::new("tmux").arg("-V").output().is_err() {
            println!("SKIPPED: tmux is not installed");
            return None;
        }
        let socket = format!("legion-bench-{}-{name}", std::process::id());
        let ok = Command::new("tmux")
            .args(["-L", &socket, "-f", "/dev/null", "new-session", "-d"])
            .args([
                "-s",
                "t",
                "-x",
                &width.to_string(),
                "-y",
                &height.to_string(),
            ])
            .arg(cmd)
            .status()
            .unwrap()
            .success();
        assert!(ok, "tmux new-session failed");
        Some(Tmux { socket })
    }

    fn tmux(&self, args: &[&str]) -> String {
        let out = Command::new("tmux")
            .args(["-L", &self.socket])
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "tmux {args:?} failed");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Send keys (tmux key names) at once.
    pub fn keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", "t"];
        args.extend_from_slice(keys);
        self.tmux(&args);
    }

    /// Type `text` literally, at once.
    pub fn text(&self, text: &str) {
        self.tmux(&["send-keys", "-t", "t", "-l", text]);
    }

    /// Type a command line and Enter, pausing between them so the two writes stay apart.
    pub fn line(&self, text: &str) {
        self.text(text);
        std::thread::sleep(Duration::from_millis(60));
        self.keys(&["Enter"]);
    }

    pub fn screen(&self) -> String {
        self.tmux(&["capture-pane", "-p", "-t", "t"])
    }

    /// Poll the screen every `every` until `pred` holds (at most `limit`); the screen and
    /// when it was read.
    pub fn wait_every(
        &self,
        what: &str,
        every: Duration,
        limit: Duration,
        pred: impl Fn(&str) -> bool,
    ) -> (String, Instant) {
        let start = Instant::now();
        loop {
            let s = self.screen();
            let at = Instant::now();
            if pred(&s) {
                return (s, at);
            }
            assert!(
                start.elapsed() < limit,
                "timed out waiting for {what}:\n{s}"
            );
            std::thread::sleep(every);
        }
    }

    pub fn wait(&self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        self.wait_every(
            what,
            Duration::from_millis(50),
            Duration::from_secs(90),
            pred,
        )
        .0
    }

    /// The tmux server's pid.
    pub fn server_pid(&self) -> u32 {
        self.tmux(&["display-message", "-p", "-t", "t", "#{pid}"])
            .trim()
            .parse()
            .unwrap()
    }

    /// The pid of the pane's first process (the `sh -c` running the command).
    pub fn pane_pid(&self) -> u32 {
        self.tmux(&["display-message", "-p", "-t", "t", "#{pane_pid}"])
            .trim()
            .parse()
            .unwrap()
    }

    /// The process below the pane's shell whose command name is `comm` (waits for it).
    pub fn child(&self, comm: &str) -> u32 {
        let parent = self.pane_pid();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(pid) = child_named(parent, comm) {
                return pid;
            }
            assert!(Instant::now() < deadline, "no {comm} under the pane");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["-L", &self.socket, "kill-server"])
            .status();
    }
}

/// A direct child of `parent` named `comm`.
pub fn child_named(parent: u32, comm: &str) -> Option<u32> {
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let name = &stat[open + 1..close];
        let ppid = stat[close + 1..].split_whitespace().nth(1);
        if name == comm && ppid.and_then(|p| p.parse::<u32>().ok()) == Some(parent) {
            return Some(pid);
        }
    }
    None
}

/// User plus system CPU seconds `pid` has used so far (every thread), 0 once it is gone.
pub fn cpu_seconds(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
        return 0.0;
    };
    // After the name: state is field 3, utime 14 and stime 15 (1-based).
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i - 3).and_then(|f| f.parse::<u64>().ok());
    let total = ticks(14).unwrap_or(0) + ticks(15).unwrap_or(0);
    // USER_HZ is 100 on every Linux this runs on.
    total as f64 / 100.0
}

/// CPU seconds used by a set of processes between `start` and the call.
pub struct CpuMeter {
    pids: Vec<u32>,
    start: Vec<f64>,
}

impl CpuMeter {
    pub fn start(pids: &[u32]) -> CpuMeter {
        CpuMeter {
            pids: pids.to_vec(),
            start: pids.iter().map(|&p| cpu_seconds(p)).collect(),
        }
    }

    /// Seconds each process used since `start`, in the order given.
    pub fn read(&self) -> Vec<f64> {
        self.pids
            .iter()
            .zip(&self.start)
            .map(|(&p, s)| cpu_seconds(p) - s)
            .collect()
    }
}

pub fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}
