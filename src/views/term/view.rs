//! [`TermView`]: a [`TermFrame`] drawn into a ratatui buffer.

use ratatui::buffer::Buffer;
use ratatui::layout::{Position, Rect};
use ratatui::style::{Color, Style};
use ratatui::widgets::Widget;

use super::emulator::TermFrame;
use crate::views::theme::ColorDepth;

/// Draws a [`TermFrame`] at the top left of an area: a smaller area clips the frame, a larger
/// one is padded with blank cells in the base style. The remote's default colours are the
/// base style's; a notice is a one-line banner over the top row; when scrolled back, the
/// position in the history shows at the top right.
///
/// Use [`TermView::render_with_cursor`] to learn where the app should put the cursor.
#[derive(Debug, Clone, Copy)]
pub struct TermView<'a> {
    frame: &'a TermFrame,
    style: Style,
    notice_style: Style,
    depth: ColorDepth,
}

impl<'a> TermView<'a> {
    pub fn new(frame: &'a TermFrame) -> TermView<'a> {
        TermView {
            frame,
            style: Style::default(),
            notice_style: Style::default().fg(Color::Black).bg(Color::Yellow),
            depth: ColorDepth::TrueColor,
        }
    }

    /// The base style: its fg/bg stand for the remote's default colours (theme `text`).
    pub fn style(mut self, style: Style) -> Self {
        self.style = style;
        self
    }

    /// The style of the notice banner and scrollback indicator (theme `status.warn`).
    pub fn notice_style(mut self, style: Style) -> Self {
        self.notice_style = style;
        self
    }

    /// Degrade the remote's colours to what the real terminal shows.
    pub fn depth(mut self, depth: ColorDepth) -> Self {
        self.depth = depth;
        self
    }

    /// Draw, and return where the cursor is (absolute), if it is visible inside `area`.
    pub fn render_with_cursor(self, area: Rect, buf: &mut Buffer) -> Option<Position> {
        let area = area.intersection(buf.area);
        if area.is_empty() {
            return None;
        }
        let frame = self.frame;
        let (rows, cols) = frame.size();
        let base_fg = self.style.fg.unwrap_or(Color::Reset);
        let base_bg = self.style.bg.unwrap_or(Color::Reset);
        let colour = |c: Color, base: Color| match c {
            Color::Reset => base,
            c => self.depth.adapt(c).unwrap_or(base),
        };
        for dy in 0..area.height {
            let y = area.y + dy;
            let mut dx = 0;
            while dx < area.width {
                let x = area.x + dx;
                dx += 1;
                let Some(src) = frame.cell(dy, dx - 1) else {
                    if let Some(cell) = buf.cell_mut((x, y)) {
                        cell.reset();
                        cell.set_style(self.style);
                    }
                    continue;
                };
                if src.continuation {
                    // Normally drawn with the wide cell before it; alone only when a wide
                    // character was cut in half by the remote, then as a blank.
                    if let Some(cell) = buf.cell_mut((x, y)) {
                        cell.reset();
                        cell.set_style(self.style);
                    }
                    continue;
                }
                let style = Style::new()
                    .fg(colour(src.fg, base_fg))
                    .bg(colour(src.bg, base_bg))
                    .add_modifier(self.style.add_modifier | src.modifier);
                let symbol = match frame.symbol(src) {
                    "" => " ",
                    s => s,
                };
                let fits = !src.wide || dx < area.width;
                if let Some(cell) = buf.cell_mut((x, y)) {
                    cell.reset();
                    cell.set_symbol(if fits { symbol } else { " " });
                    cell.set_style(style);
                }
                if src.wide && fits {
                    // The second half: blank, and skipped by ratatui's diff after a wide one.
                    if let Some(cell) = buf.cell_mut((x + 1, y)) {
                        cell.reset();
                        cell.set_style(style);
                    }
                    dx += 1;
                }
            }
        }
        if frame.scroll_offset > 0 {
            let label = format!(" [{}/{}] ", frame.scroll_offset, frame.scrollback_len);
            let width = u16::try_from(label.len()).unwrap_or(u16::MAX);
            let x = area.right().saturating_sub(width).max(area.x);
            buf.set_stringn(
                x,
                area.y,
                &label,
                usize::from(area.width),
                self.notice_style,
            );
        }
        if let Some(notice) = frame.notice {
            let line = format!(" ! {notice}");
            let blank = " ".repeat(usize::from(area.width));
            buf.set_stringn(
                area.x,
                area.y,
                &blank,
                usize::from(area.width),
                self.notice_style,
            );
            buf.set_stringn(
                area.x,
                area.y,
                &line,
                usize::from(area.width),
                self.notice_style,
            );
        }
        let (row, col) = frame.cursor?;
        if row >= rows.min(area.height) || col >= cols.min(area.width) {
            return None;
        }
        if frame.notice.is_some() && row == 0 {
            return None;
        }
        Some(Position::new(area.x + col, area.y + row))
    }
}

impl Widget for TermView<'_> {
    fn render(self, area: Rect, buf: &mut Buffer) {
        let _ = self.render_with_cursor(area, buf);
    }
}
