//! `legion plan export` and `legion plan import FILE` with the real binary on the
//! simulated cloud: an export imports as a no-op (JSON and TOML), a file with bad entries
//! is refused whole with each error at its line, an import goes through the daemon as
//! one request, `--readonly` refuses it, and on a terminal nodes an import would remove
//! are listed and asked about.

use std::path::{Path, PathBuf};
use std::process::Command;

use legion_testkit::tmux::Tmux;

struct Home {
    _dir: tempfile::TempDir,
    home: PathBuf,
    pw: PathBuf,
    files: PathBuf,
}

impl Home {
    fn new() -> Home {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().join("home");
        let pw = dir.path().join("pw");
        let files = dir.path().join("files");
        std::fs::create_dir(&files).unwrap();
        std::fs::write(&pw, "plan io password\n").unwrap();
        let h = Home {
            _dir: dir,
            home,
            pw,
            files,
        };
        h.ok(&["config", "init"]);
        h.ok(&["provider", "configure", "mock", "--latency-ms", "1"]);
        h
    }

    fn cmd(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_legion"));
        c.env("LEGION_HOME", &self.home)
            .env("LEGION_PASSWORD_FILE", &self.pw)
            .env("LEGION_MOCK_NETWORK", "1")
            .env_remove("LEGION_DAEMON_TOKEN");
        c
    }

    fn run(&self, args: &[&str]) -> (i32, String, String) {
        run(self.cmd().args(args))
    }

    fn ok(&self, args: &[&str]) -> String {
        let (code, out, err) = self.run(args);
        assert_eq!(code, 0, "legion {args:?}:\n{out}\n{err}");
        out
    }

    fn file(&self, name: &str) -> PathBuf {
        self.files.join(name)
    }

    fn state(&self) -> Vec<u8> {
        std::fs::read(self.home.join("state.legion")).unwrap()
    }
}

fn run(c: &mut Command) -> (i32, String, String) {
    let out = c.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

#[test]
fn an_export_imports_as_a_no_op_in_json_and_toml() {
    let h = Home::new();
    h.ok(&[
        "nodes",
        "add",
        "web-1",
        "--provider",
        "mock",
        "--cluster",
        "prod",
    ]);
    h.ok(&[
        "nodes",
        "add",
        "web-2",
        "--provider",
        "mock",
        "--cluster",
        "prod",
        "--offer",
        "sim-large",
    ]);
    h.ok(&["apply", "--wait"]);
    let (code, out, err) = h.run(&["plan", "--detailed-exitcode"]);
    assert_eq!(code, 0, "{out}{err}");

    // Applied fleet: export, import, and there is still nothing to do.
    let json = h.ok(&["plan", "export"]);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["version"], 1, "{json}");
    assert_eq!(v["nodes"]["web-2"]["offer"], "sim-large", "{json}");
    assert!(v["nodes"]["web-1"].get("uid").is_none(), "no uid: {json}");
    let file = h.file("plan.json");
    std::fs::write(&file, &json).unwrap();
    let before = h.state();
    let out = h.ok(&["plan", "import", p(&file)]);
    assert!(out.contains("matches the plan; nothing to import"), "{out}");
    assert_eq!(h.state(), before, "a no-op import writes nothing");
    let (code, out, err) = h.run(&["plan", "--detailed-exitcode"]);
    assert_eq!(code, 0, "after importing an export: {out}{err}");

    // Everything else an operator plans, through both formats.
    h.ok(&["config", "set", "management-sources", "203.0.113.0/24"]);
    h.ok(&["zones", "add", "example.test", "--provider", "mock"]);
    h.ok(&[
        "records",
        "add",
        "example.test",
        "www",
        "A",
        "192.0.2.10",
        "--ttl",
        "60",
    ]);
    h.ok(&["records", "add", "example.test", "api", "A", "@web-1"]);
    h.ok(&[
        "firewalls",
        "add-rule",
        "prod",
        "--port",
        "443",
        "--source",
        "0.0.0.0/0",
        "--description",
        "web",
    ]);
    let json = h.ok(&["plan", "export", "--format", "json"]);
    let toml_file = h.file("plan.toml");
    h.ok(&["plan", "export", "-o", p(&toml_file)]);
    let toml_text = std::fs::read_to_string(&toml_file).unwrap();
    assert!(toml_text.starts_with("version = 1\n"), "{toml_text}");
    assert!(toml_text.contains("[[firewalls.prod]]"), "{toml_text}");
    let shown = h.ok(&["plan", "--json", "--no-refresh"]);
    let before = h.state();
    for (name, text) in [("all.json", &json), ("all.toml", &toml_text)] {
        let file = h.file(name);
        std::fs::write(&file, text).unwrap();
        let out = h.ok(&["plan", "import", p(&file)]);
        assert!(out.contains("nothing to import"), "{name}: {out}");
        assert_eq!(h.state(), before, "{name}: nothing written");
        assert_eq!(h.ok(&["plan", "export"]), json, "{name}");
        assert_eq!(h.ok(&["plan", "--json", "--no-refresh"]), shown, "{name}");
    }

    // A changed document: one edit, printed as `legion plan` prints it.
    let mut v: serde_json::Value = serde_json::from_str(&json).unwrap();
    v["nodes"]["web-3"] = serde_json::json!({"provider": "mock", "cluster": "prod"});
    v["nodes"].as_object_mut().unwrap().remove("web-2");
    let file = h.file("changed.json");
    std::fs::write(&file, serde_json::to_string_pretty(&v).unwrap()).unwrap();
    let out = h.ok(&["plan", "import", p(&file), "--dry-run"]);
    assert!(out.contains("nodes 1 added, 1 removed"), "{out}");
    assert!(out.contains("would remove node web-2"), "{out}");
    assert!(out.contains("nothing was changed"), "{out}");
    assert_eq!(h.ok(&["plan", "export"]), json, "a dry run changes nothing");
    // No terminal: it proceeds, as apply does.
    let out = h.ok(&["plan", "import", p(&file)]);
    assert!(out.contains("imported"), "{out}");
    assert!(out.contains("nodes 1 added, 1 removed"), "{out}");
    assert!(out.contains("+   web-3  (create)"), "{out}");
    assert!(out.contains("-   web-2  (delete)"), "{out}");
    assert!(out.contains("Run `legion apply`"), "{out}");
    let (code, _, _) = h.run(&["plan", "--detailed-exitcode", "--no-refresh"]);
    assert_eq!(code, 2);
    let exported: serde_json::Value = serde_json::from_str(&h.ok(&["plan", "export"])).unwrap();
    assert_eq!(
        exported["nodes"]["web-3"]["region"], "sim-east",
        "defaults filled"
    );
    assert!(exported["nodes"].get("web-2").is_none());

    // --merge keeps what the file leaves out.
    let only = h.file("only.json");
    std::fs::write(
        &only,
        r#"{"version": 1, "nodes": {"web-4": {"provider": "mock", "cluster": "prod"}}}"#,
    )
    .unwrap();
    let out = h.ok(&["plan", "import", p(&only), "--merge"]);
    assert!(
        out.starts_with(&format!("imported {}: nodes 1 added\n", p(&only))),
        "{out}"
    );
    let exported: serde_json::Value = serde_json::from_str(&h.ok(&["plan", "export"])).unwrap();
    let names: Vec<&String> = exported["nodes"].as_object().unwrap().keys().collect();
    assert_eq!(names, ["web-1", "web-3", "web-4"]);
    assert_eq!(
        exported["zones"]["example.test"]["records"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
}

/// A document with two bad entries (and a good one between them) on known lines.
const BAD: &str = r#"{
  "version": 1,
  "nodes": {
    "web-1": {
      "provider": "mock",
      "offer": "sim-huge"
    },
    "web-2": { "provider": "mock" }
  },
  "firewalls": {
    "default": [
      { "protocol": "tcp", "port": "443", "sources": ["0.0.0.0/0"] },
      { "protocol": "tcp", "port": "70000", "sources": ["0.0.0.0/0"] }
    ]
  }
}
"#;

#[test]
fn every_bad_entry_is_reported_at_its_line_and_nothing_changes() {
    let h = Home::new();
    h.ok(&["nodes", "add", "db-1", "--provider", "mock"]);
    let exported = h.ok(&["plan", "export"]);
    let before = h.state();
    let file = h.file("bad.json");
    std::fs::write(&file, BAD).unwrap();
    let (code, out, err) = h.run(&["plan", "import", p(&file)]);
    assert_eq!(code, 1, "{out}{err}");
    let f = p(&file);
    let at = format!("{f}:");
    let lines: Vec<&str> = err.lines().filter(|l| l.contains(&at)).collect();
    assert_eq!(lines.len(), 2, "{err}");
    assert!(
        lines[0].starts_with(&format!("legion: {f}:4:5: nodes.web-1: ")),
        "{err}"
    );
    assert!(lines[0].contains("no offer \"sim-huge\""), "{err}");
    assert!(lines[0].contains("sim-small"), "the valid choices: {err}");
    assert!(
        lines[1].starts_with(&format!("legion: {f}:13:7: firewalls.default.1: port: ")),
        "{err}"
    );
    assert!(err.contains("2 errors in"), "{err}");
    assert!(err.contains("nothing was changed"), "{err}");
    assert_eq!(h.state(), before, "nothing written");
    assert_eq!(h.ok(&["plan", "export"]), exported);

    // TOML: the same, lines of that file.
    let toml_file = h.file("bad.toml");
    std::fs::write(
        &toml_file,
        "version = 1\n\n[nodes.web-1]\nprovider = \"nope\"\n\n[nodes.web-2]\nprovider = \"mock\"\nrole = \"db\"\n",
    )
    .unwrap();
    let (code, _, err) = h.run(&["plan", "import", p(&toml_file)]);
    assert_eq!(code, 1, "{err}");
    let t = p(&toml_file);
    assert!(err.contains(&format!("{t}:3:")), "{err}");
    assert!(err.contains("unknown provider \"nope\""), "{err}");
    assert!(err.contains(&format!("{t}:6:")), "{err}");
    assert!(err.contains("role \"db\" has no install script"), "{err}");

    // Syntax: a misspelt field is the parser's error, with its position.
    let typo = h.file("typo.json");
    std::fs::write(&typo, "{\n  \"version\": 1,\n  \"nodes\": {\"a\": {\"provider\": \"mock\", \"ofer\": \"x\"}}\n}\n").unwrap();
    let (code, _, err) = h.run(&["plan", "import", p(&typo)]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains(&format!("{}:3:", p(&typo))), "{err}");
    assert!(err.contains("unknown field `ofer`"), "{err}");
    assert_eq!(h.state(), before);
}

#[test]
fn an_import_goes_through_the_daemon_in_one_request() {
    let h = Home::new();
    h.ok(&["nodes", "add", "web-1", "--provider", "mock"]);
    let out = h.ok(&["daemon", "start"]);
    let token = out
        .lines()
        .find_map(|l| l.strip_prefix("export LEGION_DAEMON_TOKEN="))
        .unwrap_or_else(|| panic!("no token in {out}"))
        .to_string();
    let via = |args: &[&str]| {
        let mut c = h.cmd();
        c.env_remove("LEGION_PASSWORD_FILE")
            .env("LEGION_DAEMON_TOKEN", &token)
            .args(args);
        run(&mut c)
    };
    let file = h.file("plan.json");
    std::fs::write(
        &file,
        r#"{"version": 1, "nodes": {
            "web-1": {"provider": "mock"},
            "web-2": {"provider": "mock", "offer": "sim-large"}
        }}"#,
    )
    .unwrap();
    let (code, out, err) = via(&["plan", "import", p(&file)]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("nodes 1 added"), "{out}");
    assert!(out.contains("+   web-2  (create)"), "{out}");
    let (code, out, err) = via(&["plan", "export", "--format", "toml"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("[nodes.web-2]"), "{out}");
    assert!(out.contains("offer = \"sim-large\""), "{out}");
    // Refusals come back through the daemon with their places too.
    std::fs::write(
        &file,
        "{\"version\": 1,\n \"nodes\": {\"web-1\": {\"provider\": \"hetzner\"}}}\n",
    )
    .unwrap();
    let (code, _, err) = via(&["plan", "import", p(&file)]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains(&format!("{}:2:", p(&file))), "{err}");
    assert!(err.contains("hetzner"), "{err}");
    let (code, _, err) = via(&["daemon", "stop"]);
    assert_eq!(code, 0, "{err}");
}

#[test]
fn readonly_refuses_an_import_but_not_an_export_or_a_dry_run() {
    let h = Home::new();
    h.ok(&["nodes", "add", "web-1", "--provider", "mock"]);
    let file = h.file("plan.json");
    std::fs::write(
        &file,
        r#"{"version": 1, "nodes": {"web-9": {"provider": "mock"}}}"#,
    )
    .unwrap();
    let before = h.state();
    let (code, _, err) = h.run(&["--readonly", "plan", "import", p(&file)]);
    assert_eq!(code, 1);
    assert!(
        err.contains("--readonly: `legion plan import` changes the plan"),
        "{err}"
    );
    let out = h.ok(&["--readonly", "plan", "import", p(&file), "--dry-run"]);
    assert!(out.contains("would change the plan"), "{out}");
    assert!(
        h.ok(&["--readonly", "plan", "export"])
            .contains("\"web-1\"")
    );
    assert_eq!(h.state(), before);
}

#[test]
fn on_a_terminal_removing_nodes_is_shown_and_asked_and_only_yes_proceeds() {
    let h = Home::new();
    h.ok(&["nodes", "add", "web-1", "--provider", "mock"]);
    h.ok(&["nodes", "add", "web-2", "--provider", "mock"]);
    let file = h.file("one.json");
    std::fs::write(
        &file,
        r#"{"version": 1, "nodes": {"web-1": {"provider": "mock"}}}"#,
    )
    .unwrap();
    let before = h.state();
    let command = |answer_file: &str| {
        format!(
            "env -u LEGION_DAEMON_TOKEN LEGION_MOCK_NETWORK=1 LEGION_HOME={} \
             LEGION_PASSWORD_FILE={} TERM=xterm-256color {} plan import {answer_file}; \
             echo LEGION-EXITED $?; sleep 60",
            h.home.display(),
            h.pw.display(),
            env!("CARGO_BIN_EXE_legion")
        )
    };
    let Some(t) = Tmux::start(&command(p(&file)), 140, 30) else {
        return;
    };
    let s = t.wait_for("Only 'yes' is accepted");
    assert!(s.contains("  - web-2"), "{s}");
    assert!(s.contains("Remove 1 nodes from the plan?"), "{s}");
    t.text("no");
    t.keys(&["Enter"]);
    let s = t.wait_for("LEGION-EXITED");
    assert!(s.contains("import cancelled; nothing was changed"), "{s}");
    assert!(s.contains("LEGION-EXITED 1"), "{s}");
    drop(t);
    assert_eq!(h.state(), before, "nothing written");

    let Some(t) = Tmux::start(&command(p(&file)), 140, 30) else {
        return;
    };
    t.wait_for("Only 'yes' is accepted");
    t.text("yes");
    t.keys(&["Enter"]);
    let s = t.wait_for("LEGION-EXITED");
    assert!(s.contains("nodes 1 removed"), "{s}");
    assert!(s.contains("LEGION-EXITED 0"), "{s}");
    let exported: serde_json::Value = serde_json::from_str(&h.ok(&["plan", "export"])).unwrap();
    assert!(exported["nodes"].get("web-2").is_none(), "{exported}");
}
