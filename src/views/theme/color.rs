//! Colours: the terminal's colour depth, the colour syntax of theme files, and degrading a
//! colour to what the terminal can show. Pure functions over plain values; nothing here reads
//! the environment except [`ColorDepth::detect`]'s injected look-up.

use std::fmt;
use std::str::FromStr;

use ratatui::style::{Color, Style};

use super::ThemeError;

/// How many colours the terminal can show. Themes are written in true colour (or ANSI names)
/// and degraded to this with [`Theme::with_depth`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ColorDepth {
    /// 24-bit `#rrggbb` colours.
    TrueColor,
    /// The xterm 256-colour palette.
    Ansi256,
    /// The 16 ANSI colours, whatever the terminal's palette makes of them.
    Ansi16,
    /// No colours at all; modifiers (bold, reversed, ...) still apply.
    None,
}

impl ColorDepth {
    /// Detect the depth from the environment, `env` being a variable look-up (inject
    /// `|k| std::env::var(k).ok()`; tests pass a table).
    ///
    /// In order: `NO_COLOR` non-empty gives `None`; `TERM=dumb` gives `None`; `COLORTERM`
    /// `truecolor`/`24bit` gives `TrueColor`; a `TERM` containing `256color` (xterm-256color,
    /// screen-256color, tmux-256color) gives `Ansi256`; anything else gives `Ansi16`.
    pub fn detect(env: impl Fn(&str) -> Option<String>) -> ColorDepth {
        let var = |name: &str| env(name).filter(|v| !v.is_empty());
        // https://no-color.org: present and non-empty disables colour, whatever its value.
        if var("NO_COLOR").is_some() {
            return ColorDepth::None;
        }
        let term = var("TERM").map(|t| t.to_ascii_lowercase());
        // `dumb` is a terminal declaring it has no capabilities (Emacs shells, some CI
        // runners); it outranks a COLORTERM inherited from elsewhere.
        if term.as_deref() == Some("dumb") {
            return ColorDepth::None;
        }
        // GNU screen (STY set, and not a tmux inside it) before 5.0 cannot pass 24-bit colour
        // through, and COLORTERM there was inherited from the outer terminal. tmux, by
        // contrast, converts RGB itself when its outer terminal lacks it, so trusting
        // COLORTERM inside tmux degrades gracefully.
        let gnu_screen = var("STY").is_some() && var("TMUX").is_none();
        if !gnu_screen {
            let colorterm = var("COLORTERM").map(|c| c.to_ascii_lowercase());
            if matches!(colorterm.as_deref(), Some("truecolor" | "24bit")) {
                return ColorDepth::TrueColor;
            }
            if term.as_deref().is_some_and(|t| t.ends_with("-direct")) {
                return ColorDepth::TrueColor;
            }
        }
        match term {
            Some(t) if t.contains("256color") => ColorDepth::Ansi256,
            // An unset TERM is not a colourless terminal: it is a stripped environment
            // (`ssh host cmd` without `-t`, `env -i`, some sudo set-ups). crossterm writes ANSI
            // sequences without consulting terminfo, so if the dashboard draws at all, the
            // terminal understands SGR, and the 16 basic colours are the safest subset of it.
            // `TERM=dumb` and NO_COLOR remain the ways to say "no colour".
            _ => ColorDepth::Ansi16,
        }
    }

    /// [`ColorDepth::detect`] over the process environment.
    pub fn from_env() -> ColorDepth {
        ColorDepth::detect(|name| std::env::var(name).ok())
    }

    /// `color` as this depth can show it: unchanged, converted to the nearest colour this
    /// depth has, or `None` (leave the terminal's colour) for [`ColorDepth::None`].
    pub fn adapt(self, color: Color) -> Option<Color> {
        match (self, color) {
            (ColorDepth::None, _) => None,
            (_, Color::Reset) | (ColorDepth::TrueColor, _) => Some(color),
            (ColorDepth::Ansi256, Color::Rgb(r, g, b)) => Some(Color::Indexed(rgb_to_256(r, g, b))),
            (ColorDepth::Ansi256, _) => Some(color),
            (ColorDepth::Ansi16, Color::Indexed(i)) if i < 16 => Some(ANSI16[usize::from(i)]),
            (ColorDepth::Ansi16, Color::Indexed(i)) => {
                let (r, g, b) = index_to_rgb(i);
                Some(rgb_to_16(r, g, b))
            }
            (ColorDepth::Ansi16, Color::Rgb(r, g, b)) => Some(rgb_to_16(r, g, b)),
            (ColorDepth::Ansi16, _) => Some(color),
        }
    }

    pub(super) fn adapt_style(self, style: Style) -> Style {
        let mut out = style;
        out.fg = style.fg.and_then(|c| self.adapt(c));
        out.bg = style.bg.and_then(|c| self.adapt(c));
        out.underline_color = style.underline_color.and_then(|c| self.adapt(c));
        out
    }
}

impl fmt::Display for ColorDepth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ColorDepth::TrueColor => "truecolor",
            ColorDepth::Ansi256 => "256",
            ColorDepth::Ansi16 => "16",
            ColorDepth::None => "none",
        })
    }
}

/// Parses the `--colors` override: `truecolor` (or `24bit`), `256`, `16`, `none`.
impl FromStr for ColorDepth {
    type Err = ThemeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "truecolor" | "24bit" => Ok(ColorDepth::TrueColor),
            "256" => Ok(ColorDepth::Ansi256),
            "16" => Ok(ColorDepth::Ansi16),
            "none" => Ok(ColorDepth::None),
            _ => Err(ThemeError::UnknownColorDepth(s.to_string())),
        }
    }
}

/// The 16 ANSI colours in index order, as ratatui names them (ratatui's `Gray` is ANSI
/// white, its `DarkGray` bright black and its `White` bright white).
pub(crate) const ANSI16: [Color; 16] = [
    Color::Black,
    Color::Red,
    Color::Green,
    Color::Yellow,
    Color::Blue,
    Color::Magenta,
    Color::Cyan,
    Color::Gray,
    Color::DarkGray,
    Color::LightRed,
    Color::LightGreen,
    Color::LightYellow,
    Color::LightBlue,
    Color::LightMagenta,
    Color::LightCyan,
    Color::White,
];

/// xterm's default RGB for the 16 ANSI colours, used to place indexed colours.
pub(super) const ANSI16_RGB: [(u8, u8, u8); 16] = [
    (0, 0, 0),
    (205, 0, 0),
    (0, 205, 0),
    (205, 205, 0),
    (0, 0, 238),
    (205, 0, 205),
    (0, 205, 205),
    (229, 229, 229),
    (127, 127, 127),
    (255, 0, 0),
    (0, 255, 0),
    (255, 255, 0),
    (92, 92, 255),
    (255, 0, 255),
    (0, 255, 255),
    (255, 255, 255),
];

/// A colour literal: `#rrggbb`, an ANSI name, `reset`, or an index `0`..`255`.
pub(super) fn parse_color(text: &str) -> Option<Color> {
    if let Some(hex) = text.strip_prefix('#') {
        if hex.len() != 6 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let channel = |i: usize| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok();
        return Some(Color::Rgb(channel(0)?, channel(2)?, channel(4)?));
    }
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return text.parse::<u8>().ok().map(Color::Indexed);
    }
    let index = match text {
        "reset" => return Some(Color::Reset),
        "black" => 0,
        "red" => 1,
        "green" => 2,
        "yellow" => 3,
        "blue" => 4,
        "magenta" => 5,
        "cyan" => 6,
        "white" | "gray" | "grey" => 7,
        "bright-black" | "dark-gray" | "dark-grey" => 8,
        "bright-red" => 9,
        "bright-green" => 10,
        "bright-yellow" => 11,
        "bright-blue" => 12,
        "bright-magenta" => 13,
        "bright-cyan" => 14,
        "bright-white" => 15,
        _ => return None,
    };
    Some(ANSI16[index])
}

/// The channel values of the xterm 6x6x6 colour cube.
pub(super) const CUBE: [u8; 6] = [0, 95, 135, 175, 215, 255];

pub(super) fn index_to_rgb(index: u8) -> (u8, u8, u8) {
    match index {
        0..=15 => ANSI16_RGB[usize::from(index)],
        16..=231 => {
            let i = index - 16;
            (
                CUBE[usize::from(i / 36)],
                CUBE[usize::from(i / 6 % 6)],
                CUBE[usize::from(i % 6)],
            )
        }
        _ => {
            let level = 8 + 10 * (index - 232);
            (level, level, level)
        }
    }
}

pub(super) fn distance(a: (u8, u8, u8), b: (u8, u8, u8)) -> u32 {
    let d = |x: u8, y: u8| (i32::from(x) - i32::from(y)).unsigned_abs().pow(2);
    d(a.0, b.0) + d(a.1, b.1) + d(a.2, b.2)
}

/// The nearest xterm-256 colour: the closer of the nearest cube colour and the nearest step
/// of the grey ramp (232..255). Indices 0..15 are skipped: terminals redefine them.
pub(super) fn rgb_to_256(r: u8, g: u8, b: u8) -> u8 {
    // Cube levels are 0, 95, then steps of 40; the thresholds are their midpoints.
    let level = |v: u8| -> u8 {
        match v {
            0..48 => 0,
            48..115 => 1,
            _ => (v - 35) / 40,
        }
    };
    let (qr, qg, qb) = (level(r), level(g), level(b));
    let cube = 16 + 36 * qr + 6 * qg + qb;
    let cube_rgb = index_to_rgb(cube);
    let average = ((u16::from(r) + u16::from(g) + u16::from(b)) / 3) as u8;
    let step = if average > 238 {
        23
    } else {
        average.saturating_sub(3) / 10
    };
    let grey = 232 + step;
    if distance(index_to_rgb(grey), (r, g, b)) < distance(cube_rgb, (r, g, b)) {
        grey
    } else {
        cube
    }
}

/// The nearest of the 16 ANSI colours by hue, then lightness.
///
/// Plain RGB distance to xterm's 16 colours sends most theme colours (soft greens, ambers,
/// pinks) to white or grey, and a dashboard whose "running" and "failed" both turn grey has
/// lost its meaning. So: near-greys pick black, bright black, white or bright white by
/// lightness; other colours keep their hue sector (red, yellow, green, cyan, blue, magenta)
/// and take the bright variant when light.
pub(super) fn rgb_to_16(r: u8, g: u8, b: u8) -> Color {
    let (r16, g16, b16) = (i32::from(r), i32::from(g), i32::from(b));
    let max = r16.max(g16).max(b16);
    let min = r16.min(g16).min(b16);
    let chroma = max - min;
    let lightness = (max + min) / 2;
    if chroma < 40 || max < 60 {
        // Midpoints between xterm's 0, 127, 229 and 255.
        return match lightness {
            0..64 => Color::Black,
            64..178 => Color::DarkGray,
            178..242 => Color::Gray,
            _ => Color::White,
        };
    }
    let c = chroma as f32;
    let hue = if max == r16 {
        60.0 * ((g16 - b16) as f32 / c).rem_euclid(6.0)
    } else if max == g16 {
        60.0 * ((b16 - r16) as f32 / c + 2.0)
    } else {
        60.0 * ((r16 - g16) as f32 / c + 4.0)
    };
    // Sectors are skewed from the even 60 degrees: orange reads as a warning (yellow), and
    // pinkish reds as red.
    let base = if !(20.0..330.0).contains(&hue) {
        1 // red
    } else if hue < 70.0 {
        3 // yellow
    } else if hue < 165.0 {
        2 // green
    } else if hue < 200.0 {
        6 // cyan
    } else if hue < 260.0 {
        4 // blue
    } else {
        5 // magenta
    };
    let bright = if lightness > 140 { 8 } else { 0 };
    ANSI16[base + bright]
}
