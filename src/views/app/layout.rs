//! Where things go on the screen. Drawing and event handling both ask here, so the sizes
//! `handle` works with (a table's page, a shell pane's rows and columns) are the ones the
//! next frame draws.

use ratatui::layout::{Constraint, Layout, Rect};

use super::{App, MIN_HEIGHT, MIN_WIDTH};
use crate::views::lists::Tab;

/// The dashboard's rows, top to bottom.
pub(super) struct Areas {
    pub header: Rect,
    pub tabs: Rect,
    /// The table, and under it the operator tasks of the selected firewall set.
    pub table: Rect,
    pub tasks: Rect,
    pub log: Rect,
    pub status: Rect,
    pub footer: Rect,
}

/// Too small to draw anything but a note saying so.
pub(super) fn too_small(area: Rect) -> bool {
    area.width < MIN_WIDTH || area.height < MIN_HEIGHT
}

impl App {
    /// The dashboard's layout on `area` (the tables' screen, not a shell pane's).
    pub(super) fn areas(&self, area: Rect) -> Areas {
        let log_h = if self.log.open {
            self.log.height.min(area.height.saturating_sub(8))
        } else {
            0
        };
        let [header, tabs, main, log, status, footer] = Layout::vertical([
            Constraint::Length(1),
            Constraint::Length(1),
            Constraint::Fill(1),
            Constraint::Length(log_h),
            Constraint::Length(1),
            Constraint::Length(1),
        ])
        .areas(area);
        let tasks_h = match self.tab {
            Tab::Firewalls => {
                let n = self.firewall_tasks().len();
                if n == 0 {
                    0
                } else {
                    (n as u16 + 2).min(main.height / 2)
                }
            }
            _ => 0,
        };
        let [table, tasks] =
            Layout::vertical([Constraint::Fill(1), Constraint::Length(tasks_h)]).areas(main);
        Areas {
            header,
            tabs,
            table,
            tasks,
            log,
            status,
            footer,
        }
    }

    /// Operator tasks of the selected firewall set.
    pub(super) fn firewall_tasks(&self) -> &[String] {
        self.lists[2]
            .selected()
            .and_then(|i| self.snap.firewalls.get(i))
            .map(|r| r.tasks.as_slice())
            .unwrap_or_default()
    }

    /// Rows the current table shows on the last known screen; `None` when no table is drawn
    /// (too small, locked, a shell pane in front).
    pub(super) fn table_rows(&self) -> Option<usize> {
        if too_small(self.screen) || self.locked() || self.shells.focused() {
            return None;
        }
        // Inside the borders, under the header row.
        let table = self.areas(self.screen).table;
        Some(usize::from(table.height.saturating_sub(3)))
    }
}
