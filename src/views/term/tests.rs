//! Emulator behaviour on real programs' output, on hostile output, and the widget.

use std::time::{Duration, Instant};

use ratatui::buffer::Buffer;
use ratatui::layout::{Position, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::widgets::Widget;

use super::*;

/// A stall guard, not a measurement (the `term` bench measures speed): a feed that takes
/// seconds is the quadratic blow-up older vt100 releases had (`ESC[65535@` took over a
/// second in 0.16, several on a loaded machine). 250 ms was tried and failed at 261 ms on a
/// 2-core machine at load 17 with nothing wrong.
const CEILING: Duration = Duration::from_secs(2);

fn timed_feed(e: &mut Emulator, bytes: &[u8]) {
    let start = Instant::now();
    e.feed(bytes);
    let took = start.elapsed();
    let shown = String::from_utf8_lossy(&bytes[..bytes.len().min(40)]);
    assert!(took < CEILING, "feeding {shown:?}… took {took:?}");
}

/// xorshift64*: deterministic bytes without a dependency.
struct Prng(u64);

impl Prng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(n + 8);
        while out.len() < n {
            out.extend_from_slice(&self.next().to_le_bytes());
        }
        out.truncate(n);
        out
    }
}

fn emulators() -> Vec<Emulator> {
    vec![
        Emulator::new(24, 80, 1000),
        Emulator::new(2, 2, 0),
        Emulator::new(MAX_SIZE, MAX_SIZE, 100),
    ]
}

#[test]
fn huge_counts_are_cheap() {
    for mut e in emulators() {
        for seq in [
            "\x1b[65535@",  // ICH
            "\x1b[65535P",  // DCH
            "\x1b[65535L",  // IL
            "\x1b[65535M",  // DL
            "\x1b[65535X",  // ECH
            "\x1b[65535S",  // SU
            "\x1b[65535T",  // SD
            "x\x1b[65535b", // REP
            "\x1b[65535;65535H",
            "\x1b[65535;65535r",
            "\x1b[99999999999999999999A",
            "\x1b[99999999999999999999;99999999999999999999H",
            "\x1b[18446744073709551616C",
        ] {
            timed_feed(&mut e, seq.as_bytes());
            timed_feed(&mut e, b"after");
        }
        let _ = e.snapshot();
    }
}

#[test]
fn huge_parameter_lists() {
    let mut e = Emulator::new(24, 80, 100);
    let sgr = format!("\x1b[{}m", "38;5;196;".repeat(100_000));
    timed_feed(&mut e, sgr.as_bytes());
    let ones = format!("\x1b[{}mbold?", "1;".repeat(200_000));
    timed_feed(&mut e, ones.as_bytes());
    let colons = format!("\x1b[38:2:{}m", "255:".repeat(100_000));
    timed_feed(&mut e, colons.as_bytes());
    let digits = format!("\x1b[{}m", "9".repeat(1_000_000));
    timed_feed(&mut e, digits.as_bytes());
    timed_feed(&mut e, b"\x1b[0m\r\nok");
    assert!(e.snapshot().row_text(1).contains("ok"));
}

#[test]
fn nested_and_unterminated_strings() {
    let mut e = Emulator::new(24, 80, 100);
    for opener in [
        "\x1b]0;",
        "\x1b]2;",
        "\x1bP",
        "\x1b_",
        "\x1b^",
        "\x1bX",
        "\x1b]52;c;",
    ] {
        timed_feed(&mut e, opener.repeat(10_000).as_bytes());
        timed_feed(
            &mut e,
            format!("{opener}{}", "a".repeat(1_000_000)).as_bytes(),
        );
        // Terminate whatever is open, then show text.
        timed_feed(&mut e, b"\x1b\\\x07\x1b[H\x1b[2Jvisible");
        assert_eq!(e.snapshot().row_text(0), "visible", "after {opener:?}");
    }
}

#[test]
fn random_bytes_never_panic() {
    let mut rng = Prng(0x5eed_1e61_0c0d_e500);
    let data = rng.bytes(1 << 20);
    for mut e in emulators() {
        for chunk in data.chunks(16 * 1024) {
            timed_feed(&mut e, chunk);
        }
        let frame = e.snapshot();
        let (rows, cols) = frame.size();
        assert_eq!((rows, cols), e.size());
        let mut buf = Buffer::empty(Rect::new(0, 0, 100, 30));
        TermView::new(&frame).render(buf.area, &mut buf);
        assert_eq!(e.resets(), 0, "vt100 panicked on random input");
    }
}

#[test]
fn random_escape_heavy_bytes_never_panic() {
    // Random bytes rarely form sequences; bias towards ESC, '[', digits and ';'.
    let alphabet = b"\x1b\x1b\x1b[[[]];;;0123456789?hlmHJK@PLMXrbABCD\x07\x08\r\n\t \xe7\x95\x8c";
    let mut rng = Prng(42);
    let data: Vec<u8> = (0..(1 << 20))
        .map(|_| alphabet[(rng.next() % alphabet.len() as u64) as usize])
        .collect();
    for mut e in emulators() {
        for chunk in data.chunks(4096) {
            timed_feed(&mut e, chunk);
        }
        e.resize(3, 7);
        for chunk in data.chunks(4096).take(32) {
            timed_feed(&mut e, chunk);
        }
        let _ = e.snapshot();
    }
}

const MIXED: &str = "plain ascii\r\n\x1b[1;31mé界🦀\x1b[0m na\u{308}ive \
                     \x1b[38;2;10;20;30mrgb\x1b[48;5;200mbg\x1b[m\r\n\x1b[3;5Hat 3,5 \
                     \x1b]2;tïtle\x07\x1b[?2004h\x1b[4mü\x1b[24m\u{fe0f}end";

fn one_feed(bytes: &[u8]) -> TermFrame {
    let mut e = Emulator::new(10, 30, 10);
    e.feed(bytes);
    e.snapshot()
}

#[test]
fn splits_at_every_offset_give_the_same_screen() {
    let bytes = MIXED.as_bytes();
    let whole = one_feed(bytes);
    assert_eq!(whole.row_text(0), "plain ascii");
    assert!(
        whole.row_text(1).starts_with("é界🦀 na\u{308}ive rgbbg"),
        "{:?}",
        whole.row_text(1)
    );
    assert_eq!(whole.title, "tïtle");
    for at in 0..=bytes.len() {
        let mut e = Emulator::new(10, 30, 10);
        e.feed(&bytes[..at]);
        e.feed(&bytes[at..]);
        assert_eq!(e.snapshot(), whole, "split at byte {at}");
    }
    let mut e = Emulator::new(10, 30, 10);
    for b in bytes {
        e.feed(std::slice::from_ref(b));
    }
    assert_eq!(e.snapshot(), whole, "one byte at a time");
}

#[test]
fn tiny_and_zero_resizes_are_clamped() {
    let mut e = Emulator::new(24, 80, 100);
    e.feed(b"some text that wraps around a lot\r\n\x1b[10;70Hfar");
    for (rows, cols, want) in [
        (1, 80, (2, 80)),
        (24, 1, (24, 2)),
        (1, 1, (2, 2)),
        (0, 0, (2, 2)),
        (u16::MAX, 3, (MAX_SIZE, 3)),
        (24, 80, (24, 80)),
    ] {
        e.resize(rows, cols);
        assert_eq!(e.size(), want, "resize to {rows}x{cols}");
        e.feed("more 界 text\r\n\x1b[65535@\x1b[999;999Hx".as_bytes());
        let frame = e.snapshot();
        assert_eq!(frame.size(), want);
        let (r, c) = frame.cursor.unwrap_or((0, 0));
        assert!(r < want.0 && c < want.1);
    }
}

#[test]
fn sgr_red_then_default() {
    let mut e = Emulator::new(24, 80, 0);
    e.feed(b"\x1b[31mred\x1b[0m plain");
    let f = e.snapshot();
    assert_eq!(f.row_text(0), "red plain");
    for col in 0..3 {
        let cell = f.cell(0, col).unwrap();
        assert_eq!(cell.fg, Color::Red, "col {col}");
        assert_eq!(cell.bg, Color::Reset);
    }
    for col in 3..9 {
        let cell = f.cell(0, col).unwrap();
        assert_eq!(cell.fg, Color::Reset, "col {col}");
        assert_eq!(cell.modifier, Modifier::empty());
    }
}

#[test]
fn attributes_and_colour_kinds() {
    let mut e = Emulator::new(4, 40, 0);
    e.feed(b"\x1b[1;3;4;7mA\x1b[0;2mB\x1b[0;38;5;208;48;2;1;2;3mC\x1b[0;94;101mD");
    let f = e.snapshot();
    let a = f.cell(0, 0).unwrap();
    assert_eq!(
        a.modifier,
        Modifier::BOLD | Modifier::ITALIC | Modifier::UNDERLINED | Modifier::REVERSED
    );
    assert_eq!(f.cell(0, 1).unwrap().modifier, Modifier::DIM);
    let c = f.cell(0, 2).unwrap();
    assert_eq!((c.fg, c.bg), (Color::Indexed(208), Color::Rgb(1, 2, 3)));
    let d = f.cell(0, 3).unwrap();
    assert_eq!((d.fg, d.bg), (Color::LightBlue, Color::LightRed));
}

#[test]
fn cursor_addressing() {
    let mut e = Emulator::new(24, 80, 0);
    // `tput cup 5 10` then X.
    e.feed(b"\x1b[6;11HX");
    let f = e.snapshot();
    assert_eq!(f.symbol(f.cell(5, 10).unwrap()), "X");
    assert_eq!(f.row_text(5), format!("{}X", " ".repeat(10)));
    assert_eq!(f.cursor, Some((5, 11)));
    e.feed(b"\x1b[?25l");
    assert_eq!(e.cursor(), None);
    assert_eq!(e.snapshot().cursor, None);
    e.feed(b"\x1b[?25h");
    assert_eq!(e.cursor(), Some((5, 11)));
}

#[test]
fn alternate_screen_restores_the_primary() {
    let mut e = Emulator::new(10, 40, 100);
    e.feed(b"$ ls\r\nfile-a  file-b\r\n$ vi notes");
    let before = e.snapshot();
    assert!(!before.alternate_screen);
    e.feed(b"\x1b[?1049h\x1b[H\x1b[2J~\r\n~\r\n\x1b[7m\"notes\" [New]\x1b[m\x1b[?1h");
    let inside = e.snapshot();
    assert!(inside.alternate_screen);
    assert!(inside.application_cursor);
    assert_eq!(inside.row_text(0), "~");
    assert_eq!(inside.row_text(2), "\"notes\" [New]");
    e.feed(b"\x1b[?1l\x1b[?1049l");
    let after = e.snapshot();
    assert!(!after.alternate_screen);
    assert!(!after.application_cursor);
    assert_eq!(after.row_text(0), "$ ls");
    assert_eq!(after.row_text(1), "file-a  file-b");
    assert_eq!(after.row_text(2), "$ vi notes");
    assert_eq!(after.cursor, before.cursor);
}

#[test]
fn scrollback_after_200_lines() {
    let mut e = Emulator::new(10, 40, 1000);
    for i in 0..200 {
        e.feed(format!("line {i}\r\n").as_bytes());
    }
    assert_eq!(e.snapshot().row_text(0), "line 191");
    assert_eq!(e.scrollback_len(), 191);
    e.scroll_up(10);
    assert_eq!(e.scroll_offset(), 10);
    let f = e.snapshot();
    assert_eq!(f.row_text(0), "line 181");
    assert_eq!(f.cursor, None, "no cursor while scrolled back");
    assert_eq!((f.scroll_offset, f.scrollback_len), (10, 191));
    e.scroll_up(10_000);
    assert_eq!(e.scroll_offset(), 191);
    assert_eq!(e.snapshot().row_text(0), "line 0");
    e.scroll_down(1);
    assert_eq!(e.snapshot().row_text(0), "line 1");
    e.scroll_reset();
    assert_eq!(e.snapshot().row_text(0), "line 191");
    assert!(e.snapshot().cursor.is_some());

    let mut small = Emulator::new(10, 40, 50);
    for i in 0..200 {
        small.feed(format!("line {i}\r\n").as_bytes());
    }
    assert_eq!(small.scrollback_len(), 50);
}

#[test]
fn input_modes_toggle() {
    let mut e = Emulator::new(5, 20, 0);
    assert!(!e.bracketed_paste());
    e.feed(b"\x1b[?2004h");
    assert!(e.bracketed_paste());
    assert!(e.snapshot().bracketed_paste);
    e.feed(b"\x1b[?2004l");
    assert!(!e.bracketed_paste());
    e.feed(b"\x1b[?1h");
    assert!(e.application_cursor());
    e.feed(b"\x1b[?1l");
    assert!(!e.application_cursor());
}

#[test]
fn wide_characters_take_two_cells() {
    let mut e = Emulator::new(3, 10, 0);
    e.feed("a界b".as_bytes());
    let f = e.snapshot();
    let wide = f.cell(0, 1).unwrap();
    assert!(wide.wide && !wide.continuation);
    assert_eq!(f.symbol(wide), "界");
    assert!(f.cell(0, 2).unwrap().continuation);
    assert_eq!(f.symbol(f.cell(0, 3).unwrap()), "b");
    assert_eq!(f.cursor, Some((0, 4)));
    assert_eq!(f.row_text(0), "a界b");
}

fn render(frame: &TermFrame, area: Rect) -> (Buffer, Option<Position>) {
    let mut buf = Buffer::empty(Rect::new(0, 0, area.right() + 2, area.bottom() + 2));
    let cursor = TermView::new(frame).render_with_cursor(area, &mut buf);
    (buf, cursor)
}

fn line(buf: &Buffer, y: u16) -> String {
    (0..buf.area.width)
        .map(|x| buf[(x, y)].symbol().to_string())
        .collect()
}

#[test]
fn view_draws_colours_attributes_and_cursor() {
    let mut e = Emulator::new(4, 12, 0);
    e.feed(b"\x1b[31mred\x1b[0m \x1b[1;7mBI\x1b[m\r\n\x1b[38;2;9;8;7;48;5;17mx");
    let frame = e.snapshot();
    let area = Rect::new(1, 1, 12, 4);
    let (buf, cursor) = render(&frame, area);
    assert_eq!(buf[(1, 1)].symbol(), "r");
    assert_eq!(buf[(1, 1)].fg, Color::Red);
    assert_eq!(buf[(4, 1)].fg, Color::Reset);
    let b = &buf[(5, 1)];
    assert_eq!(b.symbol(), "B");
    assert!(b.modifier.contains(Modifier::BOLD | Modifier::REVERSED));
    assert_eq!(
        (buf[(1, 2)].fg, buf[(1, 2)].bg),
        (Color::Rgb(9, 8, 7), Color::Indexed(17))
    );
    assert_eq!(cursor, Some(Position::new(2, 2)));
    // Outside the area: untouched.
    assert_eq!(buf[(0, 0)], ratatui::buffer::Cell::default());
    assert_eq!(buf[(13, 1)], ratatui::buffer::Cell::default());
}

#[test]
fn view_default_colours_come_from_the_base_style() {
    let mut e = Emulator::new(2, 6, 0);
    e.feed(b"ab\x1b[32mc");
    let frame = e.snapshot();
    let mut buf = Buffer::empty(Rect::new(0, 0, 8, 3));
    let base = Style::new().fg(Color::White).bg(Color::Rgb(1, 1, 1));
    TermView::new(&frame).style(base).render(buf.area, &mut buf);
    assert_eq!(
        (buf[(0, 0)].fg, buf[(0, 0)].bg),
        (Color::White, Color::Rgb(1, 1, 1))
    );
    assert_eq!(buf[(2, 0)].fg, Color::Green);
    // Padding beyond the frame takes the base style.
    assert_eq!(buf[(7, 2)].bg, Color::Rgb(1, 1, 1));
    let mut buf = Buffer::empty(Rect::new(0, 0, 8, 3));
    TermView::new(&frame)
        .depth(crate::views::theme::ColorDepth::None)
        .render(buf.area, &mut buf);
    assert_eq!(buf[(2, 0)].fg, Color::Reset);
}

#[test]
fn view_clips_and_pads() {
    let mut e = Emulator::new(5, 10, 0);
    e.feed(b"0123456789\r\nabcdefghij\r\n\x1b[5;10H");
    let frame = e.snapshot();
    // Smaller: clipped, and the cursor (row 4, col 9) is outside.
    let (buf, cursor) = render(&frame, Rect::new(0, 0, 4, 2));
    assert_eq!(line(&buf, 0), "0123  ");
    assert_eq!(line(&buf, 1), "abcd  ");
    assert_eq!(line(&buf, 2), "      ");
    assert_eq!(cursor, None);
    // Larger: padded with blanks, whatever was in the buffer before.
    let mut buf = Buffer::filled(Rect::new(0, 0, 14, 7), ratatui::buffer::Cell::new("#"));
    let cursor = TermView::new(&frame).render_with_cursor(buf.area, &mut buf);
    assert_eq!(line(&buf, 0), "0123456789    ");
    assert_eq!(line(&buf, 6), " ".repeat(14));
    assert_eq!(cursor, Some(Position::new(9, 4)));
    // An empty area draws nothing.
    let (_, cursor) = render(&frame, Rect::new(0, 0, 0, 0));
    assert_eq!(cursor, None);
}

#[test]
fn view_wide_characters() {
    let mut e = Emulator::new(2, 6, 0);
    e.feed("a界b".as_bytes());
    let frame = e.snapshot();
    let (buf, _) = render(&frame, Rect::new(0, 0, 6, 2));
    assert_eq!(buf[(1, 0)].symbol(), "界");
    assert_eq!(buf[(2, 0)].symbol(), " ");
    assert_eq!(buf[(3, 0)].symbol(), "b");
    // Cut at the area's edge: a wide character that does not fit becomes a blank.
    let (buf, _) = render(&frame, Rect::new(0, 0, 2, 1));
    assert_eq!(buf[(0, 0)].symbol(), "a");
    assert_eq!(buf[(1, 0)].symbol(), " ");
    assert_eq!(buf[(2, 0)].symbol(), " ");
}

#[test]
fn view_banner_and_scroll_indicator() {
    let mut e = Emulator::new(3, 60, 100);
    for i in 0..10 {
        e.feed(format!("line {i}\r\n").as_bytes());
    }
    e.scroll_up(2);
    let frame = e.snapshot();
    let (buf, cursor) = render(&frame, Rect::new(0, 0, 60, 3));
    assert!(
        line(&buf, 0).trim_end().ends_with("[2/8]"),
        "{:?}",
        line(&buf, 0)
    );
    assert_eq!(cursor, None);

    let mut frame = Emulator::new(3, 60, 0).snapshot();
    frame.notice = Some(RESET_NOTICE);
    let warn = Style::new().fg(Color::Black).bg(Color::Yellow);
    let mut buf = Buffer::empty(Rect::new(0, 0, 60, 3));
    let cursor = TermView::new(&frame)
        .notice_style(warn)
        .render_with_cursor(buf.area, &mut buf);
    assert!(line(&buf, 0).contains(RESET_NOTICE));
    assert_eq!(buf[(59, 0)].bg, Color::Yellow);
    assert_eq!(cursor, None, "the cursor at row 0 is under the banner");
}
