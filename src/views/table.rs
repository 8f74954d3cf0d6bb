//! A scrolling window over a long list: which rows are visible, which is selected.
//! Only the visible rows are ever laid out, so 10,000 rows cost what 50 do.

use std::ops::Range;

/// Selection and scroll offset; kept across snapshots by the owning view.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Window {
    pub selected: usize,
    pub offset: usize,
}

impl Window {
    /// Keep the selection in `len` rows and on screen in a window of `height` rows.
    pub fn fit(&mut self, len: usize, height: usize) {
        if len == 0 {
            *self = Window::default();
            return;
        }
        self.selected = self.selected.min(len - 1);
        let height = height.max(1);
        if self.selected < self.offset {
            self.offset = self.selected;
        } else if self.selected >= self.offset + height {
            self.offset = self.selected + 1 - height;
        }
        self.offset = self.offset.min(len.saturating_sub(height));
    }

    pub fn visible(&self, len: usize, height: usize) -> Range<usize> {
        let start = self.offset.min(len);
        start..(start + height).min(len)
    }

    pub fn up(&mut self, n: usize) {
        self.selected = self.selected.saturating_sub(n);
    }

    pub fn down(&mut self, n: usize, len: usize) {
        self.selected = (self.selected + n).min(len.saturating_sub(1));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selection_stays_visible() {
        let mut w = Window::default();
        w.down(30, 100);
        w.fit(100, 10);
        assert_eq!(w.visible(100, 10), 21..31);
        w.up(25);
        w.fit(100, 10);
        assert_eq!(w.visible(100, 10), 5..15);
        w.down(1000, 100);
        w.fit(100, 10);
        assert_eq!((w.selected, w.visible(100, 10)), (99, 90..100));
        w.fit(3, 10);
        assert_eq!((w.selected, w.visible(3, 10)), (2, 0..3));
        w.fit(0, 10);
        assert_eq!(w.visible(0, 10), 0..0);
    }
}
