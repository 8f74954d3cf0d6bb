//! The remote terminal's state: a `vt100` parser behind a wrapper that clamps every size,
//! survives a parser panic, and hands the UI thread a drawable [`TermFrame`].

use std::cell::Cell;
use std::num::NonZeroU16;
use std::panic::{AssertUnwindSafe, catch_unwind};

use ratatui::style::{Color, Modifier};

use super::flood::{self, Seq};

/// Smallest rows and columns the parser is given; vt100 panics below 2x2.
pub const MIN_SIZE: u16 = 2;
/// Largest rows and columns the parser is given. A 1000x1000 screen is 32 MB of cells;
/// anything bigger is a bogus size, not a terminal.
pub const MAX_SIZE: u16 = 1000;
/// Most scrollback rows kept, whatever the caller asks for.
pub const MAX_SCROLLBACK: usize = 100_000;
/// Longest window title kept, in characters.
pub const MAX_TITLE: usize = 256;

/// Shown by the widget after the parser panicked and was rebuilt.
pub const RESET_NOTICE: &str = "the terminal emulator reset after malformed output";

thread_local! {
    static FEEDING: Cell<bool> = const { Cell::new(false) };
}

/// True while this thread is inside [`Emulator::feed`]. A process-wide panic hook should
/// check it and, when true, neither restore the real terminal nor print: the panic is
/// caught, the emulator rebuilds itself and the dashboard keeps running.
pub fn feeding() -> bool {
    FEEDING.with(Cell::get)
}

/// The one place sizes are clamped: every call into vt100 that takes a size goes through it.
fn clamp_size(rows: u16, cols: u16) -> (NonZeroU16, NonZeroU16) {
    let dim = |n: u16| NonZeroU16::MIN.saturating_add(n.clamp(MIN_SIZE, MAX_SIZE) - 1);
    (dim(rows), dim(cols))
}

/// Most reply bytes held for the session to send; more queries than that between two
/// drains are a flood, and dropping their answers is what a slow terminal would do.
const MAX_REPLIES: usize = 4096;

/// What the parser reports outside the screen grid: the window title, and answers to the
/// remote's status queries.
#[derive(Debug, Default)]
struct Hooks {
    title: String,
    replies: Vec<u8>,
}

impl Hooks {
    fn set_title(&mut self, parts: &[&[u8]]) {
        let mut title = String::new();
        for (i, part) in parts.iter().enumerate() {
            if i > 0 {
                title.push(';');
            }
            title.push_str(&String::from_utf8_lossy(part));
        }
        // A title is drawn in the dashboard's chrome: no control characters may reach it.
        self.title = title
            .chars()
            .filter(|c| !c.is_control())
            .take(MAX_TITLE)
            .collect();
    }
}

impl vt100::Callbacks for Hooks {
    fn set_window_title(&mut self, _: &mut vt100::Screen, title: &[u8]) {
        self.set_title(&[title]);
    }

    // vt100 keeps no write-back path, so the queries programs block on (fish and vim ask
    // for device attributes, readline-style prompts for the cursor position) are answered
    // here. Nothing that echoes remote-controlled text back (title reports) is answered.
    fn unhandled_csi(
        &mut self,
        screen: &mut vt100::Screen,
        i1: Option<u8>,
        _i2: Option<u8>,
        params: &[&[u16]],
        c: char,
    ) {
        let first = params.first().and_then(|p| p.first()).copied().unwrap_or(0);
        let reply = match (i1, c, first) {
            (None, 'n', 5) => "\x1b[0n".to_string(),
            (None, 'n', 6) => {
                let (row, col) = screen.cursor_position();
                format!("\x1b[{};{}R", u32::from(row) + 1, u32::from(col) + 1)
            }
            // VT100 with advanced video: what GNU screen answers; enough for every prober.
            (None, 'c', 0) => "\x1b[?1;2c".to_string(),
            (Some(b'>'), 'c', 0) => "\x1b[>0;0;0c".to_string(),
            _ => return,
        };
        if self.replies.len() + reply.len() <= MAX_REPLIES {
            self.replies.extend_from_slice(reply.as_bytes());
        }
    }

    // vt100 splits OSC parameters on ';' and only recognises a title with exactly one
    // text parameter, so `ESC]2;a;b BEL` arrives here; put the semicolons back.
    fn unhandled_osc(&mut self, _: &mut vt100::Screen, params: &[&[u8]]) {
        if let [b"0" | b"2", rest @ ..] = params
            && rest.len() > 1
        {
            self.set_title(rest);
        }
    }
}

/// A remote terminal's screen, scrollback and modes, fed with the bytes the remote writes.
///
/// Lives on the session's thread; the UI gets [`TermFrame`]s from [`Emulator::snapshot`].
/// Sizes are clamped to [`MIN_SIZE`]..=[`MAX_SIZE`], scrollback to [`MAX_SCROLLBACK`].
pub struct Emulator {
    parser: vt100::Parser<Hooks>,
    scrollback: usize,
    notice: Option<&'static str>,
    resets: u32,
    /// Whether the bytes fed so far left an escape sequence open (see `flood`).
    seq: Seq,
}

impl std::fmt::Debug for Emulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (rows, cols) = self.size();
        f.debug_struct("Emulator")
            .field("rows", &rows)
            .field("cols", &cols)
            .field("scrollback", &self.scrollback)
            .field("resets", &self.resets)
            .finish_non_exhaustive()
    }
}

impl Emulator {
    /// A blank screen of `rows` x `cols` keeping `scrollback` rows of history (all clamped).
    pub fn new(rows: u16, cols: u16, scrollback: usize) -> Emulator {
        let scrollback = scrollback.min(MAX_SCROLLBACK);
        Emulator {
            parser: Self::parser(rows, cols, scrollback, Hooks::default()),
            scrollback,
            notice: None,
            resets: 0,
            seq: Seq::Ground,
        }
    }

    fn parser(rows: u16, cols: u16, scrollback: usize, hooks: Hooks) -> vt100::Parser<Hooks> {
        let (rows, cols) = clamp_size(rows, cols);
        vt100::Parser::new_with_callbacks(rows, cols, scrollback, hooks)
    }

    /// Parse `bytes` the remote wrote. Escape sequences and UTF-8 may be split anywhere
    /// between calls. Never panics: a parser panic rebuilds the parser at the same size
    /// (the screen is lost, the title kept) and sets [`RESET_NOTICE`].
    ///
    /// The plain lines at the start of a flood that would scroll out of the history before
    /// the chunk ends are dropped unparsed (see [`Emulator::flood_cut`]); the screen and
    /// the history end exactly as if they had been parsed.
    pub fn feed(&mut self, bytes: &[u8]) {
        let bytes = &bytes[self.flood_cut(bytes)..];
        self.seq = self.seq.after(bytes);
        self.feed_with(bytes, |parser, bytes| parser.process(bytes));
    }

    /// How many bytes at the start of `bytes` cannot show on the screen nor in the history
    /// once all of `bytes` is fed: plain lines followed by more plain line ends than the
    /// screen and the history hold. Only on the live primary screen, from the parser's
    /// ground state (`flood` says why).
    pub(super) fn flood_cut(&self, bytes: &[u8]) -> usize {
        if self.seq != Seq::Ground || self.alternate_screen() || self.scroll_offset() > 0 {
            return 0;
        }
        let (rows, _) = self.size();
        flood::cut(bytes, flood::keep(rows, self.scrollback))
    }

    fn feed_with(&mut self, bytes: &[u8], process: impl FnOnce(&mut vt100::Parser<Hooks>, &[u8])) {
        FEEDING.with(|f| f.set(true));
        let result = catch_unwind(AssertUnwindSafe(|| process(&mut self.parser, bytes)));
        FEEDING.with(|f| f.set(false));
        if result.is_err() {
            self.recover();
        }
    }

    fn recover(&mut self) {
        let (rows, cols) = self.size();
        let hooks = Hooks {
            title: std::mem::take(&mut self.parser.callbacks_mut().title),
            replies: Vec::new(),
        };
        self.parser = Self::parser(rows, cols, self.scrollback, hooks);
        self.seq = Seq::Ground;
        self.notice = Some(RESET_NOTICE);
        self.resets = self.resets.saturating_add(1);
        tracing::warn!(
            rows,
            cols,
            "terminal emulator panicked on remote output and was reset"
        );
    }

    /// Bytes to send back to the remote: answers to its cursor-position (`ESC[6n`), status
    /// (`ESC[5n`) and device-attribute (`ESC[c`, `ESC[>c`) queries, in order. The session
    /// writes them to the channel after each [`Emulator::feed`]; they are dropped past 4 KiB.
    pub fn take_replies(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.parser.callbacks_mut().replies)
    }

    /// Resize to `rows` x `cols`, clamped. A change of size returns the view to the live
    /// screen, as xterm does; the same size is a no-op.
    pub fn resize(&mut self, rows: u16, cols: u16) {
        let (rows, cols) = clamp_size(rows, cols);
        if (rows.get(), cols.get()) != self.size() {
            self.parser.set_size(rows, cols);
        }
    }

    /// (rows, cols) after clamping.
    pub fn size(&self) -> (u16, u16) {
        let (rows, cols) = self.parser.screen().size();
        (rows.get(), cols.get())
    }

    /// The parser's screen, for reads this wrapper does not cover.
    pub fn screen(&self) -> &vt100::Screen {
        self.parser.screen()
    }

    /// How many rows the view is scrolled back (0 is the live screen).
    pub fn scroll_offset(&self) -> usize {
        self.parser.screen().scrollback()
    }

    /// Rows of history kept above the screen.
    pub fn scrollback_len(&self) -> usize {
        self.parser.screen().scrollback_len()
    }

    /// Scroll the view `rows` into the history (clamped to what there is).
    pub fn scroll_up(&mut self, rows: usize) {
        let to = self.scroll_offset().saturating_add(rows);
        self.parser.screen_mut().set_scrollback(to);
    }

    /// Scroll the view `rows` back towards the live screen.
    pub fn scroll_down(&mut self, rows: usize) {
        let to = self.scroll_offset().saturating_sub(rows);
        self.parser.screen_mut().set_scrollback(to);
    }

    /// Back to the live screen.
    pub fn scroll_reset(&mut self) {
        self.parser.screen_mut().set_scrollback(0);
    }

    /// The title the remote set (OSC 0 or 2), without control characters; empty if none.
    pub fn title(&self) -> &str {
        &self.parser.callbacks().title
    }

    /// The remote switched to the alternate screen (full-screen programs: vi, less, top).
    pub fn alternate_screen(&self) -> bool {
        self.parser.screen().alternate_screen()
    }

    /// The remote asked for bracketed paste (`ESC[?2004h`); see `encode_paste`.
    pub fn bracketed_paste(&self) -> bool {
        self.parser.screen().bracketed_paste()
    }

    /// The remote asked for application cursor keys (`ESC[?1h`); see `encode_key`.
    pub fn application_cursor(&self) -> bool {
        self.parser.screen().application_cursor()
    }

    /// The cursor as (row, col) on the visible screen, `None` when the remote hid it or the
    /// view is scrolled back.
    pub fn cursor(&self) -> Option<(u16, u16)> {
        let screen = self.parser.screen();
        if screen.hide_cursor() || screen.scrollback() > 0 {
            return None;
        }
        let (rows, cols) = self.size();
        let (row, col) = screen.cursor_position();
        // After writing the last column the cursor waits past it until the next character.
        Some((row.min(rows - 1), col.min(cols - 1)))
    }

    /// The notice to show, if something went wrong (see [`RESET_NOTICE`]).
    pub fn notice(&self) -> Option<&'static str> {
        self.notice
    }

    pub fn clear_notice(&mut self) {
        self.notice = None;
    }

    /// How many times the parser panicked and was rebuilt.
    pub fn resets(&self) -> u32 {
        self.resets
    }

    /// A drawable copy of what is visible now: O(rows x cols), no scrollback.
    pub fn snapshot(&self) -> TermFrame {
        let screen = self.parser.screen();
        let (rows, cols) = self.size();
        let mut frame = TermFrame {
            rows,
            cols,
            cells: Vec::with_capacity(usize::from(rows) * usize::from(cols)),
            text: String::with_capacity(usize::from(rows) * usize::from(cols)),
            cursor: self.cursor(),
            title: self.title().to_string(),
            notice: self.notice,
            alternate_screen: screen.alternate_screen(),
            application_cursor: screen.application_cursor(),
            bracketed_paste: screen.bracketed_paste(),
            scroll_offset: screen.scrollback(),
            scrollback_len: screen.scrollback_len(),
        };
        for row in 0..rows {
            for col in 0..cols {
                let cell = screen
                    .cell(row, col)
                    .map_or(FrameCell::BLANK, |c| frame.push(c));
                frame.cells.push(cell);
            }
        }
        frame
    }
}

/// One visible cell of a [`TermFrame`]: colours already mapped to ratatui (`Color::Reset`
/// is the terminal's default colour), attributes as a [`Modifier`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameCell {
    /// Byte range of the cell's text in the frame's text; empty for a blank cell.
    start: u32,
    len: u8,
    pub fg: Color,
    pub bg: Color,
    /// BOLD, DIM, ITALIC, UNDERLINED, REVERSED.
    pub modifier: Modifier,
    /// The first half of a double-width character.
    pub wide: bool,
    /// The second half of a double-width character: drawn by the cell before it.
    pub continuation: bool,
}

impl FrameCell {
    const BLANK: FrameCell = FrameCell {
        start: 0,
        len: 0,
        fg: Color::Reset,
        bg: Color::Reset,
        modifier: Modifier::empty(),
        wide: false,
        continuation: false,
    };
}

/// What the terminal pane draws: the visible cells, cursor, title and modes of an
/// [`Emulator`] at one moment. `Send`, owns its data, costs rows x cols to build.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TermFrame {
    rows: u16,
    cols: u16,
    cells: Vec<FrameCell>,
    /// Every cell's text, back to back: one allocation instead of one per cell.
    text: String,
    /// (row, col), `None` when hidden or scrolled back.
    pub cursor: Option<(u16, u16)>,
    pub title: String,
    pub notice: Option<&'static str>,
    pub alternate_screen: bool,
    pub application_cursor: bool,
    pub bracketed_paste: bool,
    /// Rows scrolled back into history, 0 when live.
    pub scroll_offset: usize,
    pub scrollback_len: usize,
}

impl TermFrame {
    fn push(&mut self, cell: &vt100::Cell) -> FrameCell {
        let contents = cell.contents();
        let start = u32::try_from(self.text.len()).unwrap_or(u32::MAX);
        // vt100 keeps at most 22 bytes per cell.
        let len = u8::try_from(contents.len()).unwrap_or(0);
        if len > 0 {
            self.text.push_str(contents);
        }
        let mut modifier = Modifier::empty();
        for (on, m) in [
            (cell.bold(), Modifier::BOLD),
            (cell.dim(), Modifier::DIM),
            (cell.italic(), Modifier::ITALIC),
            (cell.underline(), Modifier::UNDERLINED),
            (cell.inverse(), Modifier::REVERSED),
        ] {
            if on {
                modifier |= m;
            }
        }
        FrameCell {
            start,
            len,
            fg: map_color(cell.fgcolor()),
            bg: map_color(cell.bgcolor()),
            modifier,
            wide: cell.is_wide(),
            continuation: cell.is_wide_continuation(),
        }
    }

    /// (rows, cols).
    pub fn size(&self) -> (u16, u16) {
        (self.rows, self.cols)
    }

    pub fn cell(&self, row: u16, col: u16) -> Option<&FrameCell> {
        if row >= self.rows || col >= self.cols {
            return None;
        }
        self.cells
            .get(usize::from(row) * usize::from(self.cols) + usize::from(col))
    }

    /// The cell's text: one grapheme (a character and its combining marks), `""` if blank.
    pub fn symbol(&self, cell: &FrameCell) -> &str {
        let start = cell.start as usize;
        self.text
            .get(start..start + usize::from(cell.len))
            .unwrap_or("")
    }

    /// A row's text with blanks as spaces and trailing blanks trimmed (for tests and logs).
    pub fn row_text(&self, row: u16) -> String {
        let mut out = String::new();
        for col in 0..self.cols {
            let Some(cell) = self.cell(row, col) else {
                break;
            };
            if cell.continuation {
                continue;
            }
            match self.symbol(cell) {
                "" => out.push(' '),
                s => out.push_str(s),
            }
        }
        out.truncate(out.trim_end_matches(' ').len());
        out
    }
}

/// vt100's colour as ratatui's: the 16 ANSI colours by name (so a 16-colour terminal gets
/// SGR 30-37/90-97), the rest of the 256 by index, RGB as RGB, default as `Reset`.
pub fn map_color(color: vt100::Color) -> Color {
    match color {
        vt100::Color::Default => Color::Reset,
        vt100::Color::Idx(i) if i < 16 => crate::views::theme::ANSI16[usize::from(i)],
        vt100::Color::Idx(i) => Color::Indexed(i),
        vt100::Color::Rgb(r, g, b) => Color::Rgb(r, g, b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_clamped() {
        let e = Emulator::new(0, 0, 0);
        assert_eq!(e.size(), (2, 2));
        let mut e = Emulator::new(u16::MAX, u16::MAX, usize::MAX);
        assert_eq!(e.size(), (MAX_SIZE, MAX_SIZE));
        e.resize(1, 1);
        assert_eq!(e.size(), (2, 2));
        e.resize(24, 1);
        assert_eq!(e.size(), (24, 2));
        e.resize(1, 80);
        assert_eq!(e.size(), (2, 80));
        e.feed(b"hello world\r\nsecond line\r\n\x1b[65535@x");
        e.resize(0, 0);
        assert_eq!(e.size(), (2, 2));
    }

    #[test]
    fn a_parser_panic_resets_the_emulator() {
        let mut e = Emulator::new(10, 40, 100);
        e.feed(b"\x1b]2;build box\x07some text");
        assert!(!feeding());
        e.feed_with(b"x", |_, _| {
            assert!(feeding());
            panic!("simulated parser bug")
        });
        assert!(!feeding());
        assert_eq!(e.notice(), Some(RESET_NOTICE));
        assert_eq!(e.resets(), 1);
        assert_eq!(e.size(), (10, 40));
        assert_eq!(e.title(), "build box");
        let frame = e.snapshot();
        assert_eq!(frame.notice, Some(RESET_NOTICE));
        assert_eq!(frame.row_text(0), "");
        e.feed(b"again");
        assert_eq!(e.snapshot().row_text(0), "again");
        e.clear_notice();
        assert_eq!(e.snapshot().notice, None);
    }

    #[test]
    fn title_is_cleaned() {
        let mut e = Emulator::new(5, 20, 0);
        e.feed(b"\x1b]0;user@host: ~\x07");
        assert_eq!(e.title(), "user@host: ~");
        e.feed(b"\x1b]2;a;b;c\x1b\\");
        assert_eq!(e.title(), "a;b;c");
        e.feed(b"\x1b]2;evil\x1b[2Jtitle\x07");
        assert!(!e.title().contains('\x1b'), "{:?}", e.title());
        let long = format!("\x1b]2;{}\x07", "x".repeat(5000));
        e.feed(long.as_bytes());
        assert!(e.title().chars().count() <= MAX_TITLE);
    }

    #[test]
    fn status_queries_are_answered() {
        let mut e = Emulator::new(24, 80, 0);
        assert!(e.take_replies().is_empty());
        e.feed(b"\x1b[6;11Hab\x1b[6n\x1b[c\x1b[>c\x1b[5n\x1b[0c");
        assert_eq!(
            e.take_replies(),
            b"\x1b[6;13R\x1b[?1;2c\x1b[>0;0;0c\x1b[0n\x1b[?1;2c"
        );
        assert!(e.take_replies().is_empty());
        // Title reports and other queries get nothing.
        e.feed(b"\x1b[21t\x1b[?6n\x1b[18t");
        assert!(e.take_replies().is_empty());
        // A flood is capped.
        e.feed(&b"\x1b[6n".repeat(100_000));
        assert!(e.take_replies().len() <= MAX_REPLIES);
    }

    #[test]
    fn emulator_and_frame_are_send() {
        fn send<T: Send + 'static>() {}
        send::<Emulator>();
        send::<TermFrame>();
    }

    #[test]
    fn colours_map() {
        assert_eq!(map_color(vt100::Color::Default), Color::Reset);
        assert_eq!(map_color(vt100::Color::Idx(1)), Color::Red);
        assert_eq!(map_color(vt100::Color::Idx(8)), Color::DarkGray);
        assert_eq!(map_color(vt100::Color::Idx(15)), Color::White);
        assert_eq!(map_color(vt100::Color::Idx(16)), Color::Indexed(16));
        assert_eq!(map_color(vt100::Color::Idx(255)), Color::Indexed(255));
        assert_eq!(map_color(vt100::Color::Rgb(1, 2, 3)), Color::Rgb(1, 2, 3));
    }
}
