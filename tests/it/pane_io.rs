//! The shell pane's and the log tail's I/O threads against a real sshd on loopback, for
//! what their loops promise beyond the screen's content (`node_session` has that): an
//! idle session or tail does not wake (it waits on the socket and the UI's wake-up, not
//! on a timer), a flood of output arrives whole and the session still answers input
//! straight after, and a dropped tail handle ends its thread at once.

#![allow(clippy::unwrap_used)]

use legion_testkit::sshd;

use std::sync::mpsc;
use std::time::{Duration, Instant};

use legion::ssh::tail::{self, TailState};
use legion::ssh::{ManagedKey, SshAccess, Target};
use legion::views::term::session::{self, SCROLLBACK};
use legion::views::term::{ShellHandle, ShellInput, ShellState, TermFrame};
use sshd::{Sshd, SshdOpts};

fn node() -> Option<(Sshd, SshAccess)> {
    let sshd = Sshd::start(SshdOpts::default())?;
    let user = if sshd::is_root() {
        sshd::test_user()?.name.to_string()
    } else {
        sshd::current_user()
    };
    let key = ManagedKey::generate().unwrap();
    sshd.authorize_user(&user, key.public_openssh());
    let access = SshAccess {
        target: Target::new("127.0.0.1", sshd.port(), user),
        key,
        pinned: None,
        sudo: false,
        root: String::new(),
        log_command: String::new(),
    };
    Some((sshd, access))
}

/// The ids of this process's threads whose name starts with `prefix` (names are cut at
/// 15 bytes).
fn threads(prefix: &str) -> Vec<String> {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .flatten()
        .filter(|t| {
            std::fs::read_to_string(t.path().join("comm"))
                .is_ok_and(|c| c.trim_end().starts_with(prefix))
        })
        .map(|t| t.file_name().to_string_lossy().into_owned())
        .collect()
}

/// How many times the thread has gone to sleep and been woken (voluntary switches).
fn wakeups(tid: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/self/task/{tid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap()
}

/// CPU ticks (1/100 s) the thread has used: a spinning wait wakes no one but burns these.
fn ticks(tid: &str) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")).unwrap();
    let rest = &stat[stat.rfind(')').unwrap() + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15; `rest` starts at field 3.
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

/// The only thread named `prefix…` (waits for it to start).
fn thread(prefix: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let found = threads(prefix);
        if let [one] = found.as_slice() {
            return one.clone();
        }
        assert!(found.len() <= 1, "more than one {prefix} thread: {found:?}");
        assert!(Instant::now() < deadline, "no {prefix} thread");
        std::thread::sleep(Duration::from_millis(20));
    }
}

struct Shell {
    handle: ShellHandle,
    woke: mpsc::Receiver<()>,
    frame: TermFrame,
    state: ShellState,
}

impl Shell {
    fn open(node: &str, access: SshAccess) -> Shell {
        let (tx, woke) = mpsc::channel();
        let handle = session::spawn(node, access, 24, 80, move || tx.send(()).is_ok()).unwrap();
        let mut s = Shell {
            handle,
            woke,
            frame: TermFrame::default(),
            state: ShellState::Connecting,
        };
        s.until("the shell open", Duration::from_secs(10), |s| {
            s.state == ShellState::Open
        });
        s
    }

    fn type_line(&self, line: &str) {
        self.handle
            .send(ShellInput::Bytes(format!("{line}\r").into_bytes()));
    }

    fn rows(&self) -> Vec<String> {
        let (rows, _) = self.frame.size();
        (0..rows).map(|r| self.frame.row_text(r)).collect()
    }

    fn until(&mut self, what: &str, limit: Duration, pred: impl Fn(&Shell) -> bool) {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(u) = self.handle.take() {
                self.frame = u.frame;
                self.state = u.state;
            }
            if pred(self) {
                return;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "waited {limit:?} for {what}; state {:?}, screen:\n{}",
                self.state,
                self.rows().join("\n")
            );
            let _ = self.woke.recv_timeout(left.min(Duration::from_millis(100)));
        }
    }
}

#[test]
fn an_idle_shell_session_does_not_wake_and_answers_a_key_at_once() {
    let Some((_sshd, access)) = node() else {
        return;
    };
    let mut sh = Shell::open("quiet", access);
    sh.type_line("PS1='$ '; echo ready-$((40+2))");
    // The line may be typed before the first prompt shows: its output then follows it.
    sh.until("the shell ready", Duration::from_secs(10), |s| {
        s.rows()
            .iter()
            .any(|r| r.ends_with("ready-42") && !r.contains("echo"))
    });
    let tid = thread("legion-ssh-quie");
    // Let the prompt and the last frame go out, then watch the thread sit still.
    std::thread::sleep(Duration::from_millis(300));
    while sh.handle.take().is_some() {}
    let (before, cpu) = (wakeups(&tid), ticks(&tid));
    std::thread::sleep(Duration::from_secs(1));
    let woke = wakeups(&tid) - before;
    let used = ticks(&tid) - cpu;
    // A timer of 20 ms woke it 50 times a second; waiting on the socket, nothing comes.
    assert!(woke <= 2, "an idle session woke {woke} times in a second");
    assert!(
        used <= 2,
        "an idle session used {used} ticks of CPU in a second"
    );

    // Input still goes out at once: the UI's wake-up ends the wait. (The time from a key
    // to the frame with its echo is printed, not asserted: `cargo bench --bench pane`
    // measures it end to end.)
    let mut took = Vec::new();
    for c in ['x', 'y', 'z', 'w', 'v'] {
        let start = Instant::now();
        sh.handle.send(ShellInput::Bytes(vec![c as u8]));
        let want = format!(
            "$ {}",
            "xyzwv".split(c).next().unwrap_or("").to_string() + &c.to_string()
        );
        sh.until("the echo", Duration::from_secs(5), |s| {
            s.rows().iter().any(|r| r.trim_end() == want)
        });
        took.push(start.elapsed());
    }
    took.sort();
    eprintln!("key to echoed frame, median of 5: {:?}", took[2]);
    sh.handle.send(ShellInput::Bytes(vec![0x15]));
    sh.type_line("echo typed-$((6*7))");
    sh.until("the typed command's output", Duration::from_secs(5), |s| {
        s.rows().iter().any(|r| r == "typed-42")
    });
}

#[test]
fn a_flood_of_output_arrives_whole_and_input_follows_it() {
    let Some((_sshd, access)) = node() else {
        return;
    };
    let mut sh = Shell::open("flood", access);
    sh.type_line("PS1='$ '; seq 1 200000; echo FLOOD-$((6*7))");
    sh.until("the end of the flood", Duration::from_secs(60), |s| {
        s.rows().iter().any(|r| r == "FLOOD-42")
    });
    let rows = sh.rows();
    let end = rows.iter().position(|r| r == "FLOOD-42").unwrap();
    assert_eq!(rows[end - 1], "200000", "{}", rows.join("\n"));
    assert_eq!(rows[end - 2], "199999", "{}", rows.join("\n"));
    assert_eq!(
        sh.frame.scrollback_len, SCROLLBACK,
        "the history is full after 200,000 lines"
    );

    // Scroll back one screen: the lines before the last screen are there.
    sh.handle.send(ShellInput::Scroll(24));
    sh.until("the scrolled view", Duration::from_secs(5), |s| {
        s.frame.scroll_offset == 24
    });
    let back = sh.rows();
    let n: Vec<u32> = back.iter().filter_map(|r| r.parse().ok()).collect();
    assert!(
        n.windows(2).all(|w| w[1] == w[0] + 1) && n.len() >= 20,
        "consecutive lines from the history: {back:?}"
    );

    // Typing returns to the live screen and runs at once.
    sh.type_line("echo after-$((6*7))");
    sh.until(
        "the command after the flood",
        Duration::from_secs(10),
        |s| s.frame.scroll_offset == 0 && s.rows().iter().any(|r| r == "after-42"),
    );
}

#[test]
fn an_idle_tail_does_not_wake_and_ends_when_its_handle_drops() {
    let Some((_sshd, mut access)) = node() else {
        return;
    };
    access.log_command = "echo first; exec sleep 600".into();
    let (tx, woke) = mpsc::channel();
    let handle = tail::spawn("quiet", access, move || tx.send(()).is_ok()).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut lines = Vec::new();
    let mut state = TailState::Connecting;
    while !(state == TailState::Following && lines.iter().any(|l| l == "first")) {
        assert!(Instant::now() < deadline, "{state:?} {lines:?}");
        let _ = woke.recv_timeout(Duration::from_millis(100));
        let b = handle.take();
        lines.extend(b.lines);
        if let Some(s) = b.state {
            state = s;
        }
    }
    let tid = thread("legion-tail-qui");
    std::thread::sleep(Duration::from_millis(200));
    let (before, cpu) = (wakeups(&tid), ticks(&tid));
    std::thread::sleep(Duration::from_secs(1));
    let idle = wakeups(&tid) - before;
    let used = ticks(&tid) - cpu;
    assert!(idle <= 2, "an idle tail woke {idle} times in a second");
    assert!(
        used <= 2,
        "an idle tail used {used} ticks of CPU in a second"
    );

    drop(handle);
    let deadline = Instant::now() + Duration::from_secs(5);
    while !threads("legion-tail-qui").is_empty() {
        assert!(
            Instant::now() < deadline,
            "the tail thread outlived its handle"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
