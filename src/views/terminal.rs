//! The real terminal: raw mode and the alternate screen on entry, restored on every exit
//! path (return, error, panic), and frames written inside synchronized-output markers so
//! a terminal that supports them (tmux, kitty, wezterm, recent xterm) shows a burst of
//! changes as one update.

use std::io::{self, Stdout, Write};

use crossterm::event::{DisableBracketedPaste, EnableBracketedPaste};
use crossterm::terminal::{
    BeginSynchronizedUpdate, Clear, ClearType, EndSynchronizedUpdate, EnterAlternateScreen,
    LeaveAlternateScreen, disable_raw_mode, enable_raw_mode,
};
use crossterm::{cursor, execute};
use ratatui::Terminal;
use ratatui::backend::CrosstermBackend;
use ratatui::buffer::Buffer;
use ratatui::layout::{Position, Rect};

pub type Term = Terminal<CrosstermBackend<Stdout>>;

/// Put the terminal back as it was. Safe to call more than once.
pub fn restore() {
    let mut out = io::stdout();
    let _ = execute!(
        out,
        DisableBracketedPaste,
        LeaveAlternateScreen,
        cursor::Show
    );
    let _ = disable_raw_mode();
    let _ = out.flush();
}

/// Raw mode, alternate screen, bracketed paste; a panic hook that restores first so the
/// panic message lands on a usable terminal.
pub fn enter() -> io::Result<Term> {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        // A panic inside the terminal pane's parser is caught and the parser rebuilt
        // (`term::Emulator::feed`): the dashboard carries on, so leave the screen alone
        // and say nothing on it.
        if super::term::feeding() {
            tracing::warn!("terminal emulator panicked and was reset: {info}");
            return;
        }
        restore();
        previous(info);
    }));
    enable_raw_mode()?;
    let mut out = io::stdout();
    if let Err(e) = execute!(
        out,
        EnterAlternateScreen,
        EnableBracketedPaste,
        cursor::Hide,
        Clear(ClearType::All)
    ) {
        restore();
        return Err(e);
    }
    // Not `Terminal::clear`: it asks the terminal for the cursor position, and the input
    // thread would swallow the answer.
    Terminal::new(CrosstermBackend::new(out)).inspect_err(|_| restore())
}

/// Write `frame` (already rendered off-screen) as one synchronized update; ratatui only
/// sends the cells that differ from the previous frame.
pub fn draw(term: &mut Term, frame: &Buffer, cursor: Option<Position>) -> io::Result<()> {
    execute!(term.backend_mut(), BeginSynchronizedUpdate)?;
    let result = term
        .draw(|f| {
            let area = f.area();
            let buf = f.buffer_mut();
            copy(frame, buf, area);
            if let Some(p) = cursor {
                f.set_cursor_position(p);
            }
        })
        .map(|_| ());
    execute!(term.backend_mut(), EndSynchronizedUpdate)?;
    result
}

fn copy(from: &Buffer, to: &mut Buffer, area: Rect) {
    let inter = from.area.intersection(area);
    for y in inter.top()..inter.bottom() {
        for x in inter.left()..inter.right() {
            if let (Some(src), Some(dst)) = (from.cell((x, y)), to.cell_mut((x, y))) {
                *dst = src.clone();
            }
        }
    }
}
