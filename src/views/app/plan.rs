//! The plan overlay: `a` shows what an apply would change (the engine's change set,
//! grouped by kind, coloured through the theme, scrollable) with Cancel and Apply, the
//! focus on Cancel, so a bare Enter changes nothing. Only Enter on Apply starts the apply.
//!
//! It owns the overlay's state, keys and drawing; the change set comes from the engine
//! (`Effect::LoadChanges`, answered by `UiEvent::Changes`), never computed here.

use crossterm::event::KeyEvent;
use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, Paragraph, Widget};

use super::{App, Effect, Failed, Overlay};
use crate::engine::changes::{Change, ChangeAction, ChangeSet};
use crate::views::keymap::{Command, Layer};
use crate::views::plain::clean;
use crate::views::theme::Theme;

#[derive(Debug, Clone)]
pub(super) struct PlanOverlay {
    /// `None` while the engine computes it; the error says why it could not.
    set: Option<Result<ChangeSet, Failed>>,
    scroll: u16,
    on_apply: bool,
    /// Why the last Apply was refused (`--readonly`), shown in the overlay itself: the
    /// status line is under it.
    refused: Option<String>,
}

impl PlanOverlay {
    pub(super) fn loading() -> PlanOverlay {
        PlanOverlay {
            set: None,
            scroll: 0,
            on_apply: false,
            refused: None,
        }
    }

    fn has_changes(&self) -> bool {
        matches!(&self.set, Some(Ok(s)) if !s.is_empty())
    }

    /// About how many lines the body has (a change and its fields), for Bottom.
    fn lines(&self) -> u16 {
        match &self.set {
            Some(Ok(s)) => s
                .changes
                .iter()
                .map(|c| 3 + c.fields.len())
                .sum::<usize>()
                .try_into()
                .unwrap_or(u16::MAX),
            _ => 0,
        }
    }
}

/// The theme key an action is drawn with (existing semantic keys: no new theme entries).
fn action_style(t: &Theme, c: &Change) -> Style {
    if c.blocked.is_some() {
        return t.style("status.error");
    }
    t.style(match c.action {
        ChangeAction::Create => "status.ok",
        ChangeAction::Update => "status.warn",
        ChangeAction::Replace | ChangeAction::Delete => "sync.deleting",
        ChangeAction::Unknown => "text.dim",
    })
}

/// The overlay's lines: a heading per kind, a line per change, its fields, why, blocked.
fn lines<'a>(t: &Theme, set: &ChangeSet) -> Vec<Line<'a>> {
    if set.is_empty() {
        return vec![Line::from(format!(
            "No changes: the plan matches what the providers show ({} resources in sync).",
            set.unchanged
        ))];
    }
    let mut out = Vec::new();
    let mut kind = None;
    for c in &set.changes {
        if kind != Some(c.kind) {
            if kind.is_some() {
                out.push(Line::from(""));
            }
            out.push(Line::from(Span::styled(c.kind.heading(), t.style("title"))));
            kind = Some(c.kind);
        }
        out.push(Line::from(vec![
            Span::styled(format!("  {:<3} ", c.marker()), action_style(t, c)),
            Span::raw(clean(&c.name)),
            Span::styled(format!("  ({})", c.action), t.style("text.dim")),
        ]));
        for f in &c.fields {
            out.push(Line::from(Span::styled(
                format!("        {}", clean(&f.short())),
                t.style("text.dim"),
            )));
        }
        if let Some(r) = &c.reason {
            out.push(Line::from(format!("        why: {}", clean(r))));
        }
        if let Some(b) = &c.blocked {
            out.push(Line::from(Span::styled(
                format!("        blocked: {}", clean(b)),
                t.style("status.error"),
            )));
        }
    }
    out
}

impl App {
    /// `a`: open the overlay and ask the engine for the change set.
    pub(super) fn open_plan(&mut self) -> Vec<Effect> {
        self.overlay = Overlay::Plan(PlanOverlay::loading());
        vec![Effect::LoadChanges]
    }

    /// The engine's answer; ignored when the overlay was closed meanwhile.
    pub(super) fn plan_loaded(&mut self, set: Result<ChangeSet, Failed>) {
        if let Overlay::Plan(p) = &mut self.overlay {
            p.set = Some(set);
        }
    }

    /// The overlay's keys are the keymap's `Layer::Plan` commands (rebindable, listed in
    /// help); movement commands scroll. Apply goes through the command table's check, so
    /// `--readonly` can read the plan and is told why it cannot apply it.
    pub(super) fn plan_key(&mut self, k: KeyEvent, mut p: PlanOverlay) -> Vec<Effect> {
        let apply = match self.opts.keymap.resolve(&k, Layer::Plan) {
            Some(Command::PlanSwitch) => {
                p.on_apply = !p.on_apply && p.has_changes();
                false
            }
            Some(Command::PlanChoose) => p.on_apply,
            Some(Command::PlanApply) => true,
            Some(Command::PlanCancel) => {
                self.overlay = Overlay::None;
                self.say(true, "apply cancelled: nothing was changed");
                return Vec::new();
            }
            Some(Command::MoveDown) => {
                p.scroll = p.scroll.saturating_add(1);
                false
            }
            Some(Command::MoveUp) => {
                p.scroll = p.scroll.saturating_sub(1);
                false
            }
            Some(Command::PageDown) => {
                p.scroll = p.scroll.saturating_add(10);
                false
            }
            Some(Command::PageUp) => {
                p.scroll = p.scroll.saturating_sub(10);
                false
            }
            Some(Command::Top) => {
                p.scroll = 0;
                false
            }
            Some(Command::Bottom) => {
                p.scroll = p.lines().saturating_sub(1);
                false
            }
            _ => false,
        };
        if !apply {
            // Choosing Cancel closes the overlay; anything else keeps it open.
            if matches!(
                self.opts.keymap.resolve(&k, Layer::Plan),
                Some(Command::PlanChoose)
            ) {
                self.overlay = Overlay::None;
                self.say(true, "apply cancelled: nothing was changed");
                return Vec::new();
            }
            self.overlay = Overlay::Plan(p);
            return Vec::new();
        }
        if let Err(why) = Command::PlanApply.available(&self.context()) {
            self.say(false, why.to_string());
            p.refused = Some(why.to_string());
            self.overlay = Overlay::Plan(p);
            return Vec::new();
        }
        if !p.has_changes() {
            self.overlay = Overlay::Plan(p);
            self.say(
                true,
                "nothing to apply: the plan matches what the providers show",
            );
            return Vec::new();
        }
        self.overlay = Overlay::None;
        vec![Effect::Apply]
    }

    /// The hint under the buttons, from the keys bound now (`--readonly` has no Apply key).
    fn plan_hint(&self) -> String {
        let keymap = &self.opts.keymap;
        let mut parts = Vec::new();
        for (cmd, what) in [
            (Command::PlanSwitch, "switches"),
            (Command::PlanChoose, "chooses"),
            (Command::PlanApply, "applies"),
            (Command::PlanCancel, "cancels"),
            (Command::MoveDown, "scrolls"),
        ] {
            // Read-only, Apply's key only says why it cannot: not offered.
            if cmd == Command::PlanApply && self.opts.readonly {
                continue;
            }
            if let Some(key) = keymap.first_key(cmd) {
                parts.push(format!("{key} {what}"));
            }
        }
        if self.opts.readonly {
            parts.push("read-only: Apply is refused".to_string());
        }
        parts.join(" · ")
    }

    pub(super) fn render_plan(&self, p: &PlanOverlay, area: Rect, buf: &mut Buffer) {
        let t = &self.opts.theme;
        let w = area.width.saturating_sub(4).min(110);
        let h = area.height.saturating_sub(2);
        let box_ = super::draw::centered(area, w, h);
        Clear.render(box_, buf);
        let title = match &p.set {
            Some(Ok(s)) => format!(" Plan: {} ", s.counts()),
            Some(Err(_)) => " Plan ".to_string(),
            None => " Plan: reading… ".to_string(),
        };
        let block = Block::default()
            .borders(Borders::ALL)
            .border_style(t.style("border.focused"))
            .style(t.style("dialog"))
            .title(Span::styled(title, t.style("title")));
        let inner = block.inner(box_);
        block.render(box_, buf);
        if inner.height < 3 {
            return;
        }
        let body = Rect::new(inner.x, inner.y, inner.width, inner.height - 2);
        let content = match &p.set {
            None => vec![Line::from("Computing what an apply would change…")],
            Some(Err(e)) => vec![Line::from(Span::styled(
                format!("The plan could not be read: {}", clean(&e.message)),
                t.style("status.error"),
            ))],
            Some(Ok(set)) => lines(t, set),
        };
        Paragraph::new(content)
            .scroll((p.scroll, 0))
            .render(body, buf);
        let (cancel, apply) = if p.on_apply {
            (t.style("dialog.button"), t.style("dialog.button.focused"))
        } else {
            (t.style("dialog.button.focused"), t.style("dialog.button"))
        };
        let mut buttons = vec![Span::styled(" Cancel ", cancel)];
        if p.has_changes() {
            buttons.push(Span::raw("   "));
            buttons.push(Span::styled(" Apply ", apply));
        }
        let y = inner.y + inner.height - 2;
        Line::from(buttons).render(Rect::new(inner.x, y, inner.width, 1), buf);
        match &p.refused {
            Some(why) => Line::from(Span::styled(why.clone(), t.style("status.error"))),
            None => Line::from(Span::styled(self.plan_hint(), t.style("text.dim"))),
        }
        .render(Rect::new(inner.x, y + 1, inner.width, 1), buf);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::changes::{FieldChange, ResourceKind};
    use crossterm::event::KeyCode;

    fn set() -> ChangeSet {
        ChangeSet {
            changes: vec![Change {
                kind: ResourceKind::Node,
                name: "web-1".into(),
                action: ChangeAction::Update,
                fields: vec![FieldChange {
                    field: "offer".into(),
                    old: Some("sim-small".into()),
                    new: Some("sim-large".into()),
                }],
                reason: None,
                blocked: None,
            }],
            unchanged: 0,
        }
    }

    fn app(snap: crate::engine::snapshot::AppSnapshot) -> App {
        app_with(snap, false)
    }

    fn app_with(snap: crate::engine::snapshot::AppSnapshot, readonly: bool) -> App {
        use crate::views::keymap::Keymap;
        let snap = std::sync::Arc::new(snap);
        let keymap = if readonly {
            Keymap::defaults().without_mutating()
        } else {
            Keymap::defaults()
        };
        let mut app = App::new(
            snap.clone(),
            super::super::Options {
                readonly,
                demo: None,
                attached: None,
                theme: Theme::default(),
                keymap,
                providers: vec![],
            },
        );
        app.handle(super::super::UiEvent::Snapshot(snap));
        app.handle(super::super::UiEvent::Resize {
            width: 100,
            height: 24,
        });
        app
    }

    fn unlocked() -> crate::engine::snapshot::AppSnapshot {
        use crate::engine::snapshot::{AppSnapshot, LockState};
        AppSnapshot::empty("/home/op".into(), LockState::Unlocked)
    }

    fn key(app: &mut App, code: KeyCode) -> Vec<Effect> {
        use crossterm::event::KeyModifiers;
        app.handle(super::super::UiEvent::Key(KeyEvent::new(
            code,
            KeyModifiers::NONE,
        )))
    }

    fn screen(app: &App) -> String {
        let area = Rect::new(0, 0, 100, 24);
        let mut buf = Buffer::empty(area);
        app.render(area, &mut buf);
        (0..area.height)
            .map(|y| {
                (0..area.width)
                    .map(|x| buf[(x, y)].symbol().to_string())
                    .collect::<String>()
                    + "\n"
            })
            .collect()
    }

    #[test]
    fn a_shows_the_plan_and_only_enter_on_apply_applies() {
        use super::super::UiEvent;
        let mut app = app(unlocked());
        assert_eq!(key(&mut app, KeyCode::Char('a')), vec![Effect::LoadChanges]);
        assert!(screen(&app).contains("Computing what an apply would change"));
        app.handle(UiEvent::Changes(Ok(set())));
        let s = screen(&app);
        assert!(s.contains("Plan: 1 to change"), "{s}");
        assert!(s.contains("~   web-1  (update)"), "{s}");
        assert!(s.contains("offer sim-small -> sim-large"), "{s}");
        assert!(s.contains(" Cancel ") && s.contains(" Apply "), "{s}");
        // The focus starts on Cancel: a bare Enter changes nothing.
        assert!(key(&mut app, KeyCode::Enter).is_empty());
        assert!(matches!(app.overlay, Overlay::None));
        assert!(screen(&app).contains("apply cancelled: nothing was changed"));
        // Tab to Apply, Enter starts it.
        key(&mut app, KeyCode::Char('a'));
        app.handle(UiEvent::Changes(Ok(set())));
        key(&mut app, KeyCode::Tab);
        assert_eq!(key(&mut app, KeyCode::Enter), vec![Effect::Apply]);
        // Esc cancels; an answer arriving after the overlay closed is ignored.
        key(&mut app, KeyCode::Char('a'));
        assert!(key(&mut app, KeyCode::Esc).is_empty());
        app.handle(UiEvent::Changes(Ok(set())));
        assert!(matches!(app.overlay, Overlay::None));
        // Nothing to do: there is no Apply to focus.
        key(&mut app, KeyCode::Char('a'));
        app.handle(UiEvent::Changes(Ok(ChangeSet::default())));
        assert!(screen(&app).contains("No changes"));
        key(&mut app, KeyCode::Tab);
        assert!(key(&mut app, KeyCode::Enter).is_empty());
    }

    #[test]
    fn readonly_reads_the_plan_and_is_told_why_it_cannot_apply() {
        use super::super::UiEvent;
        let mut app = app_with(unlocked(), true);
        assert_eq!(key(&mut app, KeyCode::Char('a')), vec![Effect::LoadChanges]);
        app.handle(UiEvent::Changes(Ok(set())));
        let s = screen(&app);
        assert!(s.contains("~   web-1  (update)"), "{s}");
        assert!(s.contains("read-only: Apply is refused"), "{s}");
        assert!(!s.contains("y applies"), "{s}");
        // The Apply button is refused with the read-only reason, and the plan stays open.
        key(&mut app, KeyCode::Tab);
        assert!(key(&mut app, KeyCode::Enter).is_empty());
        assert!(matches!(app.overlay, Overlay::Plan(_)));
        let s = screen(&app);
        assert!(s.contains("apply: not available in --readonly"), "{s}");
        // `y` has no meaning in read-only; Esc closes it.
        assert!(key(&mut app, KeyCode::Char('y')).is_empty());
        assert!(key(&mut app, KeyCode::Esc).is_empty());
        assert!(matches!(app.overlay, Overlay::None));
    }

    #[test]
    fn the_overlay_keys_follow_the_keymap() {
        use super::super::UiEvent;
        let mut app = app(unlocked());
        app.opts.keymap = crate::views::keymap::Keymap::parse(
            "[keys]\nplan_apply = \"x\"\nplan_choose = \"space\"\n",
        )
        .expect("keymap");
        key(&mut app, KeyCode::Char('a'));
        app.handle(UiEvent::Changes(Ok(set())));
        let s = screen(&app);
        assert!(
            s.contains("x applies") && s.contains("space chooses"),
            "{s}"
        );
        // Enter is not the overlay's key any more: nothing happens.
        assert!(key(&mut app, KeyCode::Enter).is_empty());
        assert!(matches!(app.overlay, Overlay::Plan(_)));
        assert_eq!(key(&mut app, KeyCode::Char('x')), vec![Effect::Apply]);
    }

    #[test]
    fn the_header_counts_and_row_markers_come_from_the_snapshot() {
        use crate::engine::changes::ChangeCounts;
        let mut snap = unlocked();
        snap.changes = ChangeCounts {
            create: 3,
            update: 1,
            unknown: 2,
            ..ChangeCounts::default()
        };
        let s = screen(&app(snap));
        assert!(
            s.contains("plan: 3 to create, 1 to change, 2 unknown"),
            "{s}"
        );
        assert!(!screen(&app(unlocked())).contains("plan:"));
    }

    #[test]
    fn lines_group_by_kind_with_markers_and_old_to_new() {
        let t = Theme::default();
        let text: Vec<String> = lines(&t, &set()).iter().map(|l| l.to_string()).collect();
        assert_eq!(
            text,
            [
                "Nodes",
                "  ~   web-1  (update)",
                "        offer sim-small -> sim-large"
            ]
        );
        assert!(
            lines(&t, &ChangeSet::default())[0]
                .to_string()
                .starts_with("No changes")
        );
    }
}
