//! The daemon on a shared jump host, through the real binary: who may reach it (its own
//! uid only, checked on both sides with `SO_PEERCRED`), where its socket may live
//! (private, unlinked, ours), what `ps` shows of it, and that floods of silent
//! connections, subscriptions or over-long lines neither lock the owner out nor grow it.
//!
//! The second uid is a throwaway system user; a thread of this test takes its uid
//! (`setresuid` affects only the calling thread at the kernel level), so the kernel
//! records that uid for the sockets the thread opens. Those tests need root and say
//! SKIPPED otherwise.

use std::io::{BufWriter, Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};

use crate::daemon::{Home, Raw, run};

const INTRUDER: &str = "legion-intruder";

/// The throwaway second user (uid, gid), created on first use; `None` when not root.
fn intruder() -> Option<(u32, u32)> {
    if !rustix::process::geteuid().is_root() {
        eprintln!("SKIPPED: a second uid needs root to create a system user and switch to it");
        return None;
    }
    let id = |flag: &str| -> Option<u32> {
        let out = Command::new("id").args([flag, INTRUDER]).output().ok()?;
        String::from_utf8_lossy(&out.stdout).trim().parse().ok()
    };
    if id("-u").is_none() {
        let out = Command::new("useradd")
            .args([
                "--system",
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
            ])
            .arg(INTRUDER)
            .output()
            .unwrap();
        // Another test may have created it meanwhile (exit 9: exists).
        assert!(
            out.status.success() || out.status.code() == Some(9),
            "useradd failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Some((id("-u")?, id("-g")?))
}

/// Run `f` on a thread whose uid and gid are the intruder's (no supplementary groups).
fn as_intruder<T: Send + 'static>(
    (uid, gid): (u32, u32),
    f: impl FnOnce() -> T + Send + 'static,
) -> std::thread::JoinHandle<T> {
    std::thread::spawn(move || {
        use rustix::thread::{Gid, Uid, set_thread_groups, set_thread_res_gid, set_thread_res_uid};
        set_thread_groups(&[]).unwrap();
        let g = Gid::from_raw(gid);
        set_thread_res_gid(g, g, g).unwrap();
        let u = Uid::from_raw(uid);
        set_thread_res_uid(u, u, u).unwrap();
        f()
    })
}

fn chmod(p: &Path, mode: u32) {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// A field of /proc/PID/status in KiB (VmRSS, VmHWM).
fn vm_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

fn me() -> u32 {
    rustix::process::geteuid().as_raw()
}

#[test]
fn the_daemon_shows_no_home_path_or_secret_in_ps() {
    let h = Home::new();
    let d = h.start();
    let cmdline = std::fs::read(format!("/proc/{}/cmdline", d.pid)).unwrap();
    let args: Vec<String> = cmdline
        .split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    assert_eq!(args[1..], ["daemon", "serve"], "{args:?}");
    let all = args.join(" ");
    let home = h.home.display().to_string();
    assert!(!all.contains(&home), "{all}");
    assert!(!all.contains(&d.token), "{all}");
    assert!(!all.contains("daemon test password"), "{all}");
    // Its environment (readable by this uid only) carries neither the home nor a secret.
    let environ =
        String::from_utf8_lossy(&std::fs::read(format!("/proc/{}/environ", d.pid)).unwrap())
            .into_owned();
    assert!(
        !environ.contains(&home),
        "the home in the daemon's environment"
    );
    assert!(!environ.contains(&d.token));
    assert!(!environ.contains("LEGION_PASSWORD_FILE"));
    // Its directory and socket: ours and private.
    for (p, mode) in [(h.home.join("daemon"), 0o700), (h.socket(), 0o600)] {
        let m = std::fs::symlink_metadata(&p).unwrap();
        assert_eq!(m.mode() & 0o777, mode, "{}", p.display());
        assert_eq!(m.uid(), me(), "{}", p.display());
    }
}

#[test]
fn a_loose_linked_or_foreign_daemon_directory_or_socket_is_refused_with_the_fix() {
    let h = Home::new();
    let dir = h.home.join("daemon");
    std::fs::create_dir(&dir).unwrap();
    chmod(&dir, 0o750);
    let (code, _, err) = run(h.cmd().args(["daemon", "start"]));
    assert_ne!(code, 0, "started in a group-readable directory");
    assert!(
        err.contains(&format!("chmod 700 {}", dir.display())),
        "{err}"
    );
    chmod(&dir, 0o700);
    let d = h.start();

    // A client refuses a socket others could reach, before it says anything.
    chmod(&h.socket(), 0o666);
    let (code, _, err) = run(h.via(&d.token).args(["nodes", "list"]));
    assert_eq!(code, 4, "{err}");
    assert!(
        err.contains(&format!("chmod 600 {}", h.socket().display())),
        "{err}"
    );
    chmod(&h.socket(), 0o600);
    let (code, _, err) = run(h.via(&d.token).args(["nodes", "list"]));
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = run(h.via(&d.token).args(["daemon", "stop"]));
    assert_eq!(code, 0, "{err}");

    // A link in place of the directory, even to one of ours.
    let real = h.dir.path().join("elsewhere");
    std::fs::rename(&dir, &real).unwrap();
    std::os::unix::fs::symlink(&real, &dir).unwrap();
    let (code, _, err) = run(h.cmd().args(["daemon", "start"]));
    assert_ne!(code, 0);
    assert!(
        err.contains("symbolic link") && err.contains(&dir.display().to_string()),
        "{err}"
    );
    std::fs::remove_file(&dir).unwrap();
    std::fs::rename(&real, &dir).unwrap();

    // Another uid's directory.
    if let Some((uid, gid)) = intruder() {
        std::os::unix::fs::chown(&dir, Some(uid), Some(gid)).unwrap();
        let (code, _, err) = run(h.cmd().args(["daemon", "start"]));
        assert_ne!(code, 0);
        assert!(
            err.contains(&format!("{} belongs to uid {uid}", dir.display())),
            "{err}"
        );
        std::os::unix::fs::chown(&dir, Some(me()), None).unwrap();
    }
    let d = h.start();
    let (code, _, err) = run(h.via(&d.token).args(["nodes", "list"]));
    assert_eq!(code, 0, "{err}");
}

#[test]
fn a_home_too_long_for_a_socket_uses_the_runtime_dir_never_a_shared_path() {
    let h = Home::at(&format!("{}/home", "long-".repeat(20)));
    assert!(h.home.join("daemon/legion.sock").as_os_str().len() > 100);
    // Without XDG_RUNTIME_DIR: refused, with the fix, and nothing made under /tmp.
    let shared = std::env::temp_dir().join(format!("legion-{}", me()));
    let existed = shared.exists();
    let (code, _, err) = run(h
        .cmd()
        .env_remove("XDG_RUNTIME_DIR")
        .args(["daemon", "start"]));
    assert_ne!(code, 0);
    assert!(err.contains("XDG_RUNTIME_DIR"), "{err}");
    assert_eq!(shared.exists(), existed, "{} appeared", shared.display());

    let run_dir = h.dir.path().join("run");
    std::fs::create_dir(&run_dir).unwrap();
    chmod(&run_dir, 0o700);
    let (code, out, err) = run(h
        .cmd()
        .env("XDG_RUNTIME_DIR", &run_dir)
        .args(["daemon", "start"]));
    assert_eq!(code, 0, "{err}");
    let token = out
        .lines()
        .find_map(|l| l.strip_prefix("export LEGION_DAEMON_TOKEN="))
        .unwrap()
        .to_string();
    let meta = h.metadata();
    let pid = meta["pid"].as_u64().unwrap() as u32;
    let _stop = crate::daemon::Daemon {
        pid,
        token: token.clone(),
        stderr: err,
    };
    let socket = std::path::PathBuf::from(meta["endpoint"].as_str().unwrap());
    assert_eq!(socket.parent().unwrap(), run_dir.join("legion"));
    let m = std::fs::symlink_metadata(run_dir.join("legion")).unwrap();
    assert_eq!((m.mode() & 0o777, m.uid()), (0o700, me()));
    let (code, out, err) = run(h
        .via(&token)
        .env("XDG_RUNTIME_DIR", &run_dir)
        .args(["nodes", "list", "--json"]));
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        serde_json::from_str::<Value>(&out)
            .unwrap()
            .as_array()
            .unwrap()
            .len(),
        2
    );
}

#[test]
fn another_uid_can_neither_use_nor_impersonate_the_daemon() {
    let Some(intruder) = intruder() else { return };
    let (uid, gid) = intruder;
    let h = Home::new();
    let d = h.start();
    let daemon_dir = h.home.join("daemon");

    // As a careless operator might: every directory searchable, the socket writable by
    // all. The files no longer keep the intruder out; the daemon's peer check does.
    for p in [h.dir.path(), &h.home, &daemon_dir] {
        chmod(p, 0o711);
    }
    chmod(&h.socket(), 0o666);
    let (socket, token) = (h.socket(), d.token.clone());
    let (reply, after) = as_intruder(intruder, move || {
        let mut c = Raw::connect(&socket);
        // The daemon may have refused and closed before this write: the refusal is
        // still there to read.
        let _ = c.send_line(
            json!({"id": 1, "token": token, "method": "status"})
                .to_string()
                .as_bytes(),
        );
        (c.recv().expect("a refusal"), c.recv())
    })
    .join()
    .unwrap();
    assert_eq!(reply["error"]["code"], "unauthorized", "{reply}");
    assert!(reply.get("result").is_none(), "{reply}");
    assert_eq!(
        reply["error"]["message"],
        format!("this daemon serves only uid {}", me())
    );
    assert!(after.is_none(), "closed after refusing the intruder");
    // The owner's client will not use the loosened directory either, and says how to fix.
    let (code, _, err) = run(h.via(&d.token).args(["nodes", "list"]));
    assert_eq!(code, 4, "{err}");
    assert!(
        err.contains(&format!("chmod 700 {}", daemon_dir.display())),
        "{err}"
    );
    chmod(&daemon_dir, 0o700);
    chmod(&h.socket(), 0o600);
    let (code, _, err) = run(h.via(&d.token).args(["nodes", "list"]));
    assert_eq!(code, 0, "still serving its owner: {err}");
    let (code, _, err) = run(h.via(&d.token).args(["daemon", "stop"]));
    assert_eq!(code, 0, "{err}");

    // Impersonation: the intruder listens, and its socket ends up at the daemon's path
    // with our owner and mode (as if it had won a race). The kernel still knows who
    // listens, and the client sends nothing to it.
    let xdir = h.dir.path().join("intruder");
    std::fs::create_dir(&xdir).unwrap();
    std::os::unix::fs::chown(&xdir, Some(uid), Some(gid)).unwrap();
    chmod(&xdir, 0o700);
    let xsock = xdir.join("s");
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let impostor = {
        let xsock = xsock.clone();
        as_intruder(intruder, move || {
            let l = UnixListener::bind(&xsock).unwrap();
            ready_tx.send(()).unwrap();
            let (mut s, _) = l.accept().unwrap();
            s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
            let mut got = Vec::new();
            let _ = s.read_to_end(&mut got);
            got
        })
    };
    ready_rx.recv_timeout(Duration::from_secs(10)).unwrap();
    std::fs::rename(&xsock, h.socket()).unwrap();
    std::os::unix::fs::chown(h.socket(), Some(me()), Some(0)).unwrap();
    chmod(&h.socket(), 0o600);
    let (code, _, err) = run(h.via(&d.token).args(["nodes", "list"]));
    assert_eq!(code, 4, "{err}");
    assert!(
        err.contains(&format!("runs as uid {uid}")) && err.contains("nothing was sent"),
        "{err}"
    );
    let got = impostor.join().unwrap();
    assert!(
        got.is_empty(),
        "the client sent {:?} to the impostor",
        String::from_utf8_lossy(&got)
    );
}

#[test]
fn six_hundred_silent_connections_do_not_lock_the_owner_out() {
    let h = Home::new();
    let d = h.start();
    let silent: Vec<UnixStream> = (0..600)
        .map(|_| UnixStream::connect(h.socket()).unwrap())
        .collect();
    // The owner, right after the flood (before any deadline): served.
    let (code, out, err) = run(h.via(&d.token).args(["nodes", "list", "--json"]));
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        serde_json::from_str::<Value>(&out)
            .unwrap()
            .as_array()
            .unwrap()
            .len(),
        2
    );
    // None of them stays: each is evicted by newer ones or closed at the authentication
    // deadline, and told why.
    let mut codes = std::collections::BTreeMap::<String, usize>::new();
    for s in silent {
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut r = std::io::BufReader::new(s);
        let mut line = String::new();
        std::io::BufRead::read_line(&mut r, &mut line).unwrap();
        let v: Value = serde_json::from_str(&line).unwrap();
        *codes
            .entry(v["error"]["code"].as_str().unwrap().to_string())
            .or_default() += 1;
        line.clear();
        assert_eq!(std::io::BufRead::read_line(&mut r, &mut line).unwrap(), 0);
    }
    assert_eq!(codes.values().sum::<usize>(), 600, "{codes:?}");
    // Evicted (`busy`) once they had time to speak, or timed out (`unauthorized`).
    assert!(
        codes.keys().all(|c| c == "busy" || c == "unauthorized"),
        "{codes:?}"
    );
    let st =
        Raw::connect(&h.socket()).call(&json!({"id": 1, "token": d.token, "method": "status"}));
    assert_eq!(st["result"]["clients"], 1, "{st}");
}

#[test]
fn a_subscribe_flood_on_one_connection_keeps_the_daemon_small() {
    let h = Home::new();
    let d = h.start();
    let before = vm_kib(d.pid, "VmRSS");
    let mut c = Raw::connect(&h.socket());
    let n = 40_000u64;
    let writer = {
        let w = c.w.try_clone().unwrap();
        let token = d.token.clone();
        std::thread::spawn(move || {
            let mut w = BufWriter::new(w);
            for id in 0..n {
                let line = json!({"id": id, "token": token, "method": "subscribe",
                    "params": {"snapshots": true, "logs": true}});
                writeln!(w, "{line}").unwrap();
            }
            w.flush().unwrap();
        })
    };
    let (mut ok, mut busy) = (0u64, 0u64);
    while ok + busy < n {
        let v = c.recv().expect("a reply to every subscribe");
        if v.get("event").is_some() {
            continue;
        }
        match v["error"]["code"].as_str() {
            None => ok += 1,
            Some("busy") => busy += 1,
            Some(other) => panic!("{other}: {v}"),
        }
    }
    writer.join().unwrap();
    assert_eq!(ok, 8, "a connection holds eight subscriptions");
    let after = vm_kib(d.pid, "VmRSS");
    // Before the limit, each unread subscription cost ~1.5 KiB (40,000 of them ~60 MiB).
    assert!(
        after < before + 24 * 1024,
        "the daemon grew from {before} KiB to {after} KiB"
    );
    let st =
        Raw::connect(&h.socket()).call(&json!({"id": 1, "token": d.token, "method": "status"}));
    assert_eq!(st["result"]["pid"], d.pid);
}

#[test]
fn over_long_requests_close_only_their_connection_and_memory_stays_bounded() {
    let h = Home::new();
    let d = h.start();
    let status = json!({"id": 1, "token": d.token, "method": "status"});
    let mut other = Raw::connect(&h.socket());
    assert_eq!(other.call(&status)["result"]["pid"], d.pid);
    let before = vm_kib(d.pid, "VmRSS");
    let floods: Vec<_> = (0..8)
        .map(|_| {
            let socket = h.socket();
            let status = status.clone();
            std::thread::spawn(move || {
                let mut c = Raw::connect(&socket);
                assert!(c.call(&status)["result"]["pid"].is_u64());
                // 16 MiB without a newline: the daemon stops reading at 4 MiB.
                let chunk = vec![b'x'; 1 << 20];
                for _ in 0..16 {
                    if c.w.write_all(&chunk).is_err() {
                        break;
                    }
                }
                let r = c.recv().expect("an error line");
                assert_eq!(r["error"]["code"], "too_large", "{r}");
                assert!(c.recv().is_none(), "closed");
            })
        })
        .collect();
    for f in floods {
        f.join().unwrap();
    }
    let after = vm_kib(d.pid, "VmRSS");
    // Each flood may hold one bounded line (MAX_REQUEST) at once, and the allocator keeps
    // some of it after the close; reading on would be 8 x 16 MiB.
    const MAX_REQUEST: u64 = 4 << 20; // daemon::MAX_REQUEST
    let bound = 8 * MAX_REQUEST / 1024 + 16 * 1024;
    assert!(
        after < before + bound,
        "the daemon grew from {before} KiB to {after} KiB (bound {bound} KiB more)"
    );
    assert_eq!(
        other.call(&status)["result"]["pid"],
        d.pid,
        "others still served"
    );
}
