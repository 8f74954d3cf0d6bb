//! A node's shell session and log tail against a real OpenSSH server on loopback, as the
//! dashboard runs them (their threads, their handles), read through what the UI gets:
//! the emulator's screen after colours, cursor addressing, a full-screen program and a
//! resize; log lines appended remotely; and a dropped connection reported, never a hang.

#![allow(clippy::unwrap_used)]

use legion_testkit::sshd;

use std::sync::mpsc;
use std::time::{Duration, Instant};

use legion::engine::SshSettings;
use legion::ssh::tail::{self, TailState};
use legion::ssh::{ManagedKey, SshAccess, Target};
use legion::views::term::session;
use legion::views::term::{ShellInput, ShellState, TermFrame};
use ratatui::style::Color;
use sshd::{Sshd, SshdOpts};

/// A server, the user to log in as (the plain-`sh` test user when root: root's own
/// dotfiles on a developer machine can be slow), and its access with a managed key.
fn node() -> Option<(Sshd, SshAccess, String)> {
    let sshd = Sshd::start(SshdOpts::default())?;
    let user = if sshd::is_root() {
        sshd::test_user()?.name.to_string()
    } else {
        sshd::current_user()
    };
    let key = ManagedKey::generate().unwrap();
    sshd.authorize_user(&user, key.public_openssh());
    let access = SshAccess {
        target: Target::new("127.0.0.1", sshd.port(), user.clone()),
        key,
        pinned: None,
        sudo: false,
        root: String::new(),
        log_command: String::new(),
    };
    Some((sshd, access, user))
}

/// A directory the login user can write (owned by it when the tests run as root).
fn user_dir(user: &str) -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("legion-node-")
        .tempdir()
        .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    if sshd::is_root() {
        let ok = std::process::Command::new("chown")
            .args(["-R", user])
            .arg(dir.path())
            .status()
            .unwrap()
            .success();
        assert!(ok);
    }
    dir
}

struct Shell {
    handle: legion::views::term::ShellHandle,
    woke: mpsc::Receiver<()>,
    frame: TermFrame,
    state: ShellState,
}

impl Shell {
    fn open(access: SshAccess, rows: u16, cols: u16) -> Shell {
        let (tx, woke) = mpsc::channel();
        let handle = session::spawn("n1", access, rows, cols, move || tx.send(()).is_ok()).unwrap();
        let mut s = Shell {
            handle,
            woke,
            frame: TermFrame::default(),
            state: ShellState::Connecting,
        };
        s.until("the shell open", |s| s.state == ShellState::Open);
        s
    }

    fn type_line(&self, line: &str) {
        self.handle
            .send(ShellInput::Bytes(format!("{line}\r").into_bytes()));
    }

    fn screen(&self) -> String {
        let (rows, _) = self.frame.size();
        (0..rows)
            .map(|r| self.frame.row_text(r))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Take frames until `pred` holds (10 s at most).
    fn until(&mut self, what: &str, pred: impl Fn(&Shell) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
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
                "waited 10 s for {what}; state {:?}, screen:\n{}",
                self.state,
                self.screen()
            );
            let _ = self.woke.recv_timeout(left.min(Duration::from_millis(100)));
        }
    }

    fn find(&self, needle: &str) -> Option<(u16, u16)> {
        let (rows, _) = self.frame.size();
        (0..rows).find_map(|r| {
            let text = self.frame.row_text(r);
            text.find(needle)
                .map(|c| (r, text[..c].chars().count() as u16))
        })
    }
}

#[test]
fn the_pane_renders_colours_cursor_moves_full_screen_programs_and_resizes() {
    let Some((sshd, access, user)) = node() else {
        return;
    };
    let dir = user_dir(&user);
    let file = dir.path().join("pages.txt");
    let pages: String = (1..=200).map(|i| format!("page line {i}\n")).collect();
    std::fs::write(&file, pages).unwrap();
    let mut sh = Shell::open(access, 24, 80);

    // Colours: SGR red, then back to the default.
    sh.type_line(r"printf '\033[31mRED\033[0m plain\n'");
    sh.until("the coloured output", |s| s.find("RED plain").is_some());
    let (r, c) = sh.find("RED plain").unwrap();
    assert_eq!(sh.frame.cell(r, c).unwrap().fg, Color::Red);
    assert_eq!(sh.frame.cell(r, c + 4).unwrap().fg, Color::Reset);

    // Cursor addressing: tput cup row 10, column 20.
    sh.type_line("clear; tput cup 10 20; echo MARK");
    sh.until("MARK placed by tput", |s| s.find("MARK") == Some((10, 20)));

    // A full-screen program: less on the alternate screen, then back.
    sh.type_line("echo before-less");
    sh.until("the marker", |s| s.find("before-less").is_some());
    sh.type_line(&format!("less {}", file.display()));
    sh.until("less on the alternate screen", |s| {
        s.frame.alternate_screen && s.find("page line 1").is_some()
    });
    assert!(sh.find("before-less").is_none(), "{}", sh.screen());
    sh.handle.send(ShellInput::Bytes(b"G".to_vec()));
    sh.until("the end of the file", |s| s.find("page line 200").is_some());
    sh.handle.send(ShellInput::Bytes(b"q".to_vec()));
    sh.until("the primary screen again", |s| {
        !s.frame.alternate_screen && s.find("before-less").is_some()
    });

    // A resize reaches the remote: stty size answers the new rows and columns.
    sh.handle.send(ShellInput::Resize(30, 100));
    sh.until("the new size", |s| s.frame.size() == (30, 100));
    sh.type_line("clear; stty size");
    sh.until("stty size", |s| s.find("30 100").is_some());

    // The connection dropped on the server's side: said, never a hang.
    sshd.kill_sessions();
    sh.until("the session closed", |s| {
        matches!(s.state, ShellState::Closed(_))
    });
    let ShellState::Closed(why) = &sh.state else {
        unreachable!()
    };
    assert!(why.contains("connection closed"), "{why}");
}

#[test]
fn the_log_tail_sees_remote_appends_within_a_second_and_reports_a_drop() {
    let Some((sshd, mut access, user)) = node() else {
        return;
    };
    // The role names its log file; under a sandbox root it is relative to it.
    let sandbox = user_dir(&user);
    let roles = tempfile::tempdir().unwrap();
    std::fs::write(roles.path().join("web.logs"), "# the app's log\n/app.log\n").unwrap();
    let settings = SshSettings {
        user: Some(user.clone()),
        provider_users: Default::default(),
        port: sshd.port(),
        node_root: Some(sandbox.path().display().to_string()),
        roles_dir: Some(roles.path().to_path_buf()),
    };
    let log = sandbox.path().join("app.log");
    let root = settings.root().to_string();
    assert_eq!(
        settings.log_files("web", &root),
        [log.display().to_string()]
    );
    std::fs::write(&log, "an old line\n").unwrap();
    access.log_command = settings.log_command("web", false, &root);
    assert!(
        access.log_command.contains("tail"),
        "{}",
        access.log_command
    );

    let (tx, woke) = mpsc::channel();
    let handle = tail::spawn("n1", access, move || tx.send(()).is_ok()).unwrap();
    let mut lines: Vec<String> = Vec::new();
    let mut state = TailState::Connecting;
    let mut take = |lines: &mut Vec<String>, state: &mut TailState| {
        let b = handle.take();
        lines.extend(b.lines);
        if let Some(s) = b.state {
            *state = s;
        }
    };
    let wait = |what: &str,
                limit: Duration,
                lines: &mut Vec<String>,
                state: &mut TailState,
                take: &mut dyn FnMut(&mut Vec<String>, &mut TailState),
                pred: &dyn Fn(&[String], &TailState) -> bool| {
        let deadline = Instant::now() + limit;
        loop {
            take(lines, state);
            if pred(lines, state) {
                return Instant::now();
            }
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "waited {limit:?} for {what}: {state:?} {lines:?}"
            );
            let _ = woke.recv_timeout(left.min(Duration::from_millis(50)));
        }
    };
    wait(
        "the backlog",
        Duration::from_secs(10),
        &mut lines,
        &mut state,
        &mut take,
        &|l, s| *s == TailState::Following && l.iter().any(|x| x == "an old line"),
    );
    for i in 0..3 {
        use std::io::Write;
        let appended = Instant::now();
        let mut f = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
        writeln!(f, "fresh line {i}").unwrap();
        drop(f);
        let want = format!("fresh line {i}");
        let seen = wait(
            "the appended line",
            Duration::from_secs(1),
            &mut lines,
            &mut state,
            &mut take,
            &|l, _| l.contains(&want),
        );
        assert!(seen - appended <= Duration::from_secs(1));
    }

    // The server drops the connection: the tail says it ended, it does not hang.
    sshd.kill_sessions();
    wait(
        "the tail closed",
        Duration::from_secs(20),
        &mut lines,
        &mut state,
        &mut take,
        &|_, s| matches!(s, TailState::Closed(_)),
    );
}
