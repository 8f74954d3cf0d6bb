//! `legion plan import FILE` / `legion plan export` figures (issue 16), with the real
//! binary end to end (process start, unlock, the whole document checked, one state
//! change, the save, lock), at 1k and 10k nodes in clusters of 100 (the fleet generator
//! of `benches/common`), printed as plain lines:
//! - import into an empty plan, JSON and TOML, in process (the command unlocks the state
//!   itself) and through the daemon (one request carrying the document);
//! - a second import of the same file (nothing changes, nothing is written);
//! - export (JSON) of the imported plan.
//!
//! Goal: an import of 10,000 nodes in at most 5 s. `cargo bench --bench plan_io`.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use legion::engine::plan_file::PlanDocument;
use legion::engine::plan_file::text::{Format, render};

const PW: &str = "bench password";

struct Home {
    _dir: tempfile::TempDir,
    home: PathBuf,
    pw: PathBuf,
    token: Option<String>,
}

impl Home {
    fn new() -> Home {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().join("home");
        let pw = dir.path().join("pw");
        std::fs::write(&pw, format!("{PW}\n")).unwrap();
        let h = Home {
            _dir: dir,
            home,
            pw,
            token: None,
        };
        h.ok(&["config", "init"]);
        h.ok(&["provider", "configure", "mock", "--latency-ms", "0"]);
        h
    }

    fn cmd(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_legion"));
        c.env("LEGION_HOME", &self.home)
            .env("LEGION_MOCK_NETWORK", "1")
            .env_remove("LEGION_DAEMON_TOKEN");
        match &self.token {
            Some(t) => c.env("LEGION_DAEMON_TOKEN", t),
            None => c.env("LEGION_PASSWORD_FILE", &self.pw),
        };
        c
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.cmd().args(args).output().unwrap();
        assert!(
            out.status.success(),
            "legion {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    fn timed(&self, args: &[&str]) -> (Duration, String) {
        let t = Instant::now();
        let out = self.ok(args);
        (t.elapsed(), out)
    }

    fn start_daemon(&mut self) {
        let out = self.ok(&["daemon", "start"]);
        self.token = out
            .lines()
            .find_map(|l| l.strip_prefix("export LEGION_DAEMON_TOKEN="))
            .map(String::from);
        assert!(self.token.is_some(), "{out}");
    }
}

impl Drop for Home {
    fn drop(&mut self) {
        if self.token.is_some() {
            let _ = self.cmd().args(["daemon", "stop"]).output();
        }
    }
}

/// `n` nodes in clusters of 100, with the default role (the generator's `worker` has no
/// install script in a fresh home).
fn document(n: usize) -> PlanDocument {
    let mut doc = PlanDocument::from_plan(&common::fleet(n, 100).plan);
    for node in doc.nodes.values_mut() {
        node.role = Some("node".into());
    }
    doc
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn s(d: Duration) -> f64 {
    d.as_secs_f64()
}

fn bench(n: usize) {
    let doc = document(n);
    let files = tempfile::tempdir().unwrap();
    let json = render(&doc, Format::Json).unwrap();
    let toml = render(&doc, Format::Toml).unwrap();
    let json_file = write(files.path(), "plan.json", &json);
    let toml_file = write(files.path(), "plan.toml", &toml);
    let jf = json_file.to_str().unwrap();
    let tf = toml_file.to_str().unwrap();

    let h = Home::new();
    let (import, out) = h.timed(&["plan", "import", jf]);
    assert!(out.contains(&format!("nodes {n} added")), "{}", &out[..200]);
    let (again, out) = h.timed(&["plan", "import", jf]);
    assert!(out.contains("nothing to import"), "{out}");
    let export_file = files.path().join("export.json");
    let (export, _) = h.timed(&["plan", "export", "-o", export_file.to_str().unwrap()]);
    let exported = std::fs::read_to_string(&export_file).unwrap();
    assert_eq!(
        exported.len(),
        json.len(),
        "the export is the imported document"
    );
    let state_len = std::fs::metadata(h.home.join("state.legion"))
        .unwrap()
        .len();

    let h = Home::new();
    let (import_toml, _) = h.timed(&["plan", "import", tf]);

    let mut h = Home::new();
    h.start_daemon();
    let (import_daemon, out) = h.timed(&["plan", "import", jf]);
    assert!(out.contains(&format!("nodes {n} added")));
    let (export_daemon, _) = h.timed(&["plan", "export"]);

    println!(
        "{n} nodes ({} KB JSON, {} KB TOML): import {:.2} s ({:.2} ms/node), TOML {:.2} s, through the daemon {:.2} s; \
         re-import (no change) {:.2} s; export {:.2} s (daemon {:.2} s); state file {} KB",
        json.len() / 1024,
        toml.len() / 1024,
        s(import),
        s(import) * 1e3 / n as f64,
        s(import_toml),
        s(import_daemon),
        s(again),
        s(export),
        s(export_daemon),
        state_len / 1024,
    );
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` only checks that this builds.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    for n in [1000, 10_000] {
        bench(n);
    }
}
