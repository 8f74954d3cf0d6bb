//! Keys and pastes: who gets them (the shell pane, the unlock prompt, a form, a dialog,
//! an overlay, or the command table), and the small dialogs' own keys.

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

use super::{App, Confirm, Effect, Focus, Overlay, Pending};
use crate::core::secret::Secret;
use crate::engine::snapshot::LockState;
use crate::views::fields::{FieldsOutcome, Submitted};
use crate::views::form::FormOutcome;
use crate::views::keymap::{Command, Layer};

impl App {
    pub(super) fn paste(&mut self, text: &str) {
        if self.shells.focused() && !self.locked() {
            self.pane_paste(text);
            return;
        }
        let text: String = text.chars().filter(|c| !c.is_control()).collect();
        if self.locked() {
            self.password = Secret::new(format!("{}{text}", self.password.expose()));
            return;
        }
        if let Some(f) = &mut self.form {
            f.paste(&text);
            return;
        }
        if let Some(f) = &mut self.fields {
            f.paste(&text);
            return;
        }
        match &mut self.overlay {
            Overlay::Command(line) => line.push_str(&text),
            Overlay::Filter => {
                self.filter_mut().push_str(&text);
                self.refresh_lists();
            }
            Overlay::Confirm(Confirm { typed: Some(t), .. }) => t.push_str(&text),
            _ => {}
        }
    }

    fn filter_mut(&mut self) -> &mut String {
        if self.focus == Focus::Log {
            &mut self.log.filter
        } else {
            &mut self.filter
        }
    }

    pub(super) fn key(&mut self, k: KeyEvent) -> Vec<Effect> {
        if k.kind != crossterm::event::KeyEventKind::Press {
            return Vec::new();
        }
        // The pane takes every key, Ctrl-C included, before the dashboard sees it.
        if self.shells.focused() && !self.locked() {
            return self.pane_key(k);
        }
        if k.modifiers.contains(KeyModifiers::CONTROL) && k.code == KeyCode::Char('c') {
            self.quit = true;
            return vec![Effect::Quit];
        }
        if self.locked() {
            return self.unlock_key(k);
        }
        if let Some(f) = &mut self.fields {
            return match f.key(k) {
                FieldsOutcome::Editing => Vec::new(),
                FieldsOutcome::Cancel => {
                    self.fields = None;
                    Vec::new()
                }
                FieldsOutcome::Submit(s) => {
                    self.fields = None;
                    vec![match s {
                        Submitted::Provider(kind, creds) => Effect::ConfigureProvider(kind, creds),
                        Submitted::Plan(edit) => Effect::EditPlan(edit),
                        Submitted::Import(req) => Effect::ImportNode(req),
                    }]
                }
            };
        }
        if let Some(f) = &mut self.form {
            return match f.key(k) {
                FormOutcome::Editing => Vec::new(),
                FormOutcome::Cancel => {
                    self.form = None;
                    Vec::new()
                }
                FormOutcome::NeedCatalog(p) => vec![Effect::LoadCatalog(p)],
                FormOutcome::Submit(req) => {
                    self.form = None;
                    vec![Effect::UpsertNode(req)]
                }
            };
        }
        match self.overlay.clone() {
            Overlay::Command(line) => return self.command_key(k, line),
            Overlay::Filter => {
                self.filter_key(k);
                return Vec::new();
            }
            Overlay::Confirm(c) => return self.confirm_key(k, c),
            Overlay::Plan(p) => return self.plan_key(k, p),
            Overlay::Help | Overlay::Details => {
                // The overlay's keys are the table's: whatever applies in the overlay layer.
                let cmd = self.opts.keymap.resolve(&k, Layer::Overlay);
                match cmd {
                    Some(Command::MoveDown) => {
                        self.help_scroll = self.help_scroll.saturating_add(1)
                    }
                    Some(Command::MoveUp) => self.help_scroll = self.help_scroll.saturating_sub(1),
                    Some(Command::PageDown) => {
                        self.help_scroll = self.help_scroll.saturating_add(10)
                    }
                    Some(Command::PageUp) => self.help_scroll = self.help_scroll.saturating_sub(10),
                    Some(_) => {
                        // Back, details, help and quit close it.
                        self.overlay = Overlay::None;
                        self.help_scroll = 0;
                    }
                    None => {}
                }
                return Vec::new();
            }
            Overlay::None => {}
        }
        match self.opts.keymap.resolve(&k, self.layer()) {
            Some(cmd) => self.command(cmd),
            None => Vec::new(),
        }
    }

    fn unlock_key(&mut self, k: KeyEvent) -> Vec<Effect> {
        if self.snap.lock == LockState::Uninitialized {
            if matches!(k.code, KeyCode::Esc | KeyCode::Char('q')) {
                self.quit = true;
                return vec![Effect::Quit];
            }
            return Vec::new();
        }
        match k.code {
            KeyCode::Enter if !self.password.is_empty() && !self.unlocking => {
                self.unlocking = true;
                self.say(true, "unlocking…");
                vec![Effect::Unlock(std::mem::take(&mut self.password))]
            }
            KeyCode::Backspace => {
                let mut p = self.password.expose().to_string();
                p.pop();
                self.password = Secret::new(p);
                Vec::new()
            }
            KeyCode::Esc => {
                self.quit = true;
                vec![Effect::Quit]
            }
            KeyCode::Char(c) => {
                self.password = Secret::new(format!("{}{c}", self.password.expose()));
                Vec::new()
            }
            _ => Vec::new(),
        }
    }

    fn filter_key(&mut self, k: KeyEvent) {
        match k.code {
            KeyCode::Enter => self.overlay = Overlay::None,
            KeyCode::Esc => {
                self.filter_mut().clear();
                self.overlay = Overlay::None;
            }
            KeyCode::Backspace => {
                self.filter_mut().pop();
            }
            KeyCode::Char(c) => self.filter_mut().push(c),
            _ => {}
        }
        self.refresh_lists();
    }

    fn confirm_key(&mut self, k: KeyEvent, mut c: Confirm) -> Vec<Effect> {
        match k.code {
            KeyCode::Esc => {
                self.overlay = Overlay::None;
                self.say(true, "cancelled");
                return Vec::new();
            }
            KeyCode::Tab | KeyCode::BackTab | KeyCode::Left | KeyCode::Right
                if c.typed.is_none() =>
            {
                c.on_ok = !c.on_ok;
            }
            KeyCode::Char('h') if c.typed.is_none() => c.on_ok = false,
            KeyCode::Char('l') if c.typed.is_none() => c.on_ok = true,
            KeyCode::Backspace => {
                if let Some(t) = &mut c.typed {
                    t.pop();
                }
            }
            KeyCode::Char(ch) => {
                if let Some(t) = &mut c.typed {
                    t.push(ch);
                }
            }
            KeyCode::Enter => {
                self.overlay = Overlay::None;
                let go = match &c.typed {
                    Some(t) => *t == c.target,
                    None => c.on_ok,
                };
                if !go {
                    self.say(
                        true,
                        if c.typed.is_some() {
                            "cancelled: the typed name did not match"
                        } else {
                            "cancelled"
                        },
                    );
                    return Vec::new();
                }
                return vec![match c.pending {
                    Pending::Node(a) => Effect::Node(c.target, a),
                    Pending::Remove => Effect::RemoveNode(c.target),
                }];
            }
            _ => {}
        }
        self.overlay = Overlay::Confirm(c);
        Vec::new()
    }
}
