//! Unit tests of the module above.

use std::collections::HashMap;

use super::file::{line_of, suggest, toml_string};
use super::*;

/// Exhaustive on purpose: a new variant does not compile until it is counted here.
fn ordinal(c: Command) -> usize {
    use Command::*;
    match c {
        MoveUp => 0,
        MoveDown => 1,
        Top => 2,
        Bottom => 3,
        PageUp => 4,
        PageDown => 5,
        Details => 6,
        Back => 7,
        NextView => 8,
        PrevView => 9,
        ViewNodes => 10,
        ViewZones => 11,
        ViewFirewalls => 12,
        ViewDomains => 13,
        Start => 14,
        Stop => 15,
        Reboot => 16,
        Retry => 17,
        Reinstall => 18,
        Apply => 19,
        Add => 20,
        Edit => 21,
        Remove => 22,
        ToggleLog => 23,
        LogGrow => 24,
        LogShrink => 25,
        LogFollow => 26,
        LogNodeOnly => 27,
        Filter => 28,
        CommandLine => 29,
        Help => 30,
        Quit => 31,
        Shell => 32,
        NextPane => 33,
        LeavePane => 34,
        ZoomPane => 35,
        LogTail => 36,
        Refresh => 37,
        Import => 38,
        Record => 39,
        Provider => 40,
        Theme => 41,
        PlanApply => 42,
        PlanCancel => 43,
        PlanChoose => 44,
        PlanSwitch => 45,
    }
}

#[test]
fn all_lists_every_command_once() {
    let mut seen = [false; 46];
    for c in Command::every() {
        assert!(!seen[ordinal(c)], "{c} listed twice");
        seen[ordinal(c)] = true;
    }
    assert!(
        seen.iter().all(|&s| s),
        "a command is missing from Command::ALL and Command::TYPED"
    );
}

#[test]
fn info_names_are_the_serde_names_and_parse_back() {
    for &c in Command::ALL {
        let value = toml::Value::try_from(c).unwrap();
        assert_eq!(value.as_str(), Some(c.name()));
        let back: Command = value.try_into().unwrap();
        assert_eq!(back, c);
        assert_eq!(c.name().parse::<Command>(), Ok(c));
        assert_eq!(c.to_string(), c.name());
    }
    assert_eq!(
        "frobnicate".parse::<Command>(),
        Err(UnknownCommand("frobnicate".into()))
    );
}

#[test]
fn metadata_is_filled_in_and_consistent() {
    let destructive: Vec<_> = Command::ALL
        .iter()
        .filter(|c| c.info().destructive)
        .map(|c| c.name())
        .collect();
    assert_eq!(destructive, ["stop", "reboot", "reinstall", "remove"]);
    let mutating: Vec<_> = Command::ALL
        .iter()
        .filter(|c| c.info().mutating)
        .map(|c| c.name())
        .collect();
    assert_eq!(
        mutating,
        [
            "start",
            "stop",
            "reboot",
            "retry",
            "reinstall",
            "add",
            "edit",
            "remove",
            "plan_apply",
            "shell"
        ]
    );
    for &c in Command::ALL {
        let info = c.info();
        assert!(
            !info.label.is_empty() && !info.description.is_empty(),
            "{c}"
        );
        assert!(!info.default_keys.is_empty(), "{c} has no default key");
    }
    // Groups appear in display order, each as one run.
    let groups: Vec<Group> = Command::ALL.iter().map(|c| c.info().group).collect();
    let mut runs = groups.clone();
    runs.dedup();
    assert_eq!(runs, Group::ALL);
}

#[test]
fn defaults_bind_no_key_twice_in_one_layer() {
    let mut owner: HashMap<(KeySpec, Layer), Command> = HashMap::new();
    for &c in Command::ALL {
        for k in c.info().default_keys {
            for &layer in c.info().layers {
                if let Some(other) = owner.insert((*k, layer), c) {
                    panic!("{k} is bound to {other} and {c} in {layer:?}");
                }
            }
        }
    }
    let map = Keymap::defaults();
    for &c in Command::ALL {
        assert_eq!(map.keys(c), c.info().default_keys, "{c}");
    }
}

/// The plan overlay's buttons are keymap commands: Enter and Tab mean one thing in the
/// table and another in the overlay, and a user file can rebind them there.
#[test]
fn the_plan_overlay_keys_are_bindings_of_their_own_layer() {
    use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
    let ev = |c| KeyEvent::new(c, KeyModifiers::NONE);
    let map = Keymap::defaults();
    let at = |c, l| map.resolve(&ev(c), l);
    assert_eq!(at(KeyCode::Enter, Layer::Table), Some(Command::Details));
    assert_eq!(at(KeyCode::Enter, Layer::Plan), Some(Command::PlanChoose));
    assert_eq!(at(KeyCode::Tab, Layer::Table), Some(Command::NextView));
    assert_eq!(at(KeyCode::Tab, Layer::Plan), Some(Command::PlanSwitch));
    assert_eq!(at(KeyCode::Esc, Layer::Plan), Some(Command::PlanCancel));
    assert_eq!(
        at(KeyCode::Char('y'), Layer::Plan),
        Some(Command::PlanApply)
    );
    assert_eq!(at(KeyCode::Char('y'), Layer::Table), None);
    assert_eq!(at(KeyCode::Char('j'), Layer::Plan), Some(Command::MoveDown));
    assert_eq!(at(KeyCode::Char('a'), Layer::Plan), None);
    // Opening the plan reads; only its Apply button changes something.
    assert!(!Command::Apply.info().mutating);
    assert!(Command::PlanApply.info().mutating);
    // Rebinding: Apply on `x` in the overlay, which `x` nowhere else means.
    let user = Keymap::parse("[keys]\nplan_apply = \"x\"\n").unwrap();
    assert_eq!(
        user.resolve(&ev(KeyCode::Char('x')), Layer::Plan),
        Some(Command::PlanApply)
    );
    assert_eq!(user.resolve(&ev(KeyCode::Char('y')), Layer::Plan), None);
    // A key may serve two commands only where their layers do not meet.
    let err = Keymap::parse("[keys]\nplan_choose = \"j\"\n").unwrap_err();
    assert_eq!(err.line, 2);
    assert!(err.to_string().contains("move_down"), "{err}");
    assert!(Keymap::parse("[keys]\nplan_choose = \"d\"\ndetails = \"d\"\n").is_ok());
    // `--readonly` keeps the overlay's reading keys and drops Apply's.
    let ro = Keymap::defaults().without_mutating();
    assert_eq!(
        ro.resolve(&ev(KeyCode::Char('a')), Layer::Table),
        Some(Command::Apply)
    );
    assert_eq!(ro.resolve(&ev(KeyCode::Char('y')), Layer::Plan), None);
    assert_eq!(
        ro.resolve(&ev(KeyCode::Enter), Layer::Plan),
        Some(Command::PlanChoose)
    );
}

#[test]
fn key_specs_round_trip_through_display() {
    for text in [
        "j",
        "G",
        "?",
        "/",
        ":",
        "-",
        "+",
        "enter",
        "esc",
        "tab",
        "shift-tab",
        "up",
        "down",
        "left",
        "right",
        "pgup",
        "pgdn",
        "home",
        "end",
        "space",
        "f1",
        "f12",
        "ctrl-x",
        "alt-x",
        "ctrl-alt-x",
        "alt-X",
        "ctrl--",
        "ctrl-space",
        "backspace",
        "delete",
        "insert",
        "é",
    ] {
        let spec: KeySpec = text.parse().unwrap();
        assert_eq!(spec.to_string(), text);
    }
}

#[test]
fn key_spec_aliases_are_canonicalised() {
    for (alias, canonical) in [
        ("Enter", "enter"),
        ("RETURN", "enter"),
        ("escape", "esc"),
        ("PageDown", "pgdn"),
        ("pageup", "pgup"),
        ("BackTab", "shift-tab"),
        ("Shift-Tab", "shift-tab"),
        ("CTRL-f", "ctrl-f"),
        ("Alt-Ctrl-f", "ctrl-alt-f"),
        ("F5", "f5"),
        ("del", "delete"),
    ] {
        let spec: KeySpec = alias.parse().unwrap();
        assert_eq!(spec.to_string(), canonical, "{alias}");
    }
}

#[test]
fn bad_key_specs_say_why() {
    assert_eq!("".parse::<KeySpec>(), Err(KeySpecError::Empty));
    for bad in [
        "pgdown",
        "f13",
        "f0",
        "ctrl-",
        "ctrl-pgdownn",
        " ",
        "\t",
        "jj",
    ] {
        assert!(
            matches!(bad.parse::<KeySpec>(), Err(KeySpecError::Unknown(_))),
            "{bad:?}"
        );
    }
    assert_eq!(
        "shift-a".parse::<KeySpec>(),
        Err(KeySpecError::Shift("shift-a".into()))
    );
    assert_eq!(
        "ctrl-F".parse::<KeySpec>(),
        Err(KeySpecError::CtrlUppercase("ctrl-F".into()))
    );
    assert_eq!(
        "ctrl-ctrl-f".parse::<KeySpec>(),
        Err(KeySpecError::RepeatedModifier("ctrl-ctrl-f".into()))
    );
    let msg = "pgdown".parse::<KeySpec>().unwrap_err().to_string();
    assert!(msg.contains("\"pgdown\"") && msg.contains("pgdn"), "{msg}");
}

#[test]
fn suggestions_catch_typos_only() {
    assert_eq!(suggest("reboto"), Some(Command::Reboot));
    assert_eq!(suggest("move-down"), Some(Command::MoveDown));
    assert_eq!(suggest("logfollow"), Some(Command::LogFollow));
    assert_eq!(suggest("frobnicate"), None);
}

#[test]
fn lines_are_one_based() {
    let text = "a\nb\n\nc";
    assert_eq!(line_of(text, 0), 1);
    assert_eq!(line_of(text, 2), 2);
    assert_eq!(line_of(text, 5), 4);
    assert_eq!(line_of(text, 999), 4);
}

#[test]
fn toml_strings_are_escaped() {
    for s in ["\"", "\\", "a", "é", "\u{7f}"] {
        let doc = format!("k = {}", toml_string(s));
        let table: toml::Table = toml::from_str(&doc).unwrap();
        assert_eq!(table["k"].as_str(), Some(s), "{doc}");
    }
}

#[test]
fn keymap_accepts_quote_and_backslash_keys() {
    let map = Keymap::parse("[keys]\nhelp = ['\"', \"\\\\\"]\n").unwrap();
    let keys: Vec<String> = map
        .keys(Command::Help)
        .iter()
        .map(|k| k.to_string())
        .collect();
    assert_eq!(keys, ["\"", "\\"]);
}

// --- The command table v2: availability and what each surface offers.

mod offers {
    use super::super::offer::{self, Context, Unavailable};
    use super::super::{Command, Layer};
    use crate::engine::actors::{Machine, System};
    use crate::engine::snapshot::NodeRow;
    use crate::engine::state::model::{ExecStatus, Execution, ExecutionKind};
    use crate::views::lists::Tab;

    fn node(machine: Machine) -> NodeRow {
        NodeRow {
            name: "web-1".into(),
            status: crate::engine::status::NodeStatus::Running,
            cluster: "prod".into(),
            role: "worker".into(),
            provider: "mock".into(),
            region: "sim-east".into(),
            offer: "sim-small".into(),
            image: "debian-12".into(),
            machine,
            system: System::Ready,
            health: None,
            address: Some("198.51.100.1".into()),
            server_id: Some("sv-1".into()),
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

    fn failed(mut n: NodeRow) -> NodeRow {
        n.execution = Some(Execution {
            id: 1,
            kind: ExecutionKind::Add,
            status: ExecStatus::Failed,
            phases: vec![],
            started_ms: 0,
            finished_ms: None,
            retiring: None,
        });
        n
    }

    fn ctx(node: Option<&NodeRow>, layer: Layer, readonly: bool) -> Context<'_> {
        Context {
            readonly,
            view: Tab::Nodes,
            layer,
            node,
        }
    }

    fn names(cmds: &[Command]) -> Vec<&'static str> {
        cmds.iter().map(|c| c.name()).collect()
    }

    #[test]
    fn start_is_unavailable_on_a_running_node_with_its_reason() {
        let running = node(Machine::Running);
        let c = ctx(Some(&running), Layer::Table, false);
        assert_eq!(
            Command::Start.available(&c),
            Err(Unavailable::Refused("web-1 is already running".into()))
        );
        assert_eq!(Command::Stop.available(&c), Ok(()));
        assert_eq!(Command::Reboot.available(&c), Ok(()));
        let footer = offer::footer(&c);
        assert!(!footer.contains(&Command::Start), "{footer:?}");
        assert!(footer.contains(&Command::Stop), "{footer:?}");
    }

    #[test]
    fn stop_is_unavailable_on_a_stopped_node_with_its_reason() {
        let stopped = node(Machine::Stopped);
        let c = ctx(Some(&stopped), Layer::Table, false);
        let why = Command::Stop.available(&c).unwrap_err().to_string();
        assert_eq!(why, "web-1 is already stopped");
        assert!(
            Command::Reboot
                .available(&c)
                .unwrap_err()
                .to_string()
                .contains("start it instead")
        );
        assert_eq!(Command::Start.available(&c), Ok(()));
        assert_eq!(
            names(&offer::footer(&c)),
            [
                "help",
                "quit",
                "start",
                "reinstall",
                "remove",
                "shell",
                "apply",
                "details",
                "filter",
                "toggle_log",
                "command_line"
            ]
        );
    }

    #[test]
    fn an_operation_in_flight_refuses_every_node_action() {
        let mut busy = node(Machine::Running);
        busy.operation = Some("reboot".into());
        let c = ctx(Some(&busy), Layer::Table, false);
        for cmd in [Command::Stop, Command::Reboot, Command::Reinstall] {
            let why = cmd.available(&c).unwrap_err().to_string();
            assert!(why.contains("reboot is in progress"), "{why}");
        }
    }

    #[test]
    fn retry_needs_something_to_retry() {
        let fresh = node(Machine::Running);
        let c = ctx(Some(&fresh), Layer::Table, false);
        assert!(
            Command::Retry
                .available(&c)
                .unwrap_err()
                .to_string()
                .contains("nothing to retry")
        );
        let broken = failed(node(Machine::Running));
        let c = ctx(Some(&broken), Layer::Table, false);
        assert_eq!(Command::Retry.available(&c), Ok(()));
        assert!(offer::footer(&c).contains(&Command::Retry));
    }

    #[test]
    fn node_commands_need_a_node() {
        let c = ctx(None, Layer::Table, false);
        for cmd in [
            Command::Start,
            Command::Stop,
            Command::Remove,
            Command::Shell,
        ] {
            assert_eq!(
                cmd.available(&c),
                Err(Unavailable::NoNode(cmd.info().label)),
                "{cmd}"
            );
        }
        assert_eq!(
            names(&offer::footer(&c)),
            [
                "help",
                "quit",
                "apply",
                "details",
                "filter",
                "toggle_log",
                "command_line"
            ]
        );
    }

    #[test]
    fn readonly_refuses_whatever_changes_something_by_one_check() {
        let stopped = failed(node(Machine::Stopped));
        let c = ctx(Some(&stopped), Layer::Table, true);
        for cmd in Command::every() {
            let info = cmd.info();
            if info.mutating {
                assert_eq!(
                    cmd.available(&c),
                    Err(Unavailable::Readonly(info.label)),
                    "{cmd}"
                );
                assert_eq!(info.allowed(true), Err(Unavailable::Readonly(info.label)));
                assert_eq!(info.allowed(false), Ok(()));
            }
        }
        // Destructive commands are a subset of those that change something.
        assert!(
            Command::every()
                .filter(|c| c.info().destructive)
                .all(|c| c.info().mutating)
        );
        let footer = offer::footer(&c);
        assert!(footer.iter().all(|c| !c.info().mutating), "{footer:?}");
        assert!(offer::help(true).all(|c| !c.info().mutating));
        assert!(offer::palette(true).all(|(_, _, c)| !c.info().mutating));
        let line = offer::palette_line(true);
        assert!(
            !line.contains(":stop") && line.contains(":theme NAME"),
            "{line}"
        );
    }

    /// Every row with a footer place, a key or a word shows up in the footer, the help
    /// overlay and the palette: a command added to the table needs nothing else.
    #[test]
    fn footer_help_and_palette_come_from_the_table() {
        let running = failed(node(Machine::Running));
        let stopped = node(Machine::Stopped);
        let contexts = [
            ctx(Some(&running), Layer::Table, false),
            ctx(Some(&stopped), Layer::Table, false),
            ctx(Some(&running), Layer::Log, false),
            ctx(Some(&running), Layer::Pane, false),
        ];
        let footers: Vec<Command> = contexts.iter().flat_map(offer::footer).collect();
        let help: Vec<Command> = offer::help(false).collect();
        let words: Vec<&str> = offer::palette(false).map(|(w, _, _)| w).collect();
        let line = offer::palette_line(false);
        for cmd in Command::every() {
            let info = cmd.info();
            if info.footer.is_some() {
                assert!(footers.contains(&cmd), "{cmd} has a footer place");
            }
            if !info.default_keys.is_empty() {
                assert!(help.contains(&cmd), "{cmd} is missing from the help");
            }
            if let Some(p) = info.palette {
                assert!(words.contains(&p.word), "{cmd} is missing from the palette");
                assert!(line.contains(&format!(":{}", p.word)), "{line}");
                assert_eq!(Command::from_word(p.word), Some(cmd));
            }
        }
        assert_eq!(Command::from_word("q"), Some(Command::Quit));
        assert_eq!(Command::from_word("frob"), None);
        // The pane's footer is the pane's commands only.
        assert_eq!(
            names(&offer::footer(&contexts[3])),
            ["leave_pane", "zoom_pane"]
        );
    }

    #[test]
    fn typed_commands_have_no_keys_and_no_place_in_the_keymap_file() {
        let text = super::Keymap::defaults_toml();
        for &cmd in Command::TYPED {
            let info = cmd.info();
            assert!(
                info.default_keys.is_empty() && info.layers.is_empty(),
                "{cmd}"
            );
            assert!(info.palette.is_some(), "{cmd}");
            assert!(!text.contains(&format!("\n{} = ", info.name)), "{cmd}");
            assert_eq!(Command::from_name(info.name), None);
        }
        // The safety rule's list in the file's header comes from the table.
        let header: String = text
            .lines()
            .take_while(|l| l.starts_with('#'))
            .map(|l| l.trim_start_matches('#'))
            .collect();
        assert!(
            header.contains(
                "(start, stop, reboot, retry, reinstall, add, edit, remove, plan_apply, shell)"
            ),
            "{header}"
        );
    }
}
