//! Theme files and colour depth: every file in `themes/` loads and covers the dashboard's keys,
//! bad files are reported with their name and line, fallback and inheritance behave, and
//! colours degrade to what the terminal can show.

#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use legion::views::theme::{ColorDepth, SEMANTIC_KEYS, Theme, ThemeError};
use ratatui::style::{Color, Modifier, Style};

fn themes_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("themes")
}

/// Every `*.toml` in `themes/`, by name; read from the folder so a new file is tested
/// without touching this list.
fn theme_files() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(themes_dir())
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "toml"))
        .map(|path| path.file_stem().unwrap().to_str().unwrap().to_string())
        .collect();
    names.sort();
    names
}

fn write(dir: &Path, name: &str, text: &str) {
    std::fs::write(dir.join(format!("{name}.toml")), text).unwrap();
}

fn load_err(name: &str, dirs: &[PathBuf]) -> ThemeError {
    match Theme::load(name, dirs) {
        Ok(theme) => panic!("theme {name} loaded, expected an error: {theme:?}"),
        Err(e) => e,
    }
}

#[test]
fn the_three_builtins_are_files_in_themes() {
    let files = theme_files();
    for name in ["ansi16", "dark", "light"] {
        assert!(
            files.contains(&name.to_string()),
            "themes/{name}.toml is missing"
        );
        assert!(Theme::builtin(name).is_ok(), "builtin {name} fails");
    }
    assert_eq!(Theme::names(&[]), ["ansi16", "dark", "light"]);
    assert_eq!(Theme::default().name(), "dark");
}

#[test]
fn every_theme_file_loads_and_covers_every_semantic_key() {
    let dirs = [themes_dir()];
    let files = theme_files();
    assert!(!files.is_empty());
    for name in files {
        let theme = Theme::load(&name, &dirs).unwrap_or_else(|e| panic!("themes/{name}: {e}"));
        for key in SEMANTIC_KEYS {
            let from = theme.resolved_key(key);
            assert!(
                *key == "text" || from != "text",
                "themes/{name}.toml: `{key}` falls back to `text`"
            );
        }
        assert!(
            theme.unknown_keys().is_empty(),
            "themes/{name}.toml defines keys no view uses (typos?): {:?}",
            theme.unknown_keys()
        );
    }
}

#[test]
fn builtins_define_every_key_exactly() {
    // Stricter than the test above for the built-ins: no key relies on a shorter prefix, so
    // each state can be told apart.
    for name in ["dark", "light", "ansi16"] {
        let theme = Theme::builtin(name).unwrap();
        for key in SEMANTIC_KEYS {
            assert_eq!(
                theme.resolved_key(key),
                *key,
                "{name}: `{key}` is not defined"
            );
        }
    }
}

#[test]
fn ansi16_uses_only_ansi_colours() {
    let theme = Theme::builtin("ansi16").unwrap();
    let ansi = |c: Option<Color>| !matches!(c, Some(Color::Rgb(..)) | Some(Color::Indexed(_)));
    for key in theme.defined_keys() {
        let style = theme.style(key);
        assert!(
            ansi(style.fg) && ansi(style.bg),
            "ansi16: `{key}` is {style:?}"
        );
    }
}

#[test]
fn focus_stays_visible_without_colour() {
    for name in Theme::names(&[]) {
        let theme = Theme::builtin(&name).unwrap().with_depth(ColorDepth::None);
        let selection = theme.style("selection");
        assert!(
            selection.add_modifier.contains(Modifier::REVERSED),
            "{name}: selection is {selection:?}"
        );
        assert_eq!((selection.fg, selection.bg), (None, None), "{name}");
        for key in ["dialog.button.focused", "tab.active", "header.demo"] {
            let style = theme.style(key);
            assert!(
                !style.add_modifier.is_empty(),
                "{name}: `{key}` has no modifier"
            );
        }
        for key in theme.defined_keys() {
            let style = theme.style(key);
            assert_eq!(
                (style.fg, style.bg),
                (None, None),
                "{name}: `{key}` kept a colour"
            );
        }
    }
}

#[test]
fn bad_toml_names_the_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "broken",
        "[palette]\nbg = \"#000000\"\n\n[styles]\ntext = { fg = \"bg\" \n",
    );
    let err = load_err("broken", &[dir.path().to_path_buf()]);
    let message = err.to_string();
    let path = dir.path().join("broken.toml");
    assert!(message.contains(&path.display().to_string()), "{message}");
    assert!(
        matches!(err, ThemeError::BadFile { line: 5, .. }),
        "{message}"
    );
    assert!(message.contains("line 5"), "{message}");
}

#[test]
fn a_wrong_shape_names_the_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "shape",
        "[styles]\ntext = \"white\"\ntitle = 3\n",
    );
    let message = load_err("shape", &[dir.path().to_path_buf()]).to_string();
    assert!(message.contains("shape.toml"), "{message}");
    assert!(message.contains("line 3"), "{message}");
    assert!(message.contains("`title`"), "{message}");
}

#[test]
fn a_bad_palette_colour_names_the_entry() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "pal",
        "[palette]\nok = \"green\"\nbad = \"#12345\"\n",
    );
    let message = load_err("pal", &[dir.path().to_path_buf()]).to_string();
    assert!(message.contains("pal.toml, line 3"), "{message}");
    assert!(message.contains("`bad`"), "{message}");
}

#[test]
fn an_unknown_palette_reference_names_the_key_and_reference() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "typo",
        "[palette]\ngreen = \"#00ff00\"\n\n[styles]\n\"node.machine.running\" = \"grren\"\n",
    );
    let err = load_err("typo", &[dir.path().to_path_buf()]);
    let message = err.to_string();
    match err {
        ThemeError::UnknownColor {
            file,
            line,
            key,
            reference,
        } => {
            assert!(file.ends_with("typo.toml"), "{file}");
            assert_eq!(line, 5);
            assert_eq!(key, "node.machine.running");
            assert_eq!(reference, "grren");
        }
        other => panic!("expected UnknownColor, got {other}"),
    }
    assert!(message.contains("`grren`"), "{message}");
}

#[test]
fn fallback_goes_by_dotted_prefix_down_to_text() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "fallback",
        r##"
[styles]
text = "white"
node = "red"
"node.machine" = "green"
"node.machine.running" = { fg = "blue", modifiers = ["bold"] }
"node.system" = {}
"##,
    );
    let theme = Theme::load("fallback", &[dir.path().to_path_buf()]).unwrap();
    let fg = |key: &str| theme.style(key).fg;
    assert_eq!(fg("node.machine.running"), Some(Color::Blue));
    assert!(
        theme
            .style("node.machine.running")
            .add_modifier
            .contains(Modifier::BOLD)
    );
    assert_eq!(fg("node.machine.stopped"), Some(Color::Green));
    assert_eq!(fg("node.disk"), Some(Color::Red));
    // `{}` is an empty style that still stops the fallback.
    assert_eq!(theme.style("node.system.ready"), Style::default());
    assert_eq!(theme.resolved_key("node.system.ready"), "node.system");
    assert_eq!(fg("node"), Some(Color::Red));
    assert_eq!(fg("sync.failed"), Some(Color::Gray));
    assert_eq!(fg("nodes"), Some(Color::Gray), "a prefix must end at a dot");
    assert_eq!(theme.resolved_key("node.machine.stopped"), "node.machine");
    assert_eq!(theme.resolved_key("sync.failed"), "text");
}

#[test]
fn a_theme_without_text_falls_back_to_the_terminal_default() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "bare", "[styles]\ntitle = \"red\"\n");
    let theme = Theme::load("bare", &[dir.path().to_path_buf()]).unwrap();
    assert_eq!(theme.style("title").fg, Some(Color::Red));
    assert_eq!(theme.style("selection"), Style::default());
}

#[test]
fn inheritance_overrides_styles_and_recolours_through_the_palette() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "base",
        r##"
[palette]
good = "#00ff00"
[styles]
text = "white"
"status.ok" = "good"
"status.error" = "red"
"##,
    );
    write(
        dir.path(),
        "child",
        r##"
inherits = "base"
[palette]
good = "#0000ff"
[styles]
"status.error" = "magenta"
"##,
    );
    let dirs = [dir.path().to_path_buf()];
    let theme = Theme::load("child", &dirs).unwrap();
    assert_eq!(theme.name(), "child");
    // The parent's style, with the child's palette.
    assert_eq!(theme.style("status.ok").fg, Some(Color::Rgb(0, 0, 255)));
    assert_eq!(theme.style("status.error").fg, Some(Color::Magenta));
    assert_eq!(theme.style("text").fg, Some(Color::Gray));
    let base = Theme::load("base", &dirs).unwrap();
    assert_eq!(base.style("status.ok").fg, Some(Color::Rgb(0, 255, 0)));
}

#[test]
fn builtin_light_inherits_dark_styles_with_its_own_palette() {
    let dark = Theme::builtin("dark").unwrap();
    let light = Theme::builtin("light").unwrap();
    assert_eq!(
        dark.style("selection").add_modifier,
        light.style("selection").add_modifier
    );
    assert_ne!(dark.style("text").bg, light.style("text").bg);
}

#[test]
fn a_user_theme_can_extend_the_builtin_of_its_own_name() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "dark",
        "inherits = \"dark\"\n[palette]\naccent = \"#ff0000\"\n",
    );
    let dirs = [dir.path().to_path_buf()];
    let theme = Theme::load("dark", &dirs).unwrap();
    assert_eq!(
        theme.style("border.focused").fg,
        Some(Color::Rgb(255, 0, 0))
    );
    assert_eq!(
        theme.style("status.ok").fg,
        Theme::builtin("dark").unwrap().style("status.ok").fg
    );
    // The built-in light inherits the built-in dark, not the user's.
    let light = Theme::load("light", &dirs).unwrap();
    assert_ne!(
        light.style("border.focused").fg,
        Some(Color::Rgb(255, 0, 0))
    );
}

#[test]
fn an_inheritance_cycle_is_reported_with_its_chain() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "a",
        "inherits = \"b\"\n[styles]\ntext = \"red\"\n",
    );
    write(dir.path(), "b", "inherits = \"c\"\n");
    write(dir.path(), "c", "inherits = \"a\"\n");
    let err = load_err("a", &[dir.path().to_path_buf()]);
    assert!(
        matches!(&err, ThemeError::InheritanceCycle { chain } if chain == &["a", "b", "c", "a"]),
        "{err}"
    );
    assert!(err.to_string().contains("a -> b -> c -> a"), "{err}");

    write(dir.path(), "selfish", "inherits = \"selfish\"\n");
    let err = load_err("selfish", &[dir.path().to_path_buf()]);
    assert!(err.to_string().contains("names this theme itself"), "{err}");
}

#[test]
fn inheriting_a_missing_theme_names_the_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "orphan", "\ninherits = \"nope\"\n");
    let message = load_err("orphan", &[dir.path().to_path_buf()]).to_string();
    assert!(message.contains("orphan.toml, line 2"), "{message}");
    assert!(message.contains("nope"), "{message}");
}

#[test]
fn an_unknown_theme_lists_the_valid_names() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "mine", "[styles]\ntext = \"red\"\n");
    let dirs = [dir.path().to_path_buf()];
    assert_eq!(Theme::names(&dirs), ["ansi16", "dark", "light", "mine"]);
    let message = load_err("solarized", &dirs).to_string();
    assert!(message.contains("`solarized`"), "{message}");
    assert!(message.contains("ansi16, dark, light, mine"), "{message}");
    assert!(Theme::builtin("mine").is_err());
}

#[test]
fn the_first_directory_with_the_file_wins() {
    let first = tempfile::tempdir().unwrap();
    let second = tempfile::tempdir().unwrap();
    write(first.path(), "x", "[styles]\ntext = \"red\"\n");
    write(second.path(), "x", "[styles]\ntext = \"blue\"\n");
    let dirs = [first.path().to_path_buf(), second.path().to_path_buf()];
    let theme = Theme::load("x", &dirs).unwrap();
    assert_eq!(theme.style("text").fg, Some(Color::Red));
}

fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let vars: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    move |name| vars.get(name).cloned()
}

#[test]
fn colour_depth_detection() {
    let cases: &[(&[(&str, &str)], ColorDepth)] = &[
        (&[("TERM", "xterm-256color")], ColorDepth::Ansi256),
        (&[("TERM", "screen-256color")], ColorDepth::Ansi256),
        (&[("TERM", "tmux-256color")], ColorDepth::Ansi256),
        (&[("TERM", "xterm")], ColorDepth::Ansi16),
        (&[("TERM", "linux")], ColorDepth::Ansi16),
        (&[("TERM", "screen")], ColorDepth::Ansi16),
        (&[], ColorDepth::Ansi16),
        (&[("TERM", "dumb")], ColorDepth::None),
        (
            &[("TERM", "dumb"), ("COLORTERM", "truecolor")],
            ColorDepth::None,
        ),
        (
            &[("TERM", "xterm-256color"), ("COLORTERM", "truecolor")],
            ColorDepth::TrueColor,
        ),
        (
            &[("TERM", "xterm"), ("COLORTERM", "24bit")],
            ColorDepth::TrueColor,
        ),
        (
            &[("TERM", "xterm-256color"), ("COLORTERM", "yes")],
            ColorDepth::Ansi256,
        ),
        (&[("TERM", "xterm-direct")], ColorDepth::TrueColor),
        (
            &[("TERM", "xterm-256color"), ("NO_COLOR", "1")],
            ColorDepth::None,
        ),
        (
            &[
                ("TERM", "xterm-256color"),
                ("COLORTERM", "truecolor"),
                ("NO_COLOR", "1"),
            ],
            ColorDepth::None,
        ),
        // An empty NO_COLOR does not count (no-color.org).
        (
            &[("TERM", "xterm-256color"), ("NO_COLOR", "")],
            ColorDepth::Ansi256,
        ),
        // GNU screen cannot pass 24-bit colour; COLORTERM there came from outside.
        (
            &[
                ("TERM", "screen-256color"),
                ("COLORTERM", "truecolor"),
                ("STY", "1.pts-0.host"),
            ],
            ColorDepth::Ansi256,
        ),
        // tmux converts RGB itself when its outer terminal lacks it.
        (
            &[
                ("TERM", "tmux-256color"),
                ("COLORTERM", "truecolor"),
                ("TMUX", "/tmp/tmux-1000/default,1,0"),
            ],
            ColorDepth::TrueColor,
        ),
    ];
    for (vars, expected) in cases {
        assert_eq!(ColorDepth::detect(env(vars)), *expected, "{vars:?}");
    }
}

#[test]
fn colors_override_parses() {
    assert_eq!(
        "truecolor".parse::<ColorDepth>().unwrap(),
        ColorDepth::TrueColor
    );
    assert_eq!(
        "24bit".parse::<ColorDepth>().unwrap(),
        ColorDepth::TrueColor
    );
    assert_eq!("256".parse::<ColorDepth>().unwrap(), ColorDepth::Ansi256);
    assert_eq!("16".parse::<ColorDepth>().unwrap(), ColorDepth::Ansi16);
    assert_eq!("none".parse::<ColorDepth>().unwrap(), ColorDepth::None);
    let err = "88".parse::<ColorDepth>().unwrap_err().to_string();
    assert!(
        err.contains("`88`") && err.contains("truecolor, 256, 16 or none"),
        "{err}"
    );
    for depth in [
        ColorDepth::TrueColor,
        ColorDepth::Ansi256,
        ColorDepth::Ansi16,
        ColorDepth::None,
    ] {
        assert_eq!(depth.to_string().parse::<ColorDepth>().unwrap(), depth);
    }
}

#[test]
fn rgb_degrades_to_256() {
    let to256 = |c| ColorDepth::Ansi256.adapt(c);
    // Exactly on the cube: 255 -> 5, 135 -> 2, 0 -> 0.
    assert_eq!(to256(Color::Rgb(255, 135, 0)), Some(Color::Indexed(208)));
    // Near-grey goes to the grey ramp, which is finer than the cube's greys.
    assert_eq!(to256(Color::Rgb(30, 30, 30)), Some(Color::Indexed(234)));
    assert_eq!(
        to256(Color::Rgb(0x1b, 0x1e, 0x24)),
        Some(Color::Indexed(234))
    );
    // A colour between cube steps: 0x61 -> 95 (1), 0xaf -> 175 (3), 0xef -> 255 (5).
    assert_eq!(
        to256(Color::Rgb(0x61, 0xaf, 0xef)),
        Some(Color::Indexed(75))
    );
    assert_eq!(to256(Color::Rgb(0, 0, 0)), Some(Color::Indexed(16)));
    assert_eq!(to256(Color::Rgb(255, 255, 255)), Some(Color::Indexed(231)));
    // Named and indexed colours and reset pass through.
    assert_eq!(to256(Color::Red), Some(Color::Red));
    assert_eq!(to256(Color::Indexed(100)), Some(Color::Indexed(100)));
    assert_eq!(to256(Color::Reset), Some(Color::Reset));
}

#[test]
fn rgb_degrades_to_16_keeping_the_hue() {
    let to16 = |c| ColorDepth::Ansi16.adapt(c);
    assert_eq!(to16(Color::Rgb(255, 0, 0)), Some(Color::Red));
    assert_eq!(to16(Color::Rgb(0x7e, 0xc1, 0x6e)), Some(Color::LightGreen));
    assert_eq!(to16(Color::Rgb(0x3b, 0x81, 0x28)), Some(Color::Green));
    assert_eq!(to16(Color::Rgb(0xe5, 0xc0, 0x7b)), Some(Color::LightYellow));
    assert_eq!(to16(Color::Rgb(0x61, 0xaf, 0xef)), Some(Color::LightBlue));
    assert_eq!(to16(Color::Rgb(0x1b, 0x1e, 0x24)), Some(Color::Black));
    assert_eq!(to16(Color::Rgb(0xfa, 0xfa, 0xfa)), Some(Color::White));
    // Indexed colours: the low 16 become names, the rest go through their RGB.
    assert_eq!(to16(Color::Indexed(9)), Some(Color::LightRed));
    assert_eq!(to16(Color::Indexed(196)), Some(Color::Red));
    assert_eq!(to16(Color::Indexed(244)), Some(Color::DarkGray));
    assert_eq!(to16(Color::Cyan), Some(Color::Cyan));
    assert_eq!(ColorDepth::None.adapt(Color::Cyan), None);
    assert_eq!(
        ColorDepth::TrueColor.adapt(Color::Rgb(1, 2, 3)),
        Some(Color::Rgb(1, 2, 3))
    );
}

#[test]
fn with_depth_degrades_the_builtin_dark_and_can_go_back() {
    let dark = Theme::builtin("dark").unwrap();
    assert_eq!(dark.depth(), ColorDepth::TrueColor);
    assert_eq!(
        dark.style("status.ok").fg,
        Some(Color::Rgb(0x7e, 0xc1, 0x6e))
    );

    let at256 = dark.clone().with_depth(ColorDepth::Ansi256);
    assert_eq!(at256.depth(), ColorDepth::Ansi256);
    assert!(matches!(
        at256.style("status.ok").fg,
        Some(Color::Indexed(_))
    ));
    assert_eq!(at256.style("text").bg, Some(Color::Indexed(234)));

    let at16 = dark.clone().with_depth(ColorDepth::Ansi16);
    assert_eq!(at16.style("status.ok").fg, Some(Color::LightGreen));
    assert_eq!(at16.style("status.error").fg, Some(Color::LightRed));
    assert_eq!(at16.style("status.warn").fg, Some(Color::LightYellow));
    assert_eq!(at16.style("text").bg, Some(Color::Black));
    // Modifiers survive every depth.
    assert!(
        at16.style("status.error")
            .add_modifier
            .contains(Modifier::BOLD)
    );

    let back = at16.with_depth(ColorDepth::TrueColor);
    assert_eq!(back.style("status.ok"), dark.style("status.ok"));
}
