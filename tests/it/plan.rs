//! `legion plan` and `legion apply` as a script uses them, on the simulated cloud: the
//! exit codes follow the change set, an empty plan starts no apply, and an apply never
//! says "converged" while the plan still differs from what the provider shows.

use std::path::Path;
use std::process::Command;

use legion::core::secret::Secret;
use legion::engine::plan::PlanEdit;
use legion::engine::{Engine, EngineConfig};
use legion::providers::{Env, Registry};
use legion_testkit::tmux::Tmux;

fn cli(home: &Path, pw: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_legion"));
    c.env("LEGION_HOME", home)
        .env("LEGION_PASSWORD_FILE", pw)
        .env("LEGION_MOCK_NETWORK", "1")
        .env_remove("LEGION_DAEMON_TOKEN");
    c
}

fn run(c: &mut Command) -> (i32, String, String) {
    let out = c.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Change a planned node's offer with a plan edit, through an engine of this process
/// (the CLI holds no lock between commands).
fn set_offer(home: &Path, password: &str, node: &str, offer: &str) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut config = EngineConfig::new(home.to_path_buf());
        config.registry = Registry::builtin();
        config.env = Env::default().with("LEGION_MOCK_NETWORK", "1");
        let engine = Engine::start(config);
        engine.unlock(Secret::new(password)).await.unwrap();
        let mut plan = engine.plan().await.unwrap().nodes[node].clone();
        plan.offer = offer.into();
        engine
            .edit_plan(PlanEdit::UpsertNode {
                name: node.into(),
                node: plan,
            })
            .await
            .unwrap();
        engine.lock().await.unwrap();
    });
}

#[test]
fn plan_exit_codes_follow_the_change_set_and_apply_never_hides_a_difference() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let pw = dir.path().join("pw");
    std::fs::write(&pw, "plan password\n").unwrap();
    assert_eq!(run(cli(&home, &pw).args(["config", "init"])).0, 0);
    let (code, _, err) =
        run(cli(&home, &pw).args(["provider", "configure", "mock", "--latency-ms", "5"]));
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = run(cli(&home, &pw).args(["nodes", "add", "web-1", "--provider", "mock"]));
    assert_eq!(code, 0, "{err}");

    // Planned, not applied: a node to create.
    let (code, out, err) = run(cli(&home, &pw).args(["plan", "--detailed-exitcode"]));
    assert_eq!(code, 2, "{out}{err}");
    assert!(err.is_empty(), "changes are not an error: {err}");
    assert!(out.contains("Nodes\n  +   web-1  (create)"), "{out}");
    assert!(out.contains("offer        sim-small"), "{out}");
    assert!(out.contains("Plan: 2 to create"), "{out}");
    let (code, out, _) = run(cli(&home, &pw).args(["plan", "show", "--json"]));
    assert_eq!(code, 0, "without --detailed-exitcode changes exit 0");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["changes"][0]["kind"], "node");
    assert_eq!(v["changes"][0]["action"], "create");
    assert!(v["summary"]["create"].as_u64().unwrap() >= 1, "{v}");

    // Applied and read back: nothing to do.
    let (code, out, err) = run(cli(&home, &pw).args(["apply", "--wait"]));
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("+   web-1"), "the plan is shown first: {out}");
    assert!(out.contains("converged"), "{out}");
    let (code, out, err) = run(cli(&home, &pw).args(["plan", "--detailed-exitcode"]));
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.starts_with("No changes"), "{out}");
    let before = std::fs::read(home.join("state.legion")).unwrap();
    let (code, out, _) = run(cli(&home, &pw).args(["apply", "--wait"]));
    assert_eq!(code, 0);
    assert!(out.contains("nothing to do"), "{out}");
    assert!(!out.contains("apply #"), "no apply started: {out}");
    assert_eq!(
        std::fs::read(home.join("state.legion")).unwrap(),
        before,
        "an empty plan writes nothing"
    );

    // A different offer: a change again, which apply makes (a resize on the simulated
    // cloud; a provider without one keeps it blocked: tests/it/replace.rs).
    set_offer(&home, "plan password", "web-1", "sim-large");
    let (code, out, err) = run(cli(&home, &pw).args(["plan", "--detailed-exitcode"]));
    assert_eq!(code, 2, "{out}{err}");
    assert!(out.contains("~   web-1  (update)"), "{out}");
    assert!(out.contains("offer        sim-small -> sim-large"), "{out}");
    assert!(
        out.contains("why: resize: the server stops for it"),
        "{out}"
    );
    let (code, out, _) = run(cli(&home, &pw).args(["status"]));
    assert_eq!(code, 0);
    assert!(out.contains("plan: 1 to change"), "{out}");
    let (code, out, err) = run(cli(&home, &pw).args(["apply", "--wait"]));
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("converged"), "{out}");
    // Compared with a fresh reading of the server: it has the new offer.
    let (code, out, err) = run(cli(&home, &pw).args(["plan", "--detailed-exitcode"]));
    assert_eq!(code, 0, "{out}{err}");
}

/// The dashboard on a home with a planned, unapplied node: the header counts and the row
/// marker show it, `a` opens the plan overlay, Cancel (focused) changes nothing, Apply
/// applies, and the counts and the marker clear once the apply converged.
#[test]
fn the_dashboard_shows_the_plan_before_it_applies() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let pw = dir.path().join("pw");
    std::fs::write(&pw, "plan password\n").unwrap();
    assert_eq!(run(cli(&home, &pw).args(["config", "init"])).0, 0);
    let (code, _, err) =
        run(cli(&home, &pw).args(["provider", "configure", "mock", "--latency-ms", "5"]));
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = run(cli(&home, &pw).args(["nodes", "add", "web-1", "--provider", "mock"]));
    assert_eq!(code, 0, "{err}");
    let command = format!(
        "env -u NO_COLOR -u LEGION_DAEMON_TOKEN LEGION_MOCK_NETWORK=1 LEGION_HOME={} \
         LEGION_PASSWORD_FILE={} TERM=xterm-256color {}; echo LEGION-EXITED $?; sleep 60",
        home.display(),
        pw.display(),
        env!("CARGO_BIN_EXE_legion")
    );
    let Some(t) = Tmux::start(&command, 140, 36) else {
        return;
    };
    let s = t.wait("the plan's counts in the header", |s| {
        s.contains("plan: 2 to create")
    });
    assert!(
        s.contains("│web-1 +"),
        "the row carries the create marker:\n{s}"
    );
    assert!(s.contains("apply: idle"), "{s}");

    t.text("a");
    let s = t.wait_for("Plan: 2 to create");
    assert!(s.contains("+   web-1  (create)"), "{s}");
    assert!(s.contains("offer sim-small"), "{s}");
    assert!(s.contains("Firewall sets"), "{s}");
    t.keys(&["Enter"]);
    let s = t.wait_for("apply cancelled: nothing was changed");
    assert!(s.contains("apply: idle"), "Cancel started nothing:\n{s}");
    assert!(s.contains("plan: 2 to create"), "{s}");

    t.text("a");
    t.wait_for("Plan: 2 to create");
    t.keys(&["Tab"]);
    t.keys(&["Enter"]);
    let s = t.wait("the apply to converge and the plan to empty", |s| {
        s.contains("apply #1: converged") && !s.contains("plan: ")
    });
    assert!(!s.contains("│web-1 +"), "the marker cleared:\n{s}");
    assert!(s.contains("│web-1 "), "{s}");

    t.text("q");
    t.wait_for("LEGION-EXITED 0");
}
