//! The dashboard's app type without a terminal: events in, effects and a rendered buffer
//! out. Screens are compared as text snapshots (insta).

#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use legion::engine::Action;
use legion::engine::snapshot::{AppSnapshot, ApplyView, LockState, NodeRow, SyncRow};
use legion::engine::snapshot::{Machine, SyncState, System};
use legion::providers::HealthReading;
use legion::views::app::{App, Effect, Options, SessionError, UiEvent};
use legion::views::keymap::Keymap;
use legion::views::theme::Theme;
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::buffer::Buffer;

fn node(i: usize, machine: Machine, system: System) -> NodeRow {
    NodeRow {
        name: format!("node-{i:02}"),
        status: legion::engine::status::NodeStatus::Running,
        cluster: "prod".into(),
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
        machine,
        system,
        health: Some(HealthReading::Healthy),
        address: Some(format!("198.51.100.{i}")),
        server_id: Some(format!("sv-{i}")),
        operation: None,
        last_error: None,
        error_class: None,
        waiting: None,
        planned: true,
        live: true,
        execution: None,
        diffs: vec![],
        ops_started: 0,
        ops_finished: 0,
        pending: None,
    }
}

fn snapshot(n: usize) -> Arc<AppSnapshot> {
    let mut s = AppSnapshot::empty("/home/op/.local/share/legion".into(), LockState::Unlocked);
    s.seq = 1;
    s.apply = ApplyView::Finished {
        id: 3,
        ok: true,
        failed: vec![],
        waiting: vec![],
    };
    s.nodes = (0..n)
        .map(|i| node(i, Machine::Running, System::Ready))
        .collect();
    if n > 2 {
        s.nodes[1].machine = Machine::Stopped;
        s.nodes[1].system = System::Unreachable("server is stopped".into());
        s.nodes[1].status = legion::engine::status::NodeStatus::Stopped;
        s.nodes[1].health = Some(HealthReading::Unreachable("server is stopped".into()));
        s.nodes[2].last_error = Some("configure failed: simulated failure in configure".into());
        s.nodes[2].system = System::Failed(legion::engine::state::model::Phase::Configure);
        s.nodes[2].status = legion::engine::status::NodeStatus::Failed {
            phase: legion::engine::state::model::Phase::Configure,
        };
        s.nodes[2].health = None;
    }
    s.zones = vec![SyncRow {
        name: "example.test".into(),
        provider: "mock".into(),
        status: legion::engine::status::SyncStatus::Waiting,
        state: SyncState::Waiting,
        summary: "2 rrsets".into(),
        waiting: Some("node node-09 has no address yet".into()),
        last_error: None,
        error_class: None,
        previous_error: None,
        operation: None,
        planned: true,
        live: true,
        pending: None,
        tasks: vec![],
    }];
    Arc::new(s)
}

fn app_with(snap: Arc<AppSnapshot>, readonly: bool) -> App {
    let keymap = if readonly {
        Keymap::defaults().without_mutating()
    } else {
        Keymap::defaults()
    };
    let mut app = App::new(
        snap.clone(),
        Options {
            readonly,
            demo: None,
            attached: None,
            theme: Theme::builtin("dark").unwrap(),
            keymap,
            providers: builtin_descriptors(),
        },
    );
    app.handle(UiEvent::Snapshot(snap));
    app
}

/// Every built-in provider's descriptor.
fn builtin_descriptors() -> Vec<legion::providers::Descriptor> {
    let registry = legion::providers::Registry::builtin();
    registry
        .kinds()
        .into_iter()
        .filter_map(|k| registry.get(k).map(|m| m.descriptor()))
        .collect()
}

fn key(app: &mut App, code: KeyCode) -> Vec<Effect> {
    app.handle(UiEvent::Key(KeyEvent::new(code, KeyModifiers::NONE)))
}

fn chars(app: &mut App, s: &str) -> Vec<Effect> {
    s.chars().flat_map(|c| key(app, KeyCode::Char(c))).collect()
}

/// Draw through ratatui's `TestBackend` and return the screen as text. Like the runner, the
/// app hears of the size before it is drawn at it.
fn screen(app: &mut App, w: u16, h: u16) -> String {
    if app.screen() != ratatui::layout::Rect::new(0, 0, w, h) {
        app.handle(UiEvent::Resize {
            width: w,
            height: h,
        });
    }
    draw(app, w, h)
}

/// Draw through a shared borrow: drawing changes nothing (this does not compile if
/// `render` wants `&mut self`).
fn draw(app: &App, w: u16, h: u16) -> String {
    let mut term = Terminal::new(TestBackend::new(w, h)).unwrap();
    term.draw(|f| {
        let area = f.area();
        app.render(area, f.buffer_mut());
    })
    .unwrap();
    let buf: &Buffer = term.backend().buffer();
    let mut out = String::new();
    for y in 0..h {
        let line: String = (0..w)
            .map(|x| buf.cell((x, y)).map(|c| c.symbol()).unwrap_or(" "))
            .collect();
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[test]
fn nodes_view() {
    let mut app = app_with(snapshot(6), false);
    insta::assert_snapshot!(screen(&mut app, 120, 16));
}

#[test]
fn zones_view_shows_the_waiting_reason() {
    let mut app = app_with(snapshot(6), false);
    key(&mut app, KeyCode::Char('2'));
    let s = screen(&mut app, 160, 12);
    assert!(s.contains("node node-09 has no address yet"), "{s}");
    insta::assert_snapshot!(s);
}

#[test]
fn help_overlay() {
    let mut app = app_with(snapshot(3), false);
    key(&mut app, KeyCode::Char('?'));
    insta::assert_snapshot!(screen(&mut app, 100, 44));
    key(&mut app, KeyCode::Esc);
    assert!(!screen(&mut app, 100, 44).contains("Keys (Esc closes)"));
}

#[test]
fn stop_asks_with_focus_on_cancel() {
    let mut app = app_with(snapshot(6), false);
    // node-03: running (node-01 is stopped, and stop is not offered there).
    for _ in 0..3 {
        key(&mut app, KeyCode::Char('j'));
    }
    assert!(key(&mut app, KeyCode::Char('o')).is_empty());
    insta::assert_snapshot!(screen(&mut app, 100, 20));
    // Enter on the initial focus cancels.
    assert!(key(&mut app, KeyCode::Enter).is_empty());
    assert!(screen(&mut app, 100, 20).contains("cancelled"));
    key(&mut app, KeyCode::Char('o'));
    key(&mut app, KeyCode::Tab);
    assert_eq!(
        key(&mut app, KeyCode::Enter),
        vec![Effect::Node("node-03".into(), Action::Stop)]
    );
}

#[test]
fn reinstall_needs_the_typed_name() {
    let mut app = app_with(snapshot(6), false);
    key(&mut app, KeyCode::Char('R'));
    insta::assert_snapshot!(screen(&mut app, 100, 20));
    chars(&mut app, "node-0");
    assert!(key(&mut app, KeyCode::Enter).is_empty());
    assert!(screen(&mut app, 100, 20).contains("did not match"));
    key(&mut app, KeyCode::Char('R'));
    chars(&mut app, "node-00");
    assert_eq!(
        key(&mut app, KeyCode::Enter),
        vec![Effect::Node("node-00".into(), Action::Reinstall)]
    );
}

#[test]
fn a_refused_action_shows_its_reason() {
    let mut app = app_with(snapshot(6), false);
    // Start on a running node is not offered, and pressed anyway says why, sending nothing.
    assert!(key(&mut app, KeyCode::Char('u')).is_empty());
    let s = screen(&mut app, 100, 14);
    assert!(s.contains("node-00 is already running"), "{s}");
    // On the stopped node it is sent; the engine's refusal still reaches the status line.
    key(&mut app, KeyCode::Char('j'));
    assert_eq!(
        key(&mut app, KeyCode::Char('u')),
        vec![Effect::Node("node-01".into(), Action::Start)]
    );
    app.handle(UiEvent::Reply(Err(
        "node-01: start refused by the provider".into(),
    )));
    let s = screen(&mut app, 100, 14);
    assert!(s.contains("node-01: start refused by the provider"), "{s}");
}

#[test]
fn the_footer_offers_only_what_the_selected_node_accepts() {
    let mut app = app_with(snapshot(6), false);
    let footer = |app: &mut App| {
        let s = screen(app, 160, 14);
        s.lines().rfind(|l| !l.is_empty()).unwrap().to_string()
    };
    // node-00 runs: stop and reboot, no start.
    let f = footer(&mut app);
    assert!(
        !f.contains(" u start") && f.contains(" o stop") && f.contains(" r reboot"),
        "{f}"
    );
    // node-01 is stopped: start, no stop nor reboot.
    key(&mut app, KeyCode::Char('j'));
    let f = footer(&mut app);
    assert!(
        f.contains(" u start") && !f.contains(" o stop") && !f.contains(" r reboot"),
        "{f}"
    );
    // Stop pressed anyway on the stopped node: the reason, no dialog, no effect.
    assert!(key(&mut app, KeyCode::Char('o')).is_empty());
    let s = screen(&mut app, 160, 14);
    assert!(s.contains("node-01 is already stopped"), "{s}");
    assert!(!s.contains("stop node-01?"), "{s}");
}

#[test]
fn readonly_says_why_a_key_that_changes_something_does_nothing() {
    // The runner keeps the keys bound in --readonly: the table's one check refuses them.
    let snap = snapshot(4);
    let mut app = App::new(
        snap.clone(),
        Options {
            readonly: true,
            demo: None,
            attached: None,
            theme: Theme::builtin("dark").unwrap(),
            keymap: Keymap::defaults(),
            providers: builtin_descriptors(),
        },
    );
    app.handle(UiEvent::Snapshot(snap));
    // `a` opens the plan to read it (asks the engine for the change set, writes nothing).
    assert_eq!(key(&mut app, KeyCode::Char('a')), vec![Effect::LoadChanges]);
    key(&mut app, KeyCode::Esc);
    for c in ['o', 'R', 'D', 'n'] {
        assert!(key(&mut app, KeyCode::Char(c)).is_empty(), "{c}");
    }
    let s = screen(&mut app, 120, 14);
    assert!(s.contains("add: not available in --readonly"), "{s}");
    key(&mut app, KeyCode::Char(':'));
    chars(&mut app, "import");
    key(&mut app, KeyCode::Enter);
    assert!(screen(&mut app, 120, 14).contains("import: not available in --readonly"));
}

#[test]
fn filter_is_live_and_esc_clears_it() {
    let mut app = app_with(snapshot(10), false);
    key(&mut app, KeyCode::Char('/'));
    chars(&mut app, "WEST");
    let s = screen(&mut app, 120, 20);
    assert!(s.contains("Nodes 5/10"), "{s}");
    assert!(!s.contains("node-00"));
    key(&mut app, KeyCode::Enter);
    key(&mut app, KeyCode::Esc);
    assert!(screen(&mut app, 120, 20).contains("Nodes 10/10"));
}

#[test]
fn command_line_completes_and_runs() {
    let mut app = app_with(snapshot(4), false);
    key(&mut app, KeyCode::Char(':'));
    chars(&mut app, "zo");
    key(&mut app, KeyCode::Tab);
    assert!(screen(&mut app, 100, 14).contains(":zones"));
    key(&mut app, KeyCode::Enter);
    assert!(screen(&mut app, 100, 14).contains("DNS Zones 1/1"));
    key(&mut app, KeyCode::Char(':'));
    chars(&mut app, "apply");
    // `:apply` opens the plan overlay, as `a` does; the change set is asked for.
    assert_eq!(key(&mut app, KeyCode::Enter), vec![Effect::LoadChanges]);
    key(&mut app, KeyCode::Esc);
    // A refresh reads every provider now, from ctrl-r or `:refresh`, read-only or not.
    assert_eq!(ctrl(&mut app, 'r'), vec![Effect::Refresh]);
    assert!(screen(&mut app, 100, 14).contains("reading every provider"));
    key(&mut app, KeyCode::Char(':'));
    chars(&mut app, "ref");
    key(&mut app, KeyCode::Tab);
    assert_eq!(key(&mut app, KeyCode::Enter), vec![Effect::Refresh]);
    let mut readonly = app_with(snapshot(4), true);
    assert_eq!(ctrl(&mut readonly, 'r'), vec![Effect::Refresh]);
    key(&mut app, KeyCode::Char(':'));
    chars(&mut app, "frob");
    key(&mut app, KeyCode::Enter);
    assert!(screen(&mut app, 100, 14).contains("unknown command :frob"));
}

#[test]
fn readonly_offers_no_mutation() {
    let mut app = app_with(snapshot(4), true);
    assert!(key(&mut app, KeyCode::Char('o')).is_empty());
    // The plan opens read-only; only its Apply changes something.
    assert_eq!(key(&mut app, KeyCode::Char('a')), vec![Effect::LoadChanges]);
    key(&mut app, KeyCode::Esc);
    key(&mut app, KeyCode::Char(':'));
    chars(&mut app, "stop");
    assert!(key(&mut app, KeyCode::Enter).is_empty());
    let s = screen(&mut app, 120, 14);
    assert!(s.contains("not available in --readonly"), "{s}");
    assert!(s.contains("readonly"));
    let footer = s.lines().rfind(|l| !l.is_empty()).unwrap();
    assert!(
        !footer.contains("stop") && !footer.contains("shell"),
        "{footer}"
    );
}

#[test]
fn too_small_says_so_and_never_panics() {
    let mut app = app_with(snapshot(4), false);
    let s = screen(&mut app, 30, 5);
    assert!(s.contains("terminal too small"), "{s}");
    insta::assert_snapshot!(s);
    for (w, h) in [(0, 0), (1, 1), (2, 200), (200, 2), (59, 11), (60, 12)] {
        screen(&mut app, w, h);
    }
}

#[test]
fn unlock_masks_the_password_and_says_when_it_is_wrong() {
    let locked = Arc::new(AppSnapshot::empty("/h".into(), LockState::Locked));
    let mut app = app_with(locked, false);
    chars(&mut app, "hunter2");
    let s = screen(&mut app, 100, 20);
    assert!(!s.contains("hunter2"), "{s}");
    assert!(s.contains("•••••••"), "{s}");
    let fx = key(&mut app, KeyCode::Enter);
    assert!(matches!(fx.as_slice(), [Effect::Unlock(p)] if p.expose() == "hunter2"));
    app.handle(UiEvent::Reply(Err(
        "wrong password for /h/state.legion; try again".into(),
    )));
    let s = screen(&mut app, 100, 20);
    assert!(s.contains("wrong password"), "{s}");
    insta::assert_snapshot!(s);
    // And the user can try again.
    chars(&mut app, "x");
    assert!(matches!(
        key(&mut app, KeyCode::Enter).as_slice(),
        [Effect::Unlock(_)]
    ));
}

#[test]
fn ten_thousand_nodes_lay_out_only_the_visible_rows() {
    let mut app = app_with(snapshot(10_000), false);
    let s = screen(&mut app, 200, 60);
    assert!(s.contains("Nodes 10000/10000"));
    key(&mut app, KeyCode::Char('G'));
    let s = screen(&mut app, 200, 60);
    assert!(s.contains("node-9999"), "{s}");
    assert!(!s.contains("node-00 "));
}

#[test]
fn remote_strings_cannot_move_the_cursor() {
    let mut snap = (*snapshot(3)).clone();
    snap.nodes[0].last_error = Some("boom\u{1b}[2J\u{1b}[H gone".into());
    let mut app = app_with(Arc::new(snap), false);
    let s = screen(&mut app, 200, 12);
    assert!(!s.contains('\u{1b}'));
    // Shown escaped by the one sanitizer (`core::text`), as the CLI shows it.
    assert!(s.contains("boom\\x1b[2J\\x1b[H gone"), "{s}");
}

fn catalog() -> legion::providers::Catalog {
    use legion::providers::{Catalog, Image, Offer, Region};
    let offer = |id: &str, cores, mem, price: f64| Offer {
        id: id.into(),
        name: id.into(),
        cores,
        memory_mb: mem,
        disk_gb: 20,
        hourly_price: [("sim-east".to_string(), price)].into_iter().collect(),
        regions: vec!["sim-east".into()],
        deprecated: false,
        variables: vec![],
    };
    Catalog {
        regions: vec![Region {
            id: "sim-east".into(),
            name: "Simulated East".into(),
            available: true,
        }],
        offers: vec![
            offer("sim-small", 1, 1024, 0.005),
            offer("sim-large", 4, 8192, 0.024),
        ],
        images: vec![Image {
            id: "debian-12".into(),
            name: "Debian 12".into(),
            architecture: "x86_64".into(),
            deprecated: false,
            login_user: None,
        }],
    }
}

fn policy() -> legion::providers::CatalogPolicy {
    legion::providers::CatalogPolicy {
        default_image: "debian-12".into(),
        default_region: Some("sim-east".into()),
        default_offer: legion::providers::OfferSelector::Preferred {
            id: "sim-small".into(),
            min_cores: 1,
            min_memory_mb: 1024,
        },
    }
}

fn with_provider(n: usize) -> Arc<AppSnapshot> {
    let mut s = (*snapshot(n)).clone();
    s.providers = vec![legion::providers::ProviderStatus {
        id: "mock".into(),
        kind: "mock".into(),
        display: "Simulated cloud".into(),
        health: legion::providers::ProviderHealth::Ok,
        last_error: None,
        in_flight: 0,
        calls: 0,
        writes: 0,
        rate_limit: None,
        rate_remaining: None,
        failures: 0,
        last_ok_ms: None,
        waiting: None,
    }];
    Arc::new(s)
}

#[test]
fn node_form_validates_and_submits_with_catalog_defaults() {
    let mut app = app_with(with_provider(3), false);
    assert_eq!(
        key(&mut app, KeyCode::Char('n')),
        vec![Effect::LoadCatalog("mock".into())]
    );
    app.handle(UiEvent::Catalog {
        provider: "mock".into(),
        catalog: Arc::new(catalog()),
        policy: policy(),
    });
    // Nothing is sent until the form is valid.
    assert!(key(&mut app, KeyCode::Enter).is_empty());
    let s = screen(&mut app, 110, 30);
    assert!(s.contains("required"), "{s}");
    insta::assert_snapshot!(s);
    chars(&mut app, "Web_1");
    assert!(key(&mut app, KeyCode::Enter).is_empty());
    assert!(screen(&mut app, 110, 30).contains("1-63 of a-z"));
    for _ in 0..5 {
        key(&mut app, KeyCode::Backspace);
    }
    chars(&mut app, "web-1");
    // The offer choice cycles; the policy's default was preselected.
    key(&mut app, KeyCode::Down);
    key(&mut app, KeyCode::Down);
    key(&mut app, KeyCode::Down);
    key(&mut app, KeyCode::Right);
    let fx = key(&mut app, KeyCode::Enter);
    let [Effect::UpsertNode(req)] = fx.as_slice() else {
        panic!("{fx:?}");
    };
    assert_eq!(req.name, "web-1");
    assert_eq!(req.region.as_deref(), Some("sim-east"));
    assert_eq!(req.offer.as_deref(), Some("sim-large"));
    assert_eq!(req.image.as_deref(), Some("debian-12"));
    assert_eq!(req.cluster.as_deref(), Some("prod"));
}

#[test]
fn remove_and_other_views_render() {
    let mut app = app_with(with_provider(4), false);
    key(&mut app, KeyCode::Char('D'));
    insta::assert_snapshot!("remove_confirm", screen(&mut app, 100, 18));
    key(&mut app, KeyCode::Esc);
    key(&mut app, KeyCode::Char('3'));
    insta::assert_snapshot!("firewalls_view_empty", screen(&mut app, 100, 10));
    key(&mut app, KeyCode::Char('4'));
    insta::assert_snapshot!("domains_view_empty", screen(&mut app, 100, 10));
    key(&mut app, KeyCode::Char('1'));
    key(&mut app, KeyCode::Enter);
    let s = screen(&mut app, 120, 30);
    assert!(s.contains("planned vs observed"), "{s}");
    insta::assert_snapshot!("node_details", s);
}

#[test]
fn firewall_rules_on_unmanaged_hosts_are_listed_as_operator_tasks() {
    let mut snap = (*with_provider(3)).clone();
    snap.firewalls = vec![SyncRow {
        name: "edge".into(),
        provider: "manual".into(),
        status: legion::engine::status::SyncStatus::Converged,
        state: SyncState::Converged,
        summary: "1 rules on 2 nodes".into(),
        waiting: None,
        last_error: None,
        error_class: None,
        previous_error: None,
        operation: None,
        planned: true,
        live: true,
        pending: None,
        tasks: vec![
            "open tcp 4413 from 10.0.0.2/32, 10.0.0.3/32 on m1 (10.0.0.2)".into(),
            "open tcp 4413 from 10.0.0.2/32, 10.0.0.3/32 on m2 (10.0.0.3)".into(),
        ],
    }];
    let mut app = app_with(Arc::new(snap), false);
    key(&mut app, KeyCode::Char('3'));
    let s = screen(&mut app, 120, 16);
    assert!(s.contains("operator tasks 2"), "{s}");
    assert!(
        s.contains("• open tcp 4413 from 10.0.0.2/32, 10.0.0.3/32 on m2 (10.0.0.3)"),
        "{s}"
    );
    // Details list them too.
    key(&mut app, KeyCode::Enter);
    let s = screen(&mut app, 120, 30);
    assert!(s.contains("operator task"), "{s}");
    // A tiny terminal keeps only what fits and never panics.
    let _ = screen(&mut app, 80, 24);
}

#[test]
fn a_provider_that_stops_answering_shows_in_rows_and_header() {
    let mut snap = (*with_provider(3)).clone();
    snap.providers[0].health = legion::providers::ProviderHealth::Degraded;
    snap.providers[0].last_error = Some("Simulated cloud: simulated failure".into());
    let mut app = app_with(Arc::new(snap), false);
    let s = screen(&mut app, 200, 12);
    assert!(s.contains("mock:degraded"), "{s}");
    assert!(s.contains("mock!"), "{s}");
    assert!(
        s.contains("provider degraded: Simulated cloud: simulated failure"),
        "{s}"
    );
}

#[test]
fn plan_entry_and_provider_forms() {
    let mut app = app_with(with_provider(3), false);
    // Zones view: n adds a zone (the engine validates the name).
    key(&mut app, KeyCode::Char('2'));
    key(&mut app, KeyCode::Char('n'));
    chars(&mut app, "example.org");
    let fx = key(&mut app, KeyCode::Enter);
    assert!(
        matches!(fx.as_slice(), [Effect::EditPlan(legion::engine::plan::PlanEdit::UpsertZone { name, provider })]
            if name == "example.org" && provider == "mock"),
        "{fx:?}"
    );
    key(&mut app, KeyCode::Char(':'));
    chars(&mut app, "record example.test");
    key(&mut app, KeyCode::Enter);
    key(&mut app, KeyCode::Tab);
    chars(&mut app, "www");
    key(&mut app, KeyCode::Tab);
    for _ in 0..2 {
        key(&mut app, KeyCode::Backspace);
    }
    chars(&mut app, "BOGUS");
    key(&mut app, KeyCode::Tab);
    key(&mut app, KeyCode::Tab);
    chars(&mut app, "@node-00");
    assert!(key(&mut app, KeyCode::Enter).is_empty());
    let s = screen(&mut app, 110, 24);
    assert!(s.contains("unknown record type"), "{s}");
    insta::assert_snapshot!("record_form_error", s);
    // The focus moved to the field in error.
    for _ in 0..5 {
        key(&mut app, KeyCode::Backspace);
    }
    chars(&mut app, "A");
    let fx = key(&mut app, KeyCode::Enter);
    assert!(
        matches!(fx.as_slice(), [Effect::EditPlan(legion::engine::plan::PlanEdit::UpsertRecord { zone, record })]
            if zone == "example.test" && record.name == "www"
            && record.value == legion::engine::state::model::RecordValue::NodeAddress("node-00".into())),
        "{fx:?}"
    );
    // Firewalls view: n adds a rule; a bad CIDR is refused beside its field.
    key(&mut app, KeyCode::Char('3'));
    key(&mut app, KeyCode::Char('n'));
    chars(&mut app, "prod");
    key(&mut app, KeyCode::Tab);
    key(&mut app, KeyCode::Tab);
    chars(&mut app, "443");
    key(&mut app, KeyCode::Tab);
    chars(&mut app, ", 300.1.1.1/8");
    assert!(key(&mut app, KeyCode::Enter).is_empty());
    assert!(screen(&mut app, 110, 24).contains("300.1.1.1/8 is not a CIDR"));
    key(&mut app, KeyCode::Esc);
    // Provider settings come from the descriptor.
    key(&mut app, KeyCode::Char(':'));
    chars(&mut app, "provider mock");
    key(&mut app, KeyCode::Enter);
    let s = screen(&mut app, 110, 24);
    assert!(s.contains("Simulated cloud settings"), "{s}");
    let fx = key(&mut app, KeyCode::Enter);
    assert!(
        matches!(fx.as_slice(), [Effect::ConfigureProvider(k, _)] if k == "mock"),
        "{fx:?}"
    );
}

#[test]
fn import_form_masks_the_password_and_submits_an_import() {
    let mut app = app_with(snapshot(6), false);
    key(&mut app, KeyCode::Char(':'));
    chars(&mut app, "import");
    key(&mut app, KeyCode::Enter);
    let s = screen(&mut app, 110, 30);
    assert!(s.contains("import an existing host over SSH"), "{s}");
    // Host is required; port and user have defaults.
    chars(&mut app, "db-1");
    assert!(key(&mut app, KeyCode::Enter).is_empty());
    assert!(screen(&mut app, 110, 30).contains("required"));
    chars(&mut app, "203.0.113.7");
    key(&mut app, KeyCode::Tab);
    key(&mut app, KeyCode::Tab);
    key(&mut app, KeyCode::Tab);
    chars(&mut app, "hunter2-secret");
    let s = screen(&mut app, 110, 30);
    assert!(!s.contains("hunter2"), "the password is masked:\n{s}");
    let fx = key(&mut app, KeyCode::Enter);
    let [Effect::ImportNode(req)] = fx.as_slice() else {
        panic!("{fx:?}")
    };
    assert_eq!(
        (
            req.name.as_str(),
            req.host.as_str(),
            req.port,
            req.user.as_str()
        ),
        ("db-1", "203.0.113.7", 22, "root")
    );
    assert_eq!(
        req.password.as_ref().map(|p| p.expose()),
        Some("hunter2-secret")
    );
    assert!(!format!("{fx:?}").contains("hunter2"));
}

#[test]
fn command_line_actions_take_a_node_name() {
    let mut app = app_with(snapshot(6), false);
    key(&mut app, KeyCode::Char(':'));
    // node-01 is the stopped one: start fits it.
    chars(&mut app, "start node-01");
    assert_eq!(
        key(&mut app, KeyCode::Enter),
        vec![Effect::Node("node-01".into(), Action::Start)]
    );
    key(&mut app, KeyCode::Char(':'));
    chars(&mut app, "stop node-05");
    assert!(
        key(&mut app, KeyCode::Enter).is_empty(),
        "stop still asks first"
    );
    assert!(screen(&mut app, 100, 20).contains("stop node-05?"));
    key(&mut app, KeyCode::Esc);
    key(&mut app, KeyCode::Char(':'));
    chars(&mut app, "reboot ghost");
    assert!(key(&mut app, KeyCode::Enter).is_empty());
    assert!(screen(&mut app, 100, 20).contains("no node \"ghost\""));
}

#[test]
fn help_scrolls_on_a_small_terminal() {
    let mut app = app_with(snapshot(3), false);
    key(&mut app, KeyCode::Char('?'));
    let top = screen(&mut app, 80, 24);
    assert!(top.contains("Move the selection up"), "{top}");
    assert!(!top.contains("Show this help"));
    for _ in 0..67 {
        key(&mut app, KeyCode::Char('j'));
    }
    let bottom = screen(&mut app, 80, 24);
    assert!(bottom.contains("Show this help"), "{bottom}");
    // The footer keeps help and quit even when narrow.
    key(&mut app, KeyCode::Esc);
    let s = screen(&mut app, 70, 24);
    let footer = s.lines().rfind(|l| !l.is_empty()).unwrap();
    assert!(
        footer.contains("help") && footer.contains("quit"),
        "{footer}"
    );
}

// --- The terminal pane (SSH shells), without a network: the session's ends stand in
// for its thread.

use legion::views::term::session::ShellEnds;
use legion::views::term::{Emulator, ShellHandle, ShellInput, ShellState, ShellUpdate};

fn ctrl(app: &mut App, c: char) -> Vec<Effect> {
    app.handle(UiEvent::Key(KeyEvent::new(
        KeyCode::Char(c),
        KeyModifiers::CONTROL,
    )))
}

/// Everything the UI sent the session so far.
fn sent(ends: &ShellEnds) -> Vec<ShellInput> {
    ends.rx.try_iter().collect()
}

/// Publish what a session thread would after the remote wrote `bytes`, and wake the app.
fn remote_writes(
    app: &mut App,
    id: u64,
    ends: &ShellEnds,
    rows: u16,
    cols: u16,
    bytes: &[u8],
    state: ShellState,
) -> Vec<Effect> {
    let woke = publish_frame(ends, rows, cols, bytes, state);
    assert!(woke, "an empty slot wakes the UI");
    app.handle(UiEvent::Term(id))
}

/// Publish the screen a session thread would have after the remote wrote `bytes`;
/// true when that should wake the UI (the slot was empty).
fn publish_frame(ends: &ShellEnds, rows: u16, cols: u16, bytes: &[u8], state: ShellState) -> bool {
    let mut emu = Emulator::new(rows, cols, 100);
    emu.feed(bytes);
    ends.slot.publish(ShellUpdate {
        frame: emu.snapshot(),
        state,
        first_seen_host_key: None,
    })
}

/// The app on a 120x30 terminal after `s` on node-00, and what `s` asked the engine for.
fn pressing_s() -> (App, Vec<Effect>) {
    let mut app = app_with(snapshot(6), false);
    screen(&mut app, 120, 30);
    let effects = key(&mut app, KeyCode::Char('s'));
    (app, effects)
}

/// The app with a shell open on node-00 (120x30 terminal: the pane is 26x120).
fn with_shell() -> (App, ShellEnds) {
    let (mut app, effects) = pressing_s();
    assert_eq!(
        effects,
        vec![Effect::OpenShell {
            id: 1,
            node: "node-00".into(),
            rows: 26,
            cols: 120
        }]
    );
    let (handle, ends) = ShellHandle::pair();
    app.handle(UiEvent::Shell(1, Ok(handle)));
    (app, ends)
}

/// The session thread publishes "connecting" (and wakes the UI) at once, often before
/// the handle reaches the UI; that wake finds no handle. The frame must still be taken
/// when the handle arrives: a full slot wakes no one again, and the pane would stay at
/// "connecting" for good (it did, now and then, in the tmux tests).
#[test]
fn a_frame_published_before_the_handle_arrived_is_shown() {
    let (mut app, effects) = pressing_s();
    assert!(matches!(
        effects.as_slice(),
        [Effect::OpenShell { id: 1, .. }]
    ));
    let (handle, ends) = ShellHandle::pair();
    assert!(publish_frame(
        &ends,
        26,
        120,
        b"$ ready-prompt",
        ShellState::Open
    ));
    // The wake-up comes first and finds no handle.
    app.handle(UiEvent::Term(1));
    app.handle(UiEvent::Shell(1, Ok(handle)));
    let s = screen(&mut app, 120, 30);
    assert!(s.contains("$ ready-prompt"), "{s}");
    assert!(
        !s.contains("1 node-00 …"),
        "still shown as connecting:\n{s}"
    );
}

#[test]
fn shell_pane_takes_every_key_but_the_leave_key() {
    let (mut app, effects) = pressing_s();
    assert!(matches!(
        effects.as_slice(),
        [Effect::OpenShell { id: 1, .. }]
    ));
    // Typed while connecting: kept and sent once the session thread is there.
    chars(&mut app, "ls");
    let (handle, ends) = ShellHandle::pair();
    app.handle(UiEvent::Shell(1, Ok(handle)));
    assert_eq!(
        sent(&ends),
        [
            ShellInput::Bytes(b"l".to_vec()),
            ShellInput::Bytes(b"s".to_vec())
        ]
    );
    // Dashboard keys go to the remote: q, Ctrl-C, arrows, F-keys, Esc.
    assert!(key(&mut app, KeyCode::Char('q')).is_empty());
    assert!(ctrl(&mut app, 'c').is_empty());
    assert!(!app.quit, "Ctrl-C in the pane is the remote's");
    key(&mut app, KeyCode::Up);
    key(&mut app, KeyCode::F(5));
    key(&mut app, KeyCode::Esc);
    assert_eq!(
        sent(&ends),
        [
            ShellInput::Bytes(b"q".to_vec()),
            ShellInput::Bytes(vec![3]),
            ShellInput::Bytes(b"\x1b[A".to_vec()),
            ShellInput::Bytes(b"\x1b[15~".to_vec()),
            ShellInput::Bytes(vec![0x1b]),
        ]
    );
    // Shift-PageUp scrolls back on the session side; nothing reaches the remote.
    app.handle(UiEvent::Key(KeyEvent::new(
        KeyCode::PageUp,
        KeyModifiers::SHIFT,
    )));
    assert_eq!(sent(&ends), [ShellInput::Scroll(13)]);
    // A paste respects the remote's bracketed-paste mode.
    remote_writes(
        &mut app,
        1,
        &ends,
        26,
        120,
        b"\x1b[?2004h$ ",
        ShellState::Open,
    );
    app.handle(UiEvent::Paste("a\nb".into()));
    assert_eq!(
        sent(&ends),
        [ShellInput::Bytes(b"\x1b[200~a\nb\x1b[201~".to_vec())]
    );

    // Ctrl-\ arrives as Ctrl-4 from crossterm: it leaves; the session keeps running.
    assert!(ctrl(&mut app, '4').is_empty());
    assert!(sent(&ends).is_empty(), "the leave key is not sent");
    let s = screen(&mut app, 120, 30);
    assert!(s.contains("│node-00 "), "the node table again:\n{s}");
    assert!(s.contains("ssh: node-00"), "the session is listed:\n{s}");
    // In the dashboard, keys are the dashboard's again; Ctrl-\ goes back to the pane.
    key(&mut app, KeyCode::Char('j'));
    assert!(sent(&ends).is_empty());
    ctrl(&mut app, '\\');
    key(&mut app, KeyCode::Char('x'));
    assert_eq!(sent(&ends), [ShellInput::Bytes(b"x".to_vec())]);
}

#[test]
fn shell_pane_resizes_the_session_with_the_terminal_and_zoom() {
    let (mut app, ends) = with_shell();
    screen(&mut app, 120, 30);
    assert!(sent(&ends).is_empty(), "opened at the pane's size");
    screen(&mut app, 100, 20);
    assert_eq!(sent(&ends), [ShellInput::Resize(16, 100)]);
    screen(&mut app, 100, 20);
    assert!(sent(&ends).is_empty(), "one resize per change");
    // Ctrl-] (Ctrl-5 from crossterm) zooms: the whole terminal is the remote's. The
    // zoom key itself is not sent; the new size is, by the key's handling, not the draw.
    ctrl(&mut app, '5');
    assert_eq!(sent(&ends), [ShellInput::Resize(20, 100)]);
    let s = screen(&mut app, 100, 20);
    assert!(sent(&ends).is_empty(), "drawing sends nothing");
    assert!(!s.contains("Legion"), "no chrome when zoomed:\n{s}");
    ctrl(&mut app, ']');
    assert_eq!(sent(&ends), [ShellInput::Resize(16, 100)]);
}

#[test]
fn a_terminal_resize_reaches_the_session_from_handle_not_from_drawing() {
    let (mut app, ends) = with_shell();
    app.handle(UiEvent::Resize {
        width: 90,
        height: 24,
    });
    assert_eq!(sent(&ends), [ShellInput::Resize(20, 90)]);
    // Drawing at that size, through a shared borrow, sends nothing more.
    let s = draw(&app, 90, 24);
    assert!(s.contains("node-00"), "{s}");
    assert!(sent(&ends).is_empty());
    // The same size again changes nothing.
    app.handle(UiEvent::Resize {
        width: 90,
        height: 24,
    });
    assert!(sent(&ends).is_empty());
}

#[test]
fn shell_tabs_switch_and_reopen() {
    let (mut app, ends0) = with_shell();
    ctrl(&mut app, '\\');
    key(&mut app, KeyCode::Char('j'));
    let effects = key(&mut app, KeyCode::Char('s'));
    assert_eq!(
        effects,
        vec![Effect::OpenShell {
            id: 2,
            node: "node-01".into(),
            rows: 26,
            cols: 120
        }]
    );
    let (h1, ends1) = ShellHandle::pair();
    app.handle(UiEvent::Shell(2, Ok(h1)));
    let s = screen(&mut app, 120, 30);
    assert!(
        s.contains(" 1 node-00 ") && s.contains(" 2 node-01 "),
        "{s}"
    );
    key(&mut app, KeyCode::Char('a'));
    assert_eq!(sent(&ends1), [ShellInput::Bytes(b"a".to_vec())]);
    // Back in the dashboard, `]` goes to the next session, and `s` on a node with a
    // session focuses it instead of opening another.
    ctrl(&mut app, '\\');
    key(&mut app, KeyCode::Char(']'));
    key(&mut app, KeyCode::Char('b'));
    assert_eq!(sent(&ends0), [ShellInput::Bytes(b"b".to_vec())]);
    ctrl(&mut app, '\\');
    assert!(key(&mut app, KeyCode::Char('s')).is_empty());
    key(&mut app, KeyCode::Char('c'));
    assert_eq!(sent(&ends1), [ShellInput::Bytes(b"c".to_vec())]);
    // `:shell NAME` selects the node and does the same.
    ctrl(&mut app, '\\');
    key(&mut app, KeyCode::Char(':'));
    chars(&mut app, "shell node-00");
    assert!(key(&mut app, KeyCode::Enter).is_empty());
    key(&mut app, KeyCode::Char('d'));
    assert_eq!(sent(&ends0), [ShellInput::Bytes(b"d".to_vec())]);
}

#[test]
fn a_closed_shell_says_why_and_enter_reconnects() {
    let (mut app, ends) = with_shell();
    remote_writes(
        &mut app,
        1,
        &ends,
        26,
        120,
        b"$ exit\r\n",
        ShellState::Closed("connection closed: the remote shell exited (status 0)".into()),
    );
    let s = screen(&mut app, 120, 30);
    assert!(
        s.contains("connection closed: the remote shell exited (status 0) — Enter reconnects"),
        "{s}"
    );
    assert!(s.contains(" 1 node-00 ✕"), "{s}");
    // Keys other than Enter and x do nothing on a closed session.
    key(&mut app, KeyCode::Char('y'));
    assert!(sent(&ends).is_empty());
    assert_eq!(
        key(&mut app, KeyCode::Enter),
        vec![Effect::OpenShell {
            id: 2,
            node: "node-00".into(),
            rows: 26,
            cols: 120
        }]
    );
    // A late wake-up of the old session changes nothing.
    ends.slot.publish(ShellUpdate {
        frame: Default::default(),
        state: ShellState::Open,
        first_seen_host_key: Some("SHA256:old".into()),
    });
    assert!(app.handle(UiEvent::Term(1)).is_empty());
    // A session that cannot start says why.
    app.handle(UiEvent::Shell(
        2,
        Err(SessionError::Access {
            what: "ssh",
            node: "node-00".into(),
            reason: "node node-00 has no address yet".into(),
        }),
    ));
    let s = screen(&mut app, 120, 30);
    assert!(
        s.contains("has no address yet — Enter reconnects · x closes the tab"),
        "{s}"
    );
    // x closes the tab: back to the dashboard, no session listed.
    assert!(key(&mut app, KeyCode::Char('x')).is_empty());
    let s = screen(&mut app, 120, 30);
    assert!(s.contains("closed the shell tab of node-00"), "{s}");
    assert!(!s.contains("ssh: node-00"), "{s}");
    assert!(s.contains("Nodes "), "{s}");
}

#[test]
fn a_first_shell_connection_pins_the_host_key() {
    let (mut app, ends) = with_shell();
    ends.slot.publish(ShellUpdate {
        frame: Default::default(),
        state: ShellState::Open,
        first_seen_host_key: Some("SHA256:abc".into()),
    });
    assert_eq!(
        app.handle(UiEvent::Term(1)),
        vec![Effect::PinHostKey("node-00".into(), "SHA256:abc".into())]
    );
    assert!(app.handle(UiEvent::Term(1)).is_empty(), "taken once");
}

#[test]
fn shell_pane() {
    let (mut app, ends) = with_shell();
    screen(&mut app, 80, 14);
    assert_eq!(sent(&ends), [ShellInput::Resize(10, 80)]);
    remote_writes(
        &mut app,
        1,
        &ends,
        10,
        80,
        b"\x1b]0;op@node-00: ~\x07op@node-00:~$ ls --color\r\n\x1b[1;34mbin\x1b[0m  \x1b[32mdeploy.sh\x1b[0m  \x1b[31mcore\x1b[0m\r\nop@node-00:~$ ",
        ShellState::Open,
    );
    let mut term = Terminal::new(TestBackend::new(80, 14)).unwrap();
    let mut cursor = None;
    term.draw(|f| {
        let area = f.area();
        cursor = app.render(area, f.buffer_mut());
    })
    .unwrap();
    let buf = term.backend().buffer();
    // Colours come through: `bin` blue and bold, `deploy.sh` green, `core` red.
    let fg = |x: u16, y: u16| buf.cell((x, y)).unwrap().fg;
    assert_eq!(fg(0, 3), ratatui::style::Color::Blue);
    assert!(
        buf.cell((0, 3))
            .unwrap()
            .modifier
            .contains(ratatui::style::Modifier::BOLD)
    );
    assert_eq!(fg(5, 3), ratatui::style::Color::Green);
    assert_eq!(fg(16, 3), ratatui::style::Color::Red);
    assert_eq!(cursor, Some(ratatui::layout::Position::new(14, 4)));
    insta::assert_snapshot!(screen(&mut app, 80, 14));
}

#[test]
fn the_log_panel_follows_a_node_pauses_filters_and_goes_back() {
    use legion::ssh::tail::{self, TailState};
    let mut app = app_with(snapshot(6), false);
    screen(&mut app, 120, 30);
    let effects = key(&mut app, KeyCode::Char('T'));
    assert_eq!(
        effects,
        vec![Effect::TailNode {
            id: 1,
            node: "node-00".into()
        }]
    );
    let s = screen(&mut app, 120, 30);
    assert!(s.contains("Logs of node-00 · connecting…"), "{s}");
    // The thread filled its mailbox before the handle reached the UI: nothing is lost.
    let (handle, mut feed) = tail::pair(|| true);
    feed.state(TailState::Following);
    feed.bytes(b"boot ok\nsshd[12]: accepted key\n");
    app.handle(UiEvent::Tail(1, Ok(handle)));
    let s = screen(&mut app, 120, 30);
    assert!(s.contains("Logs of node-00 · following"), "{s}");
    assert!(s.contains("sshd[12]: accepted key"), "{s}");
    // Scrolling up pauses: new lines are counted, the view holds still.
    key(&mut app, KeyCode::Up);
    feed.bytes(b"app: request 1\napp: request 2\n");
    app.handle(UiEvent::TailWoke(1));
    let s = screen(&mut app, 120, 30);
    assert!(s.contains("paused (3 newer)"), "{s}");
    assert!(!s.contains("app: request 2"), "{s}");
    key(&mut app, KeyCode::Char('F'));
    let s = screen(&mut app, 120, 30);
    assert!(s.contains("app: request 2"), "{s}");
    // `/` filters the node's lines.
    key(&mut app, KeyCode::Char('/'));
    chars(&mut app, "sshd");
    key(&mut app, KeyCode::Enter);
    let s = screen(&mut app, 120, 30);
    assert!(s.contains("sshd[12]") && !s.contains("app: request"), "{s}");
    // A dropped connection is said in the title.
    feed.state(TailState::Closed("connection to root@h lost: EOF".into()));
    app.handle(UiEvent::TailWoke(1));
    let s = screen(&mut app, 120, 30);
    assert!(s.contains("closed: connection to root@h lost: EOF"), "{s}");
    // T again: back to the operation log, and the thread is told to stop.
    key(&mut app, KeyCode::Char('T'));
    let s = screen(&mut app, 120, 30);
    assert!(s.contains("Operation log"), "{s}");
    assert!(s.contains("stopped following node-00's logs"), "{s}");
}

#[test]
fn every_provider_has_a_settings_form_made_from_its_descriptor() {
    for desc in builtin_descriptors() {
        let mut app = app_with(snapshot(2), false);
        key(&mut app, KeyCode::Char(':'));
        chars(&mut app, &format!("provider {}", desc.kind));
        key(&mut app, KeyCode::Enter);
        let s = screen(&mut app, 120, 40);
        assert!(
            s.contains(&format!("{} settings", desc.display_name)),
            "{}:\n{s}",
            desc.kind
        );
        for f in &desc.credential_fields {
            assert!(s.contains(&f.label), "{}: {}\n{s}", desc.kind, f.label);
            if let Some(var) = &f.env_var {
                assert!(
                    s.contains(&format!("default ${var}")),
                    "{}: {var}\n{s}",
                    desc.kind
                );
            }
        }
        // Typed secrets are masked.
        if let Some(i) = desc.credential_fields.iter().position(|f| f.secret) {
            for _ in 0..i {
                key(&mut app, KeyCode::Tab);
            }
            chars(&mut app, "s3cr3t-value");
            let s = screen(&mut app, 120, 40);
            assert!(!s.contains("s3cr3t-value"), "{}:\n{s}", desc.kind);
        }
    }
}

/// `--readonly` (issue 15): in every view, with a node selected, no key sends anything
/// that writes; each command that changes something says so in the status line, from a
/// key or from the `:` line (the shell pane included).
#[test]
fn readonly_refuses_every_writing_key_and_command_with_a_reason() {
    use legion::views::keymap::Command;
    let mut app = readonly_app();
    let keys: Vec<KeyCode> = (' '..='~')
        .filter(|c| *c != 'q')
        .map(KeyCode::Char)
        .chain([KeyCode::Enter, KeyCode::Delete, KeyCode::Backspace])
        .collect();
    for view in ['1', '2', '3', '4'] {
        for k in &keys {
            key(&mut app, KeyCode::Char(view));
            let fx = key(&mut app, *k);
            assert!(!fx.iter().any(Effect::writes), "{view} {k:?}: {fx:?}");
            // Close whatever the key opened (help, filter, the `:` line).
            key(&mut app, KeyCode::Esc);
            key(&mut app, KeyCode::Esc);
        }
    }
    // A fresh app: the loop above left the log panel open with the focus.
    let mut app = readonly_app();
    // The plan overlay opens; its Apply is refused with the reason.
    key(&mut app, KeyCode::Char('a'));
    app.handle(UiEvent::Changes(Ok(legion::engine::changes::ChangeSet {
        changes: vec![legion::engine::changes::Change {
            kind: legion::engine::changes::ResourceKind::Node,
            name: "node-00".into(),
            action: legion::engine::changes::ChangeAction::Create,
            fields: vec![],
            reason: None,
            blocked: None,
        }],
        unchanged: 0,
    })));
    for apply in [vec![KeyCode::Tab, KeyCode::Enter], vec![KeyCode::Char('y')]] {
        for k in apply {
            let fx = key(&mut app, k);
            assert!(!fx.iter().any(Effect::writes), "{fx:?}");
        }
        let s = screen(&mut app, 120, 14);
        assert!(s.contains("apply: not available in --readonly"), "{s}");
    }
    key(&mut app, KeyCode::Esc);
    for (c, label) in [('u', "start"), ('n', "add"), ('e', "edit"), ('s', "shell")] {
        key(&mut app, KeyCode::Char(c));
        let s = screen(&mut app, 120, 14);
        assert!(
            s.contains(&format!("{label}: not available in --readonly")),
            "{c}: {s}"
        );
    }
    for cmd in Command::every().filter(|c| c.info().mutating) {
        let Some(p) = cmd.info().palette else {
            continue;
        };
        key(&mut app, KeyCode::Char(':'));
        chars(&mut app, p.word);
        let fx = key(&mut app, KeyCode::Enter);
        assert!(!fx.iter().any(Effect::writes), ":{} {fx:?}", p.word);
        let s = screen(&mut app, 120, 14);
        assert!(
            s.contains("not available in --readonly"),
            ":{}: {s}",
            p.word
        );
    }
}

/// The dashboard as `--readonly` runs it: every key bound, the table refusing.
fn readonly_app() -> App {
    let snap = snapshot(4);
    let mut app = App::new(
        snap.clone(),
        Options {
            readonly: true,
            demo: None,
            attached: None,
            theme: Theme::builtin("dark").unwrap(),
            keymap: Keymap::defaults(),
            providers: builtin_descriptors(),
        },
    );
    app.handle(UiEvent::Snapshot(snap));
    app
}
