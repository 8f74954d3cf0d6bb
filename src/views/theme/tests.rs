//! Unit tests of the module above.

use super::color::*;
use super::file::*;
use super::*;

#[test]
fn parses_colour_literals() {
    assert_eq!(parse_color("#ff8000"), Some(Color::Rgb(255, 128, 0)));
    assert_eq!(parse_color("#ff80"), None);
    assert_eq!(parse_color("#gg0000"), None);
    assert_eq!(parse_color("238"), Some(Color::Indexed(238)));
    assert_eq!(parse_color("256"), None);
    assert_eq!(parse_color("white"), Some(Color::Gray));
    assert_eq!(parse_color("bright-white"), Some(Color::White));
    assert_eq!(parse_color("dark-gray"), Some(Color::DarkGray));
    assert_eq!(parse_color("bright-black"), Some(Color::DarkGray));
    assert_eq!(parse_color("reset"), Some(Color::Reset));
    assert_eq!(parse_color("Red"), None);
}

#[test]
fn cube_and_grey_ramp_round_trip() {
    for index in 16..=255u8 {
        let (r, g, b) = index_to_rgb(index);
        let back = rgb_to_256(r, g, b);
        // Cube greys (16, 59, ...) and ramp entries can coincide in RGB; either is exact.
        assert_eq!(
            index_to_rgb(back),
            (r, g, b),
            "index {index} came back as {back}"
        );
    }
}

#[test]
fn sixteen_colour_hues() {
    assert_eq!(rgb_to_16(0xe0, 0x6c, 0x75), Color::LightRed);
    assert_eq!(rgb_to_16(0x7e, 0xc1, 0x6e), Color::LightGreen);
    assert_eq!(rgb_to_16(0x2e, 0x7d, 0x32), Color::Green);
    assert_eq!(rgb_to_16(0xff, 0x88, 0x00), Color::Yellow);
    assert_eq!(rgb_to_16(0x61, 0xaf, 0xef), Color::LightBlue);
    assert_eq!(rgb_to_16(0xc6, 0x78, 0xdd), Color::LightMagenta);
    assert_eq!(rgb_to_16(0x0f, 0x7f, 0x8c), Color::Cyan);
    assert_eq!(rgb_to_16(0x1b, 0x1e, 0x24), Color::Black);
    assert_eq!(rgb_to_16(0x80, 0x80, 0x80), Color::DarkGray);
    assert_eq!(rgb_to_16(0xc8, 0xcc, 0xd4), Color::Gray);
    assert_eq!(rgb_to_16(0xfa, 0xfa, 0xfa), Color::White);
}

#[test]
fn positions_count_lines_and_characters() {
    let parser = FileParser {
        label: Arc::from("x"),
        text: "a = 1\n\u{e9}b = 2\n",
    };
    assert_eq!(parser.position(0), (1, 1));
    assert_eq!(parser.position(6), (2, 1));
    // The é is two bytes but one column.
    assert_eq!(parser.position(8), (2, 2));
    assert_eq!(parser.position(1000), (3, 1));
}

#[test]
fn nested_and_quoted_keys_mean_the_same() {
    let text = r##"
        [styles]
        "node.machine" = "red"
        node.system = { fg = "green", ready = "blue" }
        [styles.sync]
        fg = "yellow"
        failed = { bg = "red", modifiers = ["bold"] }
    "##;
    let raw = parse_file("t.toml", text).map_err(|e| e.to_string());
    let keys: Vec<String> = raw
        .map(|r| r.styles.into_keys().collect())
        .unwrap_or_default();
    assert_eq!(
        keys,
        [
            "node.machine",
            "node.system",
            "node.system.ready",
            "sync",
            "sync.failed"
        ]
    );
}

#[test]
fn a_key_defined_twice_is_an_error() {
    let text = "[styles]\n\"node.machine\" = \"red\"\nnode.machine = { fg = \"blue\" }\n";
    let message = parse_file("t.toml", text).err().map(|e| e.to_string());
    assert!(
        message
            .as_deref()
            .is_some_and(|m| m.contains("`node.machine` is defined twice")),
        "{message:?}"
    );
}

#[test]
fn unknown_modifier_names_its_line() {
    let text = "[styles]\ntext = \"red\"\ntitle = { modifiers = [\"blink\"] }\n";
    let message = parse_file("t.toml", text).err().map(|e| e.to_string());
    assert!(
        message
            .as_deref()
            .is_some_and(|m| m.contains("line 3") && m.contains("`blink`")),
        "{message:?}"
    );
}

#[test]
fn theme_names_cannot_escape_the_folder() {
    assert!(!valid_name("../etc/passwd"));
    assert!(!valid_name(""));
    assert!(valid_name("solarized-dark_2"));
    assert!(matches!(
        Theme::load("../dark", &[]),
        Err(ThemeError::UnknownTheme { .. })
    ));
}
