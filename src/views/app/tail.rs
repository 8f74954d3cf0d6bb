//! The log panel following a node's logs over SSH (`T` on a node, `:tail`): the panel
//! shows that node's lines instead of the operation log, with the same pause (scroll up),
//! follow (End/F) and `/` filter, in a bounded buffer. `T` again goes back to the
//! operation log and closes the connection.

use std::collections::VecDeque;

use super::{App, Effect, Focus, SessionError};
use crate::ssh::tail::{TailHandle, TailState};

/// Lines of a node's log kept in the panel.
pub const TAIL_CAPACITY: usize = 10_000;

/// A followed line, with its lower-case form made once when it arrives (only when it
/// differs), so a `/` filter does not lower-case 10,000 lines every frame.
pub(super) struct TailLine {
    text: String,
    lower: Option<Box<str>>,
}

impl TailLine {
    fn new(text: String) -> TailLine {
        let lower = text.to_lowercase();
        TailLine {
            lower: (lower != text).then(|| lower.into_boxed_str()),
            text,
        }
    }

    /// Whether it contains `needle`, which is lower-case already.
    fn matches(&self, needle: &str) -> bool {
        self.lower.as_deref().unwrap_or(&self.text).contains(needle)
    }
}

pub(super) struct NodeTail {
    pub node: String,
    pub id: u64,
    pub handle: Option<TailHandle>,
    pub lines: VecDeque<TailLine>,
    pub state: TailState,
    /// Lines lost because the mailbox or the panel's buffer overflowed.
    pub dropped: u64,
}

impl App {
    /// Follow the selected node's logs, or stop following.
    pub(super) fn toggle_tail(&mut self) -> Vec<Effect> {
        if let Some(t) = self.log.tail.take() {
            self.log.scroll = 0;
            self.say(true, format!("stopped following {}'s logs", t.node));
            return Vec::new();
        }
        let Some(node) = self.selected_node().map(|n| n.name.clone()) else {
            self.say(false, "select a node to follow its logs".to_string());
            return Vec::new();
        };
        self.log.tail_seq += 1;
        let id = self.log.tail_seq;
        self.log.tail = Some(NodeTail {
            node: node.clone(),
            id,
            handle: None,
            lines: VecDeque::new(),
            state: TailState::Connecting,
            dropped: 0,
        });
        self.log.open = true;
        self.log.scroll = 0;
        self.focus = Focus::Log;
        vec![Effect::TailNode { id, node }]
    }

    pub(super) fn tail_started(
        &mut self,
        id: u64,
        started: Result<TailHandle, SessionError>,
    ) -> Vec<Effect> {
        let Some(t) = self.log.tail.as_mut().filter(|t| t.id == id) else {
            return Vec::new();
        };
        match started {
            Ok(h) => {
                t.handle = Some(h);
                // The thread may have filled the mailbox (and woken us for nothing)
                // before the handle got here: take what is there now.
                self.tail_woke(id)
            }
            Err(e) => {
                t.state = TailState::Closed(e.to_string());
                Vec::new()
            }
        }
    }

    /// The tail thread has lines (or news) in its mailbox.
    pub(super) fn tail_woke(&mut self, id: u64) -> Vec<Effect> {
        let Some(t) = self.log.tail.as_mut().filter(|t| t.id == id) else {
            return Vec::new();
        };
        let Some(batch) = t.handle.as_ref().map(TailHandle::take) else {
            return Vec::new();
        };
        t.dropped += batch.dropped;
        let added = batch.lines.len();
        for line in batch.lines {
            if t.lines.len() == TAIL_CAPACITY {
                t.lines.pop_front();
            }
            t.lines.push_back(TailLine::new(line));
        }
        if let Some(s) = batch.state {
            t.state = s;
        }
        if self.log.scroll > 0 {
            // Paused: keep the view still while new lines arrive.
            self.log.scroll = (self.log.scroll + added).min(t.lines.len());
        }
        match batch.first_seen_host_key {
            Some(fp) => vec![Effect::PinHostKey(t.node.clone(), fp)],
            None => Vec::new(),
        }
    }

    /// The followed node's lines that pass the `/` filter.
    pub(super) fn tail_visible(&self) -> Option<Vec<&str>> {
        let t = self.log.tail.as_ref()?;
        let needle = self.log.filter.to_lowercase();
        Some(
            t.lines
                .iter()
                .filter(|l| needle.is_empty() || l.matches(&needle))
                .map(|l| l.text.as_str())
                .collect(),
        )
    }

    /// The panel's title while following a node.
    pub(super) fn tail_title(&self) -> Option<String> {
        let t = self.log.tail.as_ref()?;
        let state = match &t.state {
            TailState::Connecting => "connecting…".to_string(),
            TailState::Following if self.log.scroll > 0 => {
                format!("paused ({} newer) — End/F follows", self.log.scroll)
            }
            TailState::Following => "following".to_string(),
            TailState::Closed(why) => format!("closed: {why} — T twice reconnects"),
        };
        let mut title = format!(" Logs of {} · {state} ", t.node);
        if t.dropped > 0 {
            title.push_str(&format!("· {} lines dropped ", t.dropped));
        }
        Some(title)
    }
}

#[cfg(test)]
mod tests {
    use super::TailLine;

    #[test]
    fn the_filter_matches_whatever_the_case_and_keeps_the_text() {
        let plain = TailLine::new("sshd: accepted key".into());
        assert!(
            plain.lower.is_none(),
            "already lower-case: nothing extra kept"
        );
        assert!(plain.matches("accepted") && !plain.matches("refused"));
        let mixed = TailLine::new("Kernel: ÉCHEC on eth0".into());
        assert_eq!(mixed.text, "Kernel: ÉCHEC on eth0");
        assert!(mixed.matches("kernel") && mixed.matches("échec"));
        assert!(
            !mixed.matches("Kernel"),
            "the needle is lower-cased by the caller"
        );
    }
}
