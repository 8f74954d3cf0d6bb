//! The `:` line: typing, completion and running a line. The words, what follows them and
//! whether `--readonly` allows them all come from the command table
//! ([`crate::views::keymap::offer::palette`]).

use crossterm::event::{KeyCode, KeyEvent};

use super::{App, Effect, Focus, Overlay};
use crate::views::fields::FieldsForm;
use crate::views::keymap::{Arg, Command, offer};
use crate::views::lists::Tab;

impl App {
    pub(super) fn command_key(&mut self, k: KeyEvent, mut line: String) -> Vec<Effect> {
        match k.code {
            KeyCode::Esc => {
                self.overlay = Overlay::None;
                return Vec::new();
            }
            KeyCode::Tab => {
                let typed = line.trim().to_string();
                let matches: Vec<&str> = offer::palette(self.opts.readonly)
                    .map(|(word, _, _)| word)
                    .filter(|w| w.starts_with(&typed))
                    .collect();
                if let [one] = matches.as_slice() {
                    line = format!("{one} ");
                } else if !matches.is_empty() {
                    self.say(true, matches.join("  "));
                }
            }
            KeyCode::Backspace => {
                line.pop();
            }
            KeyCode::Char(c) => line.push(c),
            KeyCode::Enter => {
                self.overlay = Overlay::None;
                return self.run_line(line.trim());
            }
            _ => {}
        }
        self.overlay = Overlay::Command(line);
        Vec::new()
    }

    /// A `:` command.
    fn run_line(&mut self, line: &str) -> Vec<Effect> {
        let mut words = line.split_whitespace();
        let Some(word) = words.next() else {
            return Vec::new();
        };
        let Some(cmd) = Command::from_word(word) else {
            self.say(false, format!("unknown command :{word}; Tab completes"));
            return Vec::new();
        };
        let arg = cmd.info().palette.map_or(Arg::None, |p| p.arg);
        // `:stop NAME` acts on NAME: select it first.
        if arg == Arg::Node
            && let Some(name) = words.next()
        {
            let snap = self.snap.clone();
            self.tab = Tab::Nodes;
            self.focus = Focus::Table;
            if !self.lists[0].select_name(&snap.nodes, name, |n| &n.name) {
                self.say(false, format!("no node {name:?} (is a filter hiding it?)"));
                return Vec::new();
            }
        }
        if !Command::TYPED.contains(&cmd) {
            return self.command(cmd);
        }
        if let Err(why) = cmd.info().allowed(self.opts.readonly) {
            self.say(false, why.to_string());
            return Vec::new();
        }
        let next = words.next();
        match cmd {
            Command::Import => self.fields = Some(Box::new(FieldsForm::import())),
            Command::Record => {
                let zone = next
                    .map(String::from)
                    .or_else(|| self.snap.zones.first().map(|z| z.name.clone()))
                    .unwrap_or_default();
                self.fields = Some(Box::new(FieldsForm::record(&zone)));
            }
            Command::Provider => self.provider_form(next),
            Command::Theme => match next {
                Some(name) => {
                    return vec![Effect::LoadTheme(name.to_string(), self.opts.theme.depth())];
                }
                None => self.say(false, "usage: :theme NAME"),
            },
            _ => {}
        }
        Vec::new()
    }

    /// `:provider [KIND]`: the credentials form of that provider, or of the first one.
    fn provider_form(&mut self, wanted: Option<&str>) {
        let desc = self
            .opts
            .providers
            .iter()
            .find(|d| wanted.is_none_or(|w| d.kind == w))
            .cloned();
        match desc {
            Some(d) => self.fields = Some(Box::new(FieldsForm::provider(&d))),
            None => {
                let kinds: Vec<&str> = self
                    .opts
                    .providers
                    .iter()
                    .map(|d| d.kind.as_str())
                    .collect();
                self.say(
                    false,
                    format!(
                        "unknown or disabled provider {:?}; enabled here: {}",
                        wanted.unwrap_or(""),
                        kinds.join(", ")
                    ),
                );
            }
        }
    }
}
