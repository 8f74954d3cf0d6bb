//! The dashboard's event loop: wait, drain, render once.
//!
//! The UI thread blocks on one channel fed by an input thread (terminal events) and by
//! tasks on the engine's runtime (snapshot changes, operation-log lines, command
//! replies). It drains whatever is ready, renders into an off-screen buffer and writes to
//! the terminal only when that buffer differs from the last one written: an idle
//! dashboard wakes for nothing and writes nothing.

use std::path::PathBuf;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crossterm::event::Event;
use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use tokio::runtime::Handle;

use super::app::{App, DirectInput, Effect, Failed, Options, SessionError, UiEvent};
use super::keymap::Keymap;
use super::terminal;
use super::theme::{ColorDepth, Theme};
use crate::engine::plan::PlanEdit;
use crate::link::Link;

/// Frames are at least this far apart; events in between are drained into one frame.
const FRAME: Duration = Duration::from_millis(16);

pub struct DashboardConfig {
    pub home: PathBuf,
    pub readonly: bool,
    pub demo: Option<String>,
    pub attached: Option<String>,
    pub theme: String,
    pub depth: ColorDepth,
}

/// Load the theme and keymap named by the config; problems become status messages.
pub fn prepare(
    cfg: &DashboardConfig,
    providers: Vec<crate::providers::Descriptor>,
) -> (Options, Vec<String>) {
    let mut notes = Vec::new();
    let dirs = vec![cfg.home.join("themes")];
    let theme = match Theme::load(&cfg.theme, &dirs) {
        Ok(t) => t,
        Err(e) => {
            notes.push(format!("{e}; using the default theme"));
            Theme::default()
        }
    }
    .with_depth(cfg.depth);
    // In `--readonly` the keys stay bound: the command table refuses what changes
    // something, and pressing such a key says so.
    let (keymap, problem) = Keymap::load(&cfg.home.join(super::keymap::FILE_NAME));
    if let Some(p) = problem {
        notes.push(format!("{p}; using the default keys"));
    }
    (
        Options {
            readonly: cfg.readonly,
            demo: cfg.demo.clone(),
            attached: cfg.attached.clone(),
            theme,
            keymap,
            providers,
        },
        notes,
    )
}

/// Run the dashboard on this thread until the operator quits.
pub fn run(rt: &Handle, engine: Link, cfg: DashboardConfig) -> std::io::Result<()> {
    let (opts, notes) = prepare(&cfg, engine.provider_descriptors());
    let mut app = App::new(engine.snapshot(), opts);
    for n in notes {
        app.handle(UiEvent::Reply(Err(Failed::from(n))));
    }
    let (tx, rx) = mpsc::channel::<UiEvent>();
    // Subscribe before reading the backlog, so no line falls in between; the overlap is
    // dropped by sequence number below.
    let mut log_rx = engine.subscribe_logs();
    let backlog = match rt.block_on(engine.recent_logs(500, None)) {
        Ok(b) => b,
        Err(e) => {
            app.handle(UiEvent::Reply(Err(Failed::doing("recent log", &e))));
            Vec::new()
        }
    };
    let last_seq = backlog.last().map_or(0, |e| e.seq);
    for e in backlog {
        app.handle(UiEvent::Log(e));
    }
    // The terminal first: setting it up may query it, and the input thread below would
    // swallow the answer.
    let mut term = terminal::enter()?;
    // Terminal input: a blocking read on its own thread, never on the UI thread. Keys for
    // a focused shell pane go from here straight to its session (`DirectInput`).
    let input_tx = tx.clone();
    let direct = DirectInput::default();
    let input_direct = direct.clone();
    let spawned = std::thread::Builder::new()
        .name("legion-input".into())
        .spawn(move || {
            loop {
                let ev = match crossterm::event::read() {
                    Ok(Event::Key(k)) if input_direct.route(&k) => continue,
                    Ok(Event::Key(k)) => UiEvent::Key(k),
                    Ok(Event::Paste(p)) => {
                        input_direct.forwarded();
                        UiEvent::Paste(p)
                    }
                    Ok(Event::Resize(width, height)) => UiEvent::Resize { width, height },
                    Ok(_) => continue,
                    Err(e) => {
                        let _ = input_tx.send(UiEvent::InputClosed(e.to_string()));
                        return;
                    }
                };
                if input_tx.send(ev).is_err() {
                    return;
                }
            }
        });
    if let Err(e) = spawned {
        terminal::restore();
        return Err(e);
    }
    let mut snapshots = engine.snapshots();
    let snap_tx = tx.clone();
    let snap_task = rt.spawn(async move {
        while snapshots.changed().await.is_ok() {
            let s = snapshots.borrow_and_update().clone();
            if snap_tx.send(UiEvent::Snapshot(s)).is_err() {
                return;
            }
        }
        // Only a daemon's engine can go away under the dashboard.
        let _ = snap_tx.send(UiEvent::Reply(Err(
            "the connection to the engine closed; quit and attach again".into(),
        )));
    });
    let log_tx = tx.clone();
    let log_task = rt.spawn(async move {
        loop {
            match log_rx.recv().await {
                Ok(e) if e.seq <= last_seq => {}
                Ok(e) => {
                    if log_tx.send(UiEvent::Log(e)).is_err() {
                        return;
                    }
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                Err(_) => return,
            }
        }
    });

    let result = event_loop(rt, &engine, &mut app, &mut term, &tx, &rx, &direct);
    direct.set(None);
    terminal::restore();
    snap_task.abort();
    log_task.abort();
    result
}

fn event_loop(
    rt: &Handle,
    engine: &Link,
    app: &mut App,
    term: &mut terminal::Term,
    tx: &mpsc::Sender<UiEvent>,
    rx: &mpsc::Receiver<UiEvent>,
    direct: &DirectInput,
) -> std::io::Result<()> {
    let mut last: Option<Buffer> = None;
    let mut last_draw = Instant::now() - FRAME;
    let mut resized = true;
    loop {
        // Draw, unless the frame would equal the one on screen. The app learns the size it
        // is drawn at first (the input thread's resize may lag the terminal's real size), so
        // the layout it works with in `handle` is the one drawn.
        let size = term.size()?;
        let area = Rect::new(0, 0, size.width, size.height);
        if app.screen() != area {
            let resize = UiEvent::Resize {
                width: size.width,
                height: size.height,
            };
            for effect in app.handle(resize) {
                perform(rt, engine, effect, tx.clone());
            }
        }
        let mut buf = Buffer::empty(area);
        let cursor = app.render(area, &mut buf);
        if resized || last.as_ref() != Some(&buf) {
            if resized {
                // Resizes and clears the screen when the size changed (no cursor query).
                term.autoresize()?;
            }
            terminal::draw(term, &buf, cursor)?;
            last = Some(buf);
            last_draw = Instant::now();
            resized = false;
        }
        // Wait for the next event: no timer wakes an idle dashboard.
        let first = match rx.recv() {
            Ok(ev) => ev,
            Err(_) => return Ok(()),
        };
        let mut batch = vec![first];
        // Collect what arrives within the rest of this frame into the same frame.
        let until = last_draw + FRAME;
        loop {
            let now = Instant::now();
            let next = if now >= until {
                rx.try_recv().ok()
            } else {
                rx.recv_timeout(until - now).ok()
            };
            match next {
                Some(ev) => batch.push(ev),
                None => break,
            }
            if batch.len() > 4096 {
                break;
            }
        }
        for ev in batch {
            if matches!(ev, UiEvent::Resize { .. }) {
                resized = true;
            }
            let key = matches!(ev, UiEvent::Key(_) | UiEvent::Paste(_));
            let effects = app.handle(ev);
            if key {
                direct.handled(app.direct_pane());
            }
            for effect in effects {
                if effect == Effect::Quit {
                    return Ok(());
                }
                perform(rt, engine, effect, tx.clone());
            }
            if app.quit {
                return Ok(());
            }
        }
        // A session opened or closed, or the focus moved without a key.
        direct.set(app.direct_pane());
    }
}

/// Send an effect to the engine without waiting; the reply comes back as an event.
fn perform(rt: &Handle, engine: &Link, effect: Effect, tx: mpsc::Sender<UiEvent>) {
    let engine = engine.clone();
    rt.spawn(async move {
        let reply = match effect {
            Effect::Node(name, action) => engine
                .node_action(name.clone(), action)
                .await
                .map(|_| format!("{action} {name}: accepted"))
                .map_err(Failed::from),
            Effect::Apply => engine
                .apply()
                .await
                .map(|id| format!("apply #{id} started"))
                .map_err(Failed::from),
            Effect::LoadChanges => {
                let set = engine.changes().await.map_err(|e| Failed::doing("plan", &e));
                let _ = tx.send(UiEvent::Changes(set));
                return;
            }
            Effect::Refresh => engine
                .refresh()
                .await
                .map(|()| "every provider read".to_string())
                .map_err(|e| Failed::doing("refresh", &e)),
            Effect::RemoveNode(name) => engine
                .edit_plan(PlanEdit::RemoveNode { name: name.clone() })
                .await
                .map(|()| format!("{name} removed from the plan; apply tears it down"))
                .map_err(Failed::from),
            Effect::UpsertNode(req) => {
                let name = req.name.clone();
                engine
                    .upsert_node(req)
                    .await
                    .map(|()| format!("{name} is in the plan; apply (a) creates or changes it"))
                    .map_err(Failed::from)
            }
            Effect::EditPlan(edit) => engine
                .edit_plan(edit)
                .await
                .map(|()| "saved in the plan; apply (a) makes it so".to_string())
                .map_err(Failed::from),
            Effect::ConfigureProvider(kind, creds) => engine
                .configure_provider(kind.clone(), creds)
                .await
                .map(|()| format!("provider {kind} configured"))
                .map_err(Failed::from),
            Effect::LoadCatalog(provider) => match engine.catalog_pair(provider.clone()).await {
                Ok((catalog, policy)) => {
                    let _ = tx.send(UiEvent::Catalog {
                        provider,
                        catalog,
                        policy,
                    });
                    return;
                }
                Err(e) => Err(Failed::doing(&format!("catalog of {provider}"), &e)),
            },
            Effect::Unlock(password) => engine
                .unlock(password)
                .await
                .map(|()| "unlocked".to_string())
                .map_err(Failed::from),
            Effect::LoadTheme(name, depth) => {
                let dirs = vec![engine.home().join("themes")];
                match tokio::task::spawn_blocking(move || Theme::load(&name, &dirs)).await {
                    Ok(Ok(theme)) => {
                        let _ = tx.send(UiEvent::Theme(Box::new(theme.with_depth(depth))));
                        Ok("theme changed".to_string())
                    }
                    Ok(Err(e)) => Err(Failed::from(e.to_string())),
                    Err(e) => Err(Failed::from(e.to_string())),
                }
            }
            Effect::OpenShell {
                id,
                node,
                rows,
                cols,
            } => {
                let started = match engine.ssh_access(node.clone()).await {
                    Ok(access) => {
                        let wake = tx.clone();
                        super::term::session::spawn(&node, access, rows, cols, move || {
                            wake.send(UiEvent::Term(id)).is_ok()
                        })
                        .map_err(|source| SessionError::Thread {
                            what: "ssh",
                            node: node.clone(),
                            thread: "session thread",
                            source,
                        })
                    }
                    Err(e) => Err(SessionError::Access {
                        what: "ssh",
                        node: node.clone(),
                        reason: e.to_string(),
                    }),
                };
                let _ = tx.send(UiEvent::Shell(id, started));
                return;
            }
            Effect::ImportNode(req) => {
                let name = req.name.clone();
                engine
                    .import_node(*req)
                    .await
                    .map(|r| {
                        format!(
                            "{name} imported ({}, host key {} pinned, sudo {:?}); apply to deploy it",
                            r.server_id, r.host_key, r.sudo
                        )
                    })
                    .map_err(|e| Failed::doing(&format!("import {name}"), &e))
            }
            Effect::TailNode { id, node } => {
                let started = match engine.ssh_access(node.clone()).await {
                    Ok(access) => {
                        let wake = tx.clone();
                        crate::ssh::tail::spawn(&node, access, move || {
                            wake.send(UiEvent::TailWoke(id)).is_ok()
                        })
                        .map_err(|source| SessionError::Thread {
                            what: "logs of",
                            node: node.clone(),
                            thread: "thread",
                            source,
                        })
                    }
                    Err(e) => Err(SessionError::Access {
                        what: "logs of",
                        node: node.clone(),
                        reason: e.to_string(),
                    }),
                };
                let _ = tx.send(UiEvent::Tail(id, started));
                return;
            }
            Effect::PinHostKey(node, fingerprint) => engine
                .pin_host_key(node.clone(), fingerprint.clone())
                .await
                .map(|()| format!("{node}: host key {fingerprint} trusted on first use and pinned"))
                .map_err(|e| Failed::doing(&format!("{node}: could not pin the host key"), &e)),
            Effect::Quit => return,
        };
        let _ = tx.send(UiEvent::Reply(reply));
    });
}
