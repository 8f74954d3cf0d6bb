//! The dashboard's keymap: defaults resolved from the key events terminals really send, the
//! user's keymap file, and the safety rule for mutating commands.

// `allow-unwrap-in-tests` covers `#[test]` functions only, not this file's helpers.
#![allow(clippy::unwrap_used)]

use std::path::Path;

use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyEventState, KeyModifiers};
use legion::views::keymap::{Command, KeySpec, Keymap, KeymapError, Layer};

const NONE: KeyModifiers = KeyModifiers::NONE;
const SHIFT: KeyModifiers = KeyModifiers::SHIFT;
const CTRL: KeyModifiers = KeyModifiers::CONTROL;

fn press(code: KeyCode, modifiers: KeyModifiers) -> KeyEvent {
    KeyEvent::new(code, modifiers)
}

fn ch(c: char) -> KeyEvent {
    press(KeyCode::Char(c), NONE)
}

/// Every default binding, as crossterm reports it from a real terminal. Uppercase letters and
/// shifted symbols appear both ways: legacy terminals send the character alone, Windows and
/// the kitty protocol add SHIFT.
fn realistic_events() -> Vec<(KeyEvent, Command)> {
    use Command::*;
    vec![
        (ch('k'), MoveUp),
        (press(KeyCode::Up, NONE), MoveUp),
        (ch('j'), MoveDown),
        (press(KeyCode::Down, NONE), MoveDown),
        (ch('g'), Top),
        (press(KeyCode::Home, NONE), Top),
        (ch('G'), Bottom),
        (press(KeyCode::Char('G'), SHIFT), Bottom),
        (press(KeyCode::PageUp, NONE), PageUp),
        (press(KeyCode::Char('b'), CTRL), PageUp),
        (press(KeyCode::PageDown, NONE), PageDown),
        (press(KeyCode::Char('f'), CTRL), PageDown),
        (press(KeyCode::Enter, NONE), Details),
        (press(KeyCode::Esc, NONE), Back),
        (press(KeyCode::Tab, NONE), NextView),
        (press(KeyCode::BackTab, SHIFT), PrevView),
        (press(KeyCode::BackTab, NONE), PrevView),
        (ch('1'), ViewNodes),
        (ch('2'), ViewZones),
        (ch('3'), ViewFirewalls),
        (ch('4'), ViewDomains),
        (press(KeyCode::Char('r'), CTRL), Refresh),
        (ch('u'), Start),
        (ch('o'), Stop),
        (ch('r'), Reboot),
        (ch('t'), Retry),
        (ch('R'), Reinstall),
        (press(KeyCode::Char('R'), SHIFT), Reinstall),
        (press(KeyCode::Char('r'), SHIFT), Reinstall),
        (ch('a'), Apply),
        (ch('n'), Add),
        (ch('e'), Edit),
        (ch('D'), Remove),
        (press(KeyCode::Char('D'), SHIFT), Remove),
        (ch('l'), ToggleLog),
        (ch('+'), LogGrow),
        (press(KeyCode::Char('+'), SHIFT), LogGrow),
        (ch('-'), LogShrink),
        (ch('F'), LogFollow),
        (press(KeyCode::Char('F'), SHIFT), LogFollow),
        (press(KeyCode::End, NONE), LogFollow),
        (ch('L'), LogNodeOnly),
        (press(KeyCode::Char('L'), SHIFT), LogNodeOnly),
        (ch('T'), LogTail),
        (press(KeyCode::Char('T'), SHIFT), LogTail),
        (ch('s'), Shell),
        (ch(']'), NextPane),
        // Ctrl-\ and Ctrl-] are 0x1c and 0x1d, which crossterm reads as Ctrl-4 and Ctrl-5;
        // the kitty protocol reports the real key.
        (press(KeyCode::Char('4'), CTRL), LeavePane),
        (press(KeyCode::Char('\\'), CTRL), LeavePane),
        (press(KeyCode::Char('5'), CTRL), ZoomPane),
        (press(KeyCode::Char(']'), CTRL), ZoomPane),
        (ch('/'), Filter),
        (ch(':'), CommandLine),
        (press(KeyCode::Char(':'), SHIFT), CommandLine),
        (ch('?'), Help),
        (press(KeyCode::Char('?'), SHIFT), Help),
        (ch('q'), Quit),
        (press(KeyCode::Char('c'), CTRL), Quit),
    ]
}

/// The plan overlay's own bindings (`Layer::Plan`), as a terminal sends them.
fn plan_events() -> Vec<(KeyEvent, Command)> {
    use Command::*;
    vec![
        (ch('y'), PlanApply),
        (press(KeyCode::Esc, NONE), PlanCancel),
        (ch('n'), PlanCancel),
        (ch('q'), PlanCancel),
        (press(KeyCode::Enter, NONE), PlanChoose),
        (press(KeyCode::Tab, NONE), PlanSwitch),
        (press(KeyCode::BackTab, SHIFT), PlanSwitch),
        (ch('j'), MoveDown),
        (press(KeyCode::PageUp, NONE), PageUp),
        (ch('g'), Top),
    ]
}

#[test]
fn every_default_resolves_from_a_realistic_event() {
    let map = Keymap::defaults();
    let mut events = realistic_events();
    for (ev, expected) in &events {
        assert_eq!(map.resolve(ev, Layer::Table), Some(*expected), "{ev:?}");
    }
    for (ev, expected) in plan_events() {
        assert_eq!(map.resolve(&ev, Layer::Plan), Some(expected), "{ev:?}");
        events.push((ev, expected));
    }
    // The table above covers every default binding of every command.
    for &command in Command::ALL {
        for key in map.keys(command) {
            assert!(
                events
                    .iter()
                    .any(|(ev, c)| *c == command && key.matches(ev)),
                "no realistic event exercises {key} for {command}"
            );
        }
        assert!(
            !map.keys(command).is_empty(),
            "{command} has no default key"
        );
    }
}

#[test]
fn near_misses_do_not_resolve() {
    let map = Keymap::defaults();
    for ev in [
        press(KeyCode::Char('j'), CTRL),
        press(KeyCode::Char('j'), KeyModifiers::ALT),
        press(KeyCode::Char('u'), CTRL),
        press(KeyCode::Char('R'), CTRL | SHIFT),
        press(KeyCode::Char('j'), KeyModifiers::SUPER),
        press(KeyCode::Up, SHIFT),
        press(KeyCode::End, SHIFT),
        press(KeyCode::F(1), NONE),
        ch('x'),
    ] {
        assert_eq!(map.resolve(&ev, Layer::Table), None, "{ev:?}");
    }
    // Lowercase r and uppercase R stay different commands.
    assert_eq!(map.resolve(&ch('r'), Layer::Table), Some(Command::Reboot));
    assert_eq!(
        map.resolve(&ch('R'), Layer::Table),
        Some(Command::Reinstall)
    );
}

#[test]
fn release_and_repeat_events_do_not_resolve() {
    let map = Keymap::defaults();
    for kind in [KeyEventKind::Release, KeyEventKind::Repeat] {
        for code in [KeyCode::Char('j'), KeyCode::Char('o'), KeyCode::Enter] {
            let ev = KeyEvent::new_with_kind(code, NONE, kind);
            assert_eq!(map.resolve(&ev, Layer::Table), None, "{ev:?}");
        }
        let j: KeySpec = "j".parse().unwrap();
        assert!(!j.matches(&KeyEvent::new_with_kind(KeyCode::Char('j'), NONE, kind)));
    }
    // The same key pressed, with keypad state set, does resolve.
    let pressed = KeyEvent::new_with_kind_and_state(
        KeyCode::Char('j'),
        NONE,
        KeyEventKind::Press,
        KeyEventState::KEYPAD,
    );
    assert_eq!(map.resolve(&pressed, Layer::Table), Some(Command::MoveDown));
}

#[test]
fn no_default_mutating_command_uses_ctrl_or_alt() {
    let map = Keymap::defaults();
    let mut checked = 0;
    for &command in Command::ALL.iter().filter(|c| c.info().mutating) {
        for key in map.keys(command) {
            assert!(!key.has_modifier(), "{command} is bound to {key}");
            assert!(!key.to_string().contains("ctrl-") && !key.to_string().contains("alt-"));
            checked += 1;
        }
    }
    assert!(
        checked >= 9,
        "expected the nine mutating commands to have keys"
    );
}

#[test]
fn defaults_toml_round_trips_and_documents_every_command() {
    let text = Keymap::defaults_toml();
    assert_eq!(Keymap::parse(&text), Ok(Keymap::defaults()));
    for &command in Command::ALL {
        let info = command.info();
        let line = text
            .lines()
            .find(|l| l.starts_with(&format!("{} = ", info.name)))
            .unwrap_or_else(|| panic!("{} is missing from:\n{text}", info.name));
        assert!(line.contains(info.description), "{line}");
    }
    assert!(text.contains("reinstall = [\"R\"]"), "{text}");
    assert!(
        text.contains("page_down = [\"pgdn\", \"ctrl-f\"]"),
        "{text}"
    );
}

fn write(dir: &Path, text: &str) -> std::path::PathBuf {
    let path = dir.join("keymap.toml");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn missing_file_gives_defaults_without_error() {
    let dir = tempfile::tempdir().unwrap();
    let (map, err) = Keymap::load(&dir.path().join("keymap.toml"));
    assert!(err.is_none(), "{err:?}");
    assert_eq!(map, Keymap::defaults());
}

#[test]
fn user_file_rebinds_stop_and_disables_reboot() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "# mine\n[keys]\nstop = \"x\"\nreboot = []\nmove_down = [\"j\", \"ctrl-n\"]\n",
    );
    let (map, err) = Keymap::load(&path);
    assert!(err.is_none(), "{err:?}");
    assert_eq!(map.resolve(&ch('x'), Layer::Table), Some(Command::Stop));
    assert_eq!(
        map.resolve(&ch('o'), Layer::Table),
        None,
        "the old stop key is free"
    );
    assert_eq!(
        map.resolve(&ch('r'), Layer::Table),
        None,
        "reboot is disabled"
    );
    assert!(map.keys(Command::Reboot).is_empty());
    assert_eq!(map.first_key(Command::Reboot), None);
    assert_eq!(
        map.first_key(Command::Stop).map(ToString::to_string),
        Some("x".to_string())
    );
    assert_eq!(
        map.resolve(&press(KeyCode::Char('n'), CTRL), Layer::Table),
        Some(Command::MoveDown)
    );
    // Untouched commands keep their defaults.
    assert_eq!(map.resolve(&ch('u'), Layer::Table), Some(Command::Start));
    assert_eq!(
        map.resolve(&ch('R'), Layer::Table),
        Some(Command::Reinstall)
    );
    assert_eq!(
        map.keys(Command::Quit),
        Keymap::defaults().keys(Command::Quit)
    );
}

#[test]
fn a_freed_default_key_can_be_reused() {
    let map = Keymap::parse("[keys]\nreboot = []\nstop = \"r\"\n").unwrap();
    assert_eq!(map.resolve(&ch('r'), Layer::Table), Some(Command::Stop));
}

/// Loads a bad file and checks: defaults in use, the error names the file and the line.
fn assert_bad(text: &str, line: usize, mentions: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), text);
    let (map, err) = Keymap::load(&path);
    assert_eq!(map, Keymap::defaults(), "a bad file must give the defaults");
    let err: KeymapError = err.unwrap_or_else(|| panic!("no error for:\n{text}"));
    assert_eq!(err.line(), Some(line), "{err}");
    assert_eq!(err.path(), path);
    let msg = err.to_string();
    assert!(msg.contains(&path.display().to_string()), "{msg}");
    assert!(msg.contains(&format!("line {line}")), "{msg}");
    for m in mentions {
        assert!(msg.contains(m), "{msg:?} should mention {m:?}");
    }
}

#[test]
fn unknown_command_is_reported_with_its_line() {
    assert_bad(
        "[keys]\nstop = \"x\"\n\nreboto = \"z\"\n",
        4,
        &["unknown command `reboto`", "did you mean `reboot`"],
    );
}

#[test]
fn bad_key_is_reported_with_its_line() {
    assert_bad(
        "[keys]\nstart = \"u\"\nmove_down = [\n  \"j\",\n  \"pgdown\",\n]\n",
        5,
        &["move_down", "\"pgdown\""],
    );
}

#[test]
fn ctrl_bound_reinstall_is_rejected() {
    assert_bad(
        "[keys]\nhelp = \"?\"\nreinstall = \"ctrl-r\"\n",
        3,
        &["reinstall", "ctrl-r"],
    );
}

#[test]
fn alt_bound_stop_is_rejected() {
    assert_bad("[keys]\nstop = [\"s\", \"alt-s\"]\n", 2, &["stop", "alt-s"]);
}

#[test]
fn duplicate_key_in_the_file_is_reported_on_the_second_line() {
    assert_bad(
        "[keys]\nstop = \"x\"\nstart = \"x\"\n",
        3,
        &["key x", "`stop` (line 2)", "`start`"],
    );
}

#[test]
fn key_taken_from_a_default_is_reported_on_the_users_line() {
    assert_bad(
        "[keys]\n\nstop = \"j\"\n",
        3,
        &["key j", "`move_down` (by default)", "`stop`"],
    );
}

#[test]
fn other_bad_shapes_are_reported_with_their_line() {
    assert_bad(
        "[keys]\nstop = \"x\"\nstop = \"y\"\n",
        3,
        &["not valid TOML"],
    );
    assert_bad("[keys]\nstop = 5\n", 2, &["`stop` takes a key"]);
    assert_bad("[keys]\nstop = [\"x\", 5]\n", 2, &["`stop` takes a key"]);
    assert_bad(
        "[keys]\nstop = \"x\"\n[key]\nstart = \"u\"\n",
        3,
        &["`key`"],
    );
    assert_bad("[keys\n", 1, &["not valid TOML"]);
}

#[test]
fn readonly_drops_mutating_bindings() {
    let map = Keymap::defaults().without_mutating();
    for &command in Command::ALL {
        if command.info().mutating {
            assert!(map.keys(command).is_empty(), "{command} still has keys");
            assert_eq!(map.first_key(command), None);
        } else {
            assert_eq!(map.keys(command), Keymap::defaults().keys(command));
        }
    }
    for c in ['u', 'o', 'r', 't', 'R', 'n', 'e', 'D'] {
        assert_eq!(map.resolve(&ch(c), Layer::Table), None, "{c}");
    }
    // `a` opens the plan to read it; its Apply button has no key.
    assert_eq!(map.resolve(&ch('a'), Layer::Table), Some(Command::Apply));
    assert_eq!(map.resolve(&ch('y'), Layer::Plan), None);
    assert_eq!(map.resolve(&ch('j'), Layer::Table), Some(Command::MoveDown));
    assert_eq!(map.resolve(&ch('q'), Layer::Table), Some(Command::Quit));
}

#[test]
fn bindings_follow_display_order() {
    let map = Keymap::defaults();
    let order: Vec<Command> = map.bindings().map(|(c, _)| c).collect();
    assert_eq!(order, Command::ALL);
    let (first, keys) = map.bindings().next().unwrap();
    assert_eq!(first, Command::MoveUp);
    assert_eq!(keys.len(), 2);
}

#[test]
fn footer_shows_the_first_key() {
    let map = Keymap::defaults();
    let shown = |c| map.first_key(c).map(ToString::to_string);
    assert_eq!(shown(Command::PrevView).as_deref(), Some("shift-tab"));
    assert_eq!(shown(Command::PageDown).as_deref(), Some("pgdn"));
    assert_eq!(shown(Command::Reinstall).as_deref(), Some("R"));
    assert_eq!(shown(Command::LogFollow).as_deref(), Some("F"));
}
