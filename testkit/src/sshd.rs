//! A private OpenSSH `sshd` for tests: its own config, host key and authorized keys in a
//! temporary directory, listening on a free loopback port, in the foreground (`-D -e`)
//! with its log captured. Killed with all its session processes on drop.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The local user the password tests log in as (created when running as root).
pub const TEST_USER: &str = "legiontest";

#[derive(Debug, Clone, Default)]
pub struct SshdOpts {
    /// `PasswordAuthentication yes` (keys are always accepted).
    pub password_auth: bool,
}

pub struct Sshd {
    bin: PathBuf,
    dir: tempfile::TempDir,
    port: u16,
    child: Option<Child>,
    log: Arc<(Mutex<String>, Condvar)>,
    opts: SshdOpts,
}

impl Sshd {
    /// Start a server, or print a SKIPPED line and return `None` when `sshd` is missing.
    pub fn start(opts: SshdOpts) -> Option<Sshd> {
        let Some(bin) = sshd_binary() else {
            eprintln!("SKIPPED: sshd not found (install the openssh-server package)");
            return None;
        };
        if is_root() {
            // sshd refuses to start as root without its privilege separation directory.
            std::fs::create_dir_all("/run/sshd").unwrap();
        }
        let dir = tempfile::Builder::new()
            .prefix("legion-sshd-")
            .tempdir()
            .unwrap();
        let mut sshd = Sshd {
            bin,
            dir,
            port: 0,
            child: None,
            log: Arc::new((Mutex::new(String::new()), Condvar::new())),
            opts,
        };
        sshd.new_host_key();
        for _ in 0..10 {
            sshd.port = free_port();
            if sshd.spawn() {
                return Some(sshd);
            }
        }
        panic!("sshd did not start; last log:\n{}", sshd.log());
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// What `ssh-keygen -lf` prints for the current host key (`SHA256:…`).
    pub fn host_key_fingerprint(&self) -> String {
        let out = Command::new("ssh-keygen")
            .arg("-lf")
            .arg(self.host_key_path().with_extension("pub"))
            .output()
            .unwrap();
        assert!(out.status.success(), "ssh-keygen -lf failed");
        String::from_utf8(out.stdout)
            .unwrap()
            .split_whitespace()
            .nth(1)
            .unwrap()
            .to_string()
    }

    /// Let `pubkey` log in as the user running the tests.
    pub fn authorize(&self, pubkey: &str) {
        self.authorize_user(&current_user(), pubkey);
    }

    /// Let `pubkey` log in as `user` (through this server's own authorized keys file).
    pub fn authorize_user(&self, user: &str, pubkey: &str) {
        use std::io::Write;
        let path = self.dir.path().join(format!("authorized_keys.{user}"));
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap();
        writeln!(f, "{}", pubkey.trim()).unwrap();
    }

    /// Everything sshd logged since it was (re)started.
    pub fn log(&self) -> String {
        self.log.0.lock().unwrap().clone()
    }

    /// Wait until the log contains `needle`; false after `timeout`.
    pub fn wait_log(&self, needle: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let (lock, cvar) = &*self.log;
        let mut log = lock.lock().unwrap();
        while !log.contains(needle) {
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            log = cvar.wait_timeout(log, deadline - now).unwrap().0;
        }
        true
    }

    /// Stop, generate a different host key, start again on the same port.
    pub fn restart_with_new_host_key(&mut self) {
        self.stop();
        self.new_host_key();
        for _ in 0..50 {
            if self.spawn() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("sshd did not restart; log:\n{}", self.log());
    }

    /// Kill the per-connection processes (what a crash or reboot looks like to open
    /// sessions), leaving the listener up.
    pub fn kill_sessions(&self) {
        if let Some(child) = &self.child {
            for pid in descendants(child.id()) {
                kill(pid);
            }
        }
    }

    /// Processes below the listener (session handlers and the commands they run).
    pub fn session_processes(&self) -> Vec<(u32, String)> {
        let Some(child) = &self.child else {
            return Vec::new();
        };
        descendants(child.id())
            .into_iter()
            .map(|pid| {
                let comm = std::fs::read_to_string(format!("/proc/{pid}/comm"))
                    .unwrap_or_default()
                    .trim()
                    .to_string();
                (pid, comm)
            })
            .collect()
    }

    /// Kill the server and every session process.
    pub fn stop(&mut self) {
        self.kill_sessions();
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn host_key_path(&self) -> PathBuf {
        self.dir.path().join("host_ed25519")
    }

    fn new_host_key(&self) {
        let key = self.host_key_path();
        let _ = std::fs::remove_file(&key);
        let _ = std::fs::remove_file(key.with_extension("pub"));
        let ok = Command::new("ssh-keygen")
            .args([
                "-q",
                "-t",
                "ed25519",
                "-N",
                "",
                "-C",
                "legion-test-host",
                "-f",
            ])
            .arg(&key)
            .status()
            .unwrap()
            .success();
        assert!(ok, "ssh-keygen could not make a host key");
    }

    fn write_config(&self) -> PathBuf {
        let dir = self.dir.path().display();
        let yes_no = |b: bool| if b { "yes" } else { "no" };
        let mut config = format!(
            "Port {port}\n\
             ListenAddress 127.0.0.1\n\
             HostKey {key}\n\
             PidFile none\n\
             UsePAM no\n\
             StrictModes no\n\
             AuthorizedKeysFile {dir}/authorized_keys.%u .ssh/authorized_keys\n\
             PubkeyAuthentication yes\n\
             PasswordAuthentication {password}\n\
             KbdInteractiveAuthentication no\n\
             PermitRootLogin prohibit-password\n\
             MaxStartups 100\n\
             MaxSessions 50\n\
             MaxAuthTries 10\n\
             X11Forwarding no\n\
             PrintMotd no\n\
             LogLevel VERBOSE\n",
            port = self.port,
            key = self.host_key_path().display(),
            password = yes_no(self.opts.password_auth),
        );
        if supports_penalties(&self.bin) {
            // OpenSSH 9.8+ would slow down a test that logs in with a wrong key on purpose.
            config.push_str("PerSourcePenalties no\n");
        }
        let path = self.dir.path().join("sshd_config");
        std::fs::write(&path, config).unwrap();
        path
    }

    /// Start sshd; `true` once it listens, `false` if it exited (port taken).
    fn spawn(&mut self) -> bool {
        let config = self.write_config();
        self.log.0.lock().unwrap().clear();
        let mut child = Command::new(&self.bin)
            .args(["-D", "-e", "-f"])
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let log = Arc::clone(&self.log);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let (lock, cvar) = &*log;
                let mut text = lock.lock().unwrap();
                text.push_str(&line);
                text.push('\n');
                cvar.notify_all();
            }
        });
        let ready = format!("Server listening on 127.0.0.1 port {}", self.port);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self.wait_log(&ready, Duration::from_millis(50)) {
                self.child = Some(child);
                return true;
            }
            if child.try_wait().unwrap().is_some() {
                return false;
            }
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("sshd did not start listening; log:\n{}", self.log());
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        self.stop();
    }
}

pub fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

pub fn current_user() -> String {
    let out = Command::new("id").arg("-un").output().unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

fn sshd_binary() -> Option<PathBuf> {
    let fixed = ["/usr/sbin/sshd", "/usr/local/sbin/sshd", "/sbin/sshd"]
        .into_iter()
        .map(PathBuf::from);
    let on_path = std::env::var_os("PATH")
        .map(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join("sshd"))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    fixed.chain(on_path).find(|p| p.is_file())
}

fn supports_penalties(bin: &Path) -> bool {
    static SUPPORTED: OnceLock<bool> = OnceLock::new();
    *SUPPORTED.get_or_init(|| {
        // `-T` with a throwaway config parses it; an unknown keyword fails.
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("k");
        Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(&key)
            .status()
            .unwrap();
        let config = dir.path().join("c");
        std::fs::write(
            &config,
            format!(
                "HostKey {}\nUsePAM no\nPerSourcePenalties no\n",
                key.display()
            ),
        )
        .unwrap();
        Command::new(bin)
            .arg("-t")
            .arg("-f")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    })
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Every process whose parent chain leads to `root` (from /proc).
fn descendants(root: u32) -> Vec<u32> {
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // The command name may contain spaces and parentheses: the ppid follows the
        // last ')'.
        let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
            continue;
        };
        if let Some(ppid) = rest.split_whitespace().nth(1).and_then(|p| p.parse().ok()) {
            children.entry(ppid).or_default().push(pid);
        }
    }
    let mut found = Vec::new();
    let mut queue = vec![root];
    while let Some(pid) = queue.pop() {
        for &child in children.get(&pid).into_iter().flatten() {
            found.push(child);
            queue.push(child);
        }
    }
    found
}

fn kill(pid: u32) {
    let _ = Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .stderr(Stdio::null())
        .status();
}

/// The password-login test user: created on first use in this process with a fresh
/// random password. `None` (after printing SKIPPED) when not running as root.
pub struct TestUser {
    pub name: &'static str,
    pub password: String,
    pub home: PathBuf,
}

pub fn test_user() -> Option<&'static TestUser> {
    if !is_root() {
        eprintln!("SKIPPED: password auth needs root to create a test user");
        return None;
    }
    static USER: OnceLock<TestUser> = OnceLock::new();
    Some(USER.get_or_init(|| {
        let exists = Command::new("id")
            .arg(TEST_USER)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap()
            .success();
        if !exists {
            let out = Command::new("useradd")
                .args(["-m", "-s", "/bin/sh", TEST_USER])
                .output()
                .unwrap();
            // A parallel test binary may have created it meanwhile (exit 9: exists).
            assert!(
                out.status.success() || out.status.code() == Some(9),
                "useradd failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let mut raw = [0u8; 12];
        getrandom::fill(&mut raw).unwrap();
        let password = format!("lt-{}", hex::encode(raw));
        let mut chpasswd = Command::new("chpasswd")
            .stdin(Stdio::piped())
            .spawn()
            .unwrap();
        {
            use std::io::Write;
            let mut stdin = chpasswd.stdin.take().unwrap();
            writeln!(stdin, "{TEST_USER}:{password}").unwrap();
        }
        assert!(chpasswd.wait().unwrap().success(), "chpasswd failed");
        let passwd = std::fs::read_to_string("/etc/passwd").unwrap();
        let home = passwd
            .lines()
            .find(|l| l.starts_with(&format!("{TEST_USER}:")))
            .and_then(|l| l.split(':').nth(5))
            .map(PathBuf::from)
            .unwrap();
        TestUser {
            name: TEST_USER,
            password,
            home,
        }
    }))
}

impl TestUser {
    /// Forget every key installed for the test user.
    pub fn reset_ssh_dir(&self) {
        let _ = std::fs::remove_dir_all(self.home.join(".ssh"));
    }
}
