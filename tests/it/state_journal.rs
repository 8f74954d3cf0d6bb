//! The state journal beside the state file: replay on open, a torn last record (a crash
//! during an append) discarded with a warning, any other damage (a flipped, moved,
//! dropped or foreign record, a modified header) refused like a tampered state file, a
//! journal the state file already holds ignored; the migration of per-node peer lists;
//! the state's size per node for a 2,000-node cluster; and plan edits through the engine
//! killed with SIGKILL at random moments, which must leave every confirmed edit.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use legion::core::secret::Secret;
use legion::engine::plan::PlanEdit;
use legion::engine::state::change::Change;
use legion::engine::state::crypto::{FormatError, KdfParams};
use legion::engine::state::journal::{JOURNAL_HEADER_LEN, Journal};
use legion::engine::state::model::{
    Execution, ExecutionKind, NodePlan, STALE_MEMBERSHIP, ServerReading, State, TrackedNode,
    memberships,
};
use legion::engine::state::open::{OpenError, open};
use legion::engine::state::store::{StateFile, StateLock, StoreError};
use legion::engine::{Engine, EngineConfig, Timings};
use legion::providers::mock::{MockCloud, MockModule};
use legion::providers::{
    BootMode, Credentials, Env, LABEL_NODE, ObservedServer, Registry, ServerStatus,
};
use zeroize::Zeroizing;

const FAST: KdfParams = KdfParams {
    m_cost_kib: 1024,
    t_cost: 1,
    p_cost: 1,
};
const PW: &[u8] = b"journal test password";

fn home() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )
    .unwrap();
    dir
}

fn node(cluster: &str, i: usize) -> NodePlan {
    NodePlan {
        uid: format!("{i:016x}"),
        cluster: cluster.into(),
        role: "node".into(),
        provider: "mock".into(),
        region: "sim-east".into(),
        offer: "sim-small".into(),
        image: "debian-12".into(),
        boot_mode: BootMode::Bios,
    }
}

fn put_node(i: usize) -> Zeroizing<Vec<u8>> {
    let changes = vec![Change::PlanNode {
        name: format!("n{i}"),
        value: Some(node("c", i)),
    }];
    Zeroizing::new(serde_json::to_vec(&changes).unwrap())
}

/// A home with an empty state and a journal of `records` node additions.
fn home_with_journal(records: usize) -> (tempfile::TempDir, StateFile, PathBuf) {
    let dir = home();
    let file = StateFile::in_home(dir.path());
    let state = State::new("0123456789abcdef".into());
    let key = file
        .create(PW, FAST, &serde_json::to_vec(&state).unwrap())
        .unwrap();
    let mut journal = Journal::beside(&file);
    for i in 0..records {
        journal.append(&key, &[put_node(i)]).unwrap();
    }
    let path = journal.path().to_path_buf();
    (dir, file, path)
}

fn names(state: &State) -> Vec<String> {
    state.plan.nodes.keys().cloned().collect()
}

/// Byte offsets of each record in a journal.
fn record_offsets(bytes: &[u8]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut at = JOURNAL_HEADER_LEN;
    while at + 4 <= bytes.len() {
        let len = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        let end = at + 4 + 12 + len;
        out.push((at, end));
        at = end;
    }
    out
}

fn tampered(result: Result<legion::engine::state::open::Opened, OpenError>) -> String {
    match result {
        Err(OpenError::Store(StoreError::Corrupted { detail, .. })) => {
            assert!(
                matches!(
                    detail,
                    FormatError::JournalTampered { .. } | FormatError::JournalBadMagic
                ),
                "{detail}"
            );
            detail.to_string()
        }
        Err(e) => panic!("refused with the wrong error: {e}"),
        Ok(o) => panic!("opened a tampered journal: {:?}", names(&o.state)),
    }
}

#[test]
fn records_are_replayed_on_open_in_order() {
    let (_dir, file, _) = home_with_journal(3);
    let opened = open(&file, PW).unwrap();
    assert_eq!(names(&opened.state), ["n0", "n1", "n2"]);
    assert_eq!(opened.replayed, 3);
    assert!(!opened.clean, "a replayed state must be saved again");
    assert!(opened.warnings.is_empty(), "{:?}", opened.warnings);
    // A removal replays too.
    let mut journal = opened.journal;
    let gone = vec![Change::PlanNode {
        name: "n1".into(),
        value: None,
    }];
    journal
        .append(
            &opened.key,
            &[Zeroizing::new(serde_json::to_vec(&gone).unwrap())],
        )
        .unwrap();
    assert_eq!(names(&open(&file, PW).unwrap().state), ["n0", "n2"]);
}

#[test]
fn a_torn_last_record_is_discarded_with_a_warning_and_cut_before_the_next_append() {
    let (_dir, file, path) = home_with_journal(3);
    let bytes = std::fs::read(&path).unwrap();
    let last = *record_offsets(&bytes).last().unwrap();
    // Every cut inside the last record: its length, its nonce, its ciphertext.
    for cut in [last.0 + 2, last.0 + 9, last.1 - 1] {
        std::fs::write(&path, &bytes[..cut]).unwrap();
        let opened = open(&file, PW).unwrap();
        assert_eq!(names(&opened.state), ["n0", "n1"], "cut at {cut}");
        assert_eq!(opened.warnings.len(), 1, "cut at {cut}");
        assert!(
            opened.warnings[0].contains("cut short by a crash"),
            "{}",
            opened.warnings[0]
        );
    }
    // The next append follows the last good record, not the torn bytes.
    let mut opened = open(&file, PW).unwrap();
    opened.journal.append(&opened.key, &[put_node(7)]).unwrap();
    let again = open(&file, PW).unwrap();
    assert_eq!(names(&again.state), ["n0", "n1", "n7"]);
    assert!(again.warnings.is_empty(), "{:?}", again.warnings);
}

#[test]
fn a_modified_moved_or_dropped_record_refuses_to_open() {
    let (_dir, file, path) = home_with_journal(3);
    let bytes = std::fs::read(&path).unwrap();
    let recs = record_offsets(&bytes);

    // A flipped byte in each complete record (ciphertext, nonce).
    for (i, (start, end)) in recs.iter().enumerate() {
        for at in [start + 5, end - 3] {
            let mut b = bytes.clone();
            b[at] ^= 0x40;
            std::fs::write(&path, &b).unwrap();
            let msg = tampered(open(&file, PW));
            assert!(msg.contains(&format!("record {i}")), "{msg}");
        }
    }
    // Two records swapped.
    let (r0, r1) = (recs[0], recs[1]);
    let mut swapped = bytes[..r0.0].to_vec();
    swapped.extend_from_slice(&bytes[r1.0..r1.1]);
    swapped.extend_from_slice(&bytes[r0.0..r0.1]);
    swapped.extend_from_slice(&bytes[r1.1..]);
    std::fs::write(&path, &swapped).unwrap();
    tampered(open(&file, PW));
    // The middle record dropped.
    let mut dropped = bytes[..r1.0].to_vec();
    dropped.extend_from_slice(&bytes[r1.1..]);
    std::fs::write(&path, &dropped).unwrap();
    tampered(open(&file, PW));
    // A record replayed twice.
    let mut doubled = bytes.clone();
    doubled.extend_from_slice(&bytes[r0.0..r0.1]);
    std::fs::write(&path, &doubled).unwrap();
    tampered(open(&file, PW));
    // The header.
    let mut b = bytes.clone();
    b[JOURNAL_HEADER_LEN - 3] ^= 1;
    std::fs::write(&path, &b).unwrap();
    let msg = tampered(open(&file, PW));
    assert!(msg.contains("header"), "{msg}");
    // Not a journal at all.
    std::fs::write(
        &path,
        b"not a journal, but long enough to have a header of its own ....",
    )
    .unwrap();
    tampered(open(&file, PW));
    // Unharmed, it opens.
    std::fs::write(&path, &bytes).unwrap();
    assert_eq!(names(&open(&file, PW).unwrap().state), ["n0", "n1", "n2"]);
}

#[test]
fn a_journal_the_state_file_already_holds_is_ignored() {
    let (_dir, file, path) = home_with_journal(2);
    let opened = open(&file, PW).unwrap();
    // A compaction: the whole state saved as the next generation; a crash before the
    // journal is removed leaves it behind.
    file.save(&opened.key, &serde_json::to_vec(&opened.state).unwrap())
        .unwrap();
    assert!(path.exists());
    let reopened = open(&file, PW).unwrap();
    assert_eq!(names(&reopened.state), ["n0", "n1"]);
    assert_eq!(reopened.replayed, 0, "nothing applied twice");
    assert!(reopened.clean);
    assert!(reopened.warnings.is_empty(), "{:?}", reopened.warnings);

    // A journal of another home (another salt) is not this state's either.
    let (_other_dir, _other, other_path) = home_with_journal(1);
    std::fs::copy(&other_path, &path).unwrap();
    let reopened = open(&file, PW).unwrap();
    assert_eq!(reopened.replayed, 0);

    // A journal newer than the state file (an older copy put back): ignored, and said.
    let (_dir, file, _) = home_with_journal(0);
    let (key, _) = file.open(PW).unwrap();
    let backup = std::fs::read(file.path()).unwrap();
    let state = State::new("0123456789abcdef".into());
    file.save(&key, &serde_json::to_vec(&state).unwrap())
        .unwrap();
    let mut journal = Journal::beside(&file);
    journal.append(&key, &[put_node(1)]).unwrap();
    std::fs::write(file.path(), backup).unwrap();
    let reopened = open(&file, PW).unwrap();
    assert_eq!(reopened.replayed, 0);
    assert_eq!(reopened.warnings.len(), 1);
    assert!(
        reopened.warnings[0].contains("older copy"),
        "{}",
        reopened.warnings[0]
    );
}

/// A fleet tracked as after an apply: planned, tracked with a finished execution, observed,
/// every node configured with its cluster's membership.
fn applied_fleet(n: usize, cluster_size: usize) -> State {
    let mut s = State::new("0123456789abcdef".into());
    for i in 0..n {
        let name = format!("node-{i:05}");
        let cluster = format!("c{}", i / cluster_size);
        s.plan.clusters.entry(cluster.clone()).or_default();
        s.plan.nodes.insert(name.clone(), node(&cluster, i));
        let mut exec = Execution::new(i as u64 + 1, ExecutionKind::Add);
        for p in legion::engine::phases_for(ExecutionKind::Add) {
            exec.start_phase(*p);
            exec.finish_phase(*p);
        }
        let ipv4 = format!("10.{}.{}.{}", (i >> 16) & 255, (i >> 8) & 255, i & 255);
        s.tracked.nodes.insert(
            name.clone(),
            TrackedNode {
                uid: format!("{i:016x}"),
                provider: "mock".into(),
                server_id: Some(format!("sv-{i}")),
                ipv4: Some(ipv4.clone()),
                ipv6: Some(format!("2001:db8::{i:x}")),
                region: "sim-east".into(),
                offer: "sim-small".into(),
                image: "debian-12".into(),
                host_key: Some(format!("SHA256:{i:064x}")),
                configured_membership: None,
                configured_peers: None,
                login: None,
                image_user: None,
                execution: Some(exec),
            },
        );
        let mut labels = BTreeMap::new();
        labels.insert(LABEL_NODE.to_string(), format!("{i:016x}"));
        s.observed.servers.insert(
            name.clone(),
            ServerReading {
                at_ms: 1,
                server: Some(ObservedServer {
                    id: format!("sv-{i}"),
                    name,
                    status: ServerStatus::Running,
                    ipv4: Some(ipv4),
                    ipv6: None,
                    region: "sim-east".into(),
                    offer: "sim-small".into(),
                    image: Some("debian-12".into()),
                    labels,
                }),
            },
        );
    }
    s
}

/// As the configure phase leaves it: membership once per cluster, an id per node.
fn configure_all(s: &mut State) {
    for (cluster, members) in memberships(s) {
        let c = legion::engine::state::model::ClusterTracked::new(members);
        for name in c.members.keys() {
            if let Some(t) = s.tracked.nodes.get_mut(name) {
                t.configured_membership = Some(c.membership.clone());
            }
        }
        s.tracked.clusters.insert(cluster, c);
    }
}

/// Peer lists are stored once per cluster, so a node costs the same in a cluster of 2,000
/// as in one of 10 (before: every node kept its cluster's whole peer list, O(cluster²)).
#[test]
fn state_size_per_node_is_bounded_for_a_2000_node_cluster() {
    let mut big = applied_fleet(2000, 2000);
    configure_all(&mut big);
    let mut small = applied_fleet(2000, 10);
    configure_all(&mut small);
    let per_node = |s: &State| serde_json::to_vec(s).unwrap().len() / 2000;
    let (big, small) = (per_node(&big), per_node(&small));
    eprintln!("state bytes per node: clusters of 2,000: {big}; clusters of 10: {small}");
    assert!(
        big <= 3 * 1024,
        "{big} bytes per node in one 2,000-node cluster"
    );
    assert!(
        big <= small + 64,
        "{big} vs {small}: cluster size still costs per node"
    );
}

/// A state file written before membership moved to the cluster: each node's peer list
/// becomes the cluster's membership id when it matches the cluster now, and an id that
/// never matches (reconfigured at the next apply, as before) when it does not.
#[test]
fn per_node_peer_lists_of_an_old_state_file_are_migrated_on_open() {
    let mut s = applied_fleet(4, 4);
    let addr = |i: usize| format!("10.0.0.{i}");
    let mut json = serde_json::to_value(&s).unwrap();
    for i in 0..4 {
        let others: Vec<String> = (0..4).filter(|j| *j != i).map(addr).collect();
        // node-00003 was configured before node-00002 had an address.
        let peers = if i == 3 {
            vec![addr(0), addr(1)]
        } else {
            others
        };
        json["tracked"]["nodes"][format!("node-{i:05}")]["configured_peers"] =
            serde_json::json!(peers);
    }
    assert!(json["tracked"].get("clusters").is_none());
    let dir = home();
    let file = StateFile::in_home(dir.path());
    file.create(PW, FAST, &serde_json::to_vec(&json).unwrap())
        .unwrap();

    let opened = open(&file, PW).unwrap();
    assert!(!opened.clean, "the migrated shape must be saved");
    s = opened.state;
    let cluster = s
        .tracked
        .clusters
        .get("c0")
        .expect("membership stored once");
    assert_eq!(cluster.members.len(), 4);
    for i in 0..3 {
        let t = &s.tracked.nodes[&format!("node-{i:05}")];
        assert_eq!(t.configured_membership.as_ref(), Some(&cluster.membership));
        assert_eq!(t.configured_peers, None);
    }
    let stale = &s.tracked.nodes["node-00003"];
    assert_eq!(
        stale.configured_membership.as_deref(),
        Some(STALE_MEMBERSHIP)
    );
    let text = String::from_utf8(serde_json::to_vec(&s).unwrap()).unwrap();
    assert!(
        !text.contains("configured_peers"),
        "the old field is not written"
    );
}

// SIGKILL during plan edits through the engine: a child process edits in a loop (mostly
// journal appends, now and then a full save that empties the journal) and reports each
// edit once `edit_plan` returned; the parent kills it at random moments and opens the
// state.

const CHILD_HOME_ENV: &str = "LEGION_JOURNAL_CRASH_HOME";
const CHILD_READY: &str = "LEGION_JOURNAL_CHILD_READY";
const CHILD_SAVED: &str = "LEGION_JOURNAL_CHILD_SAVED";
const CHILD_TEST: &str = "state_journal::journal_crash_child_entry";

fn engine_config(home: &Path) -> EngineConfig {
    EngineConfig {
        home: home.to_path_buf(),
        registry: Registry::new(vec![std::sync::Arc::new(MockModule::with_cloud(
            MockCloud::new(1),
        ))]),
        env: Env::default().with("LEGION_MOCK_NETWORK", "1"),
        timings: Timings::default(),
        kdf: FAST,
        ssh_endpoints: None,
    }
}

/// Entry point of the crash child; a no-op in a normal run.
#[test]
fn journal_crash_child_entry() {
    let Some(home) = std::env::var_os(CHILD_HOME_ENV) else {
        return;
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async move {
        let home = PathBuf::from(home);
        let engine = Engine::start(engine_config(&home));
        engine
            .unlock(Secret::new("journal test password"))
            .await
            .unwrap();
        // The engine checks every planned node's provider: it must be configured here.
        let mut creds = Credentials::new();
        creds.insert("latency_ms".into(), "0".into());
        engine
            .configure_provider("mock".into(), creds)
            .await
            .unwrap();
        let next = engine.plan().await.unwrap().nodes.len();
        println!("{CHILD_READY}");
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut i = next;
        while Instant::now() < deadline {
            let edit = if i % 7 == 6 {
                // Not keyed: a full save, which removes the journal.
                PlanEdit::SetManagementSources {
                    sources: vec![format!("10.{}.0.0/16", i % 200)],
                }
            } else {
                PlanEdit::UpsertNode {
                    name: format!("n{i:06}"),
                    node: node("c", i),
                }
            };
            engine.edit_plan(edit).await.unwrap();
            println!("{CHILD_SAVED} {i}");
            i += 1;
        }
    });
}

struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn sigkill_during_edits_keeps_every_confirmed_edit() {
    const KILLS: usize = 40;
    let dir = home();
    let file = StateFile::in_home(dir.path());
    let state = State::new("0123456789abcdef".into());
    file.create(PW, FAST, &serde_json::to_vec(&state).unwrap())
        .unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut seed = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    eprintln!("journal crash test seed {seed}");
    let mut confirmed: Option<usize> = None;
    let mut torn = 0;
    let mut replayed_rounds = 0;
    for round in 0..KILLS {
        let child = Command::new(&exe)
            .args(["--exact", CHILD_TEST, "--nocapture", "--test-threads=1"])
            .env(CHILD_HOME_ENV, dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut child = KillOnDrop(child);
        let mut out = BufReader::new(child.0.stdout.take().unwrap());
        let mut line = String::new();
        loop {
            line.clear();
            if out.read_line(&mut line).unwrap() == 0 {
                let mut err = String::new();
                let _ = child.0.stderr.take().unwrap().read_to_string(&mut err);
                panic!("round {round}: crash child exited before it was ready:\n{err}");
            }
            if line.contains(CHILD_READY) {
                break;
            }
        }
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let edits = 1 + seed % 12;
        for _ in 0..edits {
            line.clear();
            if out.read_line(&mut line).unwrap() == 0 {
                break;
            }
            if let Some(i) = line
                .split_whitespace()
                .skip_while(|w| *w != CHILD_SAVED)
                .nth(1)
            {
                confirmed = Some(i.parse().unwrap());
            }
        }
        std::thread::sleep(Duration::from_micros(seed % 3000));
        child.0.kill().unwrap();
        child.0.wait().unwrap();
        drop(child);

        let _lock = StateLock::acquire(dir.path()).unwrap();
        let opened = open(&file, PW).unwrap_or_else(|e| {
            panic!("round {round}: the state does not open after SIGKILL: {e}")
        });
        torn += opened.warnings.len();
        if opened.replayed > 0 {
            replayed_rounds += 1;
        }
        // Edits are sequential: the nodes are n0.., without a gap, through at least the
        // last one confirmed (an unconfirmed one may or may not be there).
        let nodes = names(&opened.state);
        let last: Option<usize> = nodes.last().map(|n| n[1..].parse().unwrap());
        let expected: Vec<String> = last
            .map(|m| {
                (0..=m)
                    .filter(|i| i % 7 != 6)
                    .map(|i| format!("n{i:06}"))
                    .collect()
            })
            .unwrap_or_default();
        assert_eq!(nodes, expected, "round {round}: a gap in the edits");
        if let Some(c) = confirmed {
            let expected = (0..=c).filter(|i| i % 7 != 6).count();
            assert!(
                nodes.len() >= expected,
                "round {round}: edit {c} was confirmed but the state has {} nodes",
                nodes.len()
            );
        }
    }
    eprintln!(
        "journal crash test: {KILLS} kills, last confirmed edit {confirmed:?}, {replayed_rounds} rounds replayed a journal, {torn} torn records discarded"
    );
    assert!(confirmed.is_some(), "the child never confirmed an edit");
    assert!(replayed_rounds > 0, "no kill left a journal to replay");
}
