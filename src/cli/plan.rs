//! `legion plan`: what an apply of the current plan would change, grouped by resource kind
//! with Terraform's markers (`+` create, `~` update, `-/+` replace, `-` delete; `?` not
//! observed yet; `!` a change apply cannot make now, with why), `--json`, and
//! `--detailed-exitcode` (0 nothing to do, 2 changes, 1 error).
//!
//! The change set is the engine's (`engine::changes`); this file only prints it, and
//! [`render`] is shared with `legion apply`, which shows the plan before it starts.
//! `plan` takes subcommands (`show` is the default), so more can join it.

use color_eyre::eyre::Result;
use std::fmt::Write as _;

use super::Cli;
use super::exit::PlanHasChanges;
use super::output::{clean, json, print_block};
use super::session::with_link;
use crate::engine::changes::{Change, ChangeAction, ChangeSet};
use crate::link::Link;

#[derive(clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub(crate) struct PlanArgs {
    #[command(subcommand)]
    command: Option<PlanCommand>,
    #[command(flatten)]
    show: ShowArgs,
}

#[derive(clap::Subcommand)]
pub(crate) enum PlanCommand {
    /// Show what an apply would change (what `legion plan` alone does).
    Show(ShowArgs),
}

#[derive(clap::Args, Clone, Default)]
pub(crate) struct ShowArgs {
    /// The change set as JSON.
    #[arg(long)]
    json: bool,
    /// Exit 0 when there is nothing to do, 2 when there are changes, 1 on error.
    #[arg(long)]
    detailed_exitcode: bool,
    /// Use the last readings instead of reading the providers first.
    #[arg(long)]
    no_refresh: bool,
}

pub(crate) async fn run(cli: &Cli, args: &PlanArgs) -> Result<()> {
    match &args.command {
        Some(PlanCommand::Show(show)) => show_plan(cli, show).await,
        None => show_plan(cli, &args.show).await,
    }
}

async fn show_plan(cli: &Cli, args: &ShowArgs) -> Result<()> {
    let set = with_link(cli, async |l: &Link| {
        if !args.no_refresh
            && let Err(e) = l.refresh().await
        {
            // The plan is still worth showing from the last readings; say it may be old.
            eprintln!(
                "legion: warning: {}; the plan uses the last readings",
                clean(&e.to_string())
            );
        }
        Ok(l.changes().await?)
    })
    .await?;
    if args.json {
        json(&serde_json::json!({
            "changes": set.changes,
            "unchanged": set.unchanged,
            "summary": set.counts(),
        }))?;
    } else {
        print_block(&render(&set));
    }
    if args.detailed_exitcode && !set.is_empty() {
        return Err(PlanHasChanges(set.changes.len()).into());
    }
    Ok(())
}

/// The change set as text, grouped by kind; every string through `clean` when printed.
pub(crate) fn render(set: &ChangeSet) -> String {
    let mut out = String::new();
    if set.is_empty() {
        let _ = writeln!(
            out,
            "No changes: the plan matches what the providers show ({} resources in sync).",
            set.unchanged
        );
        return out;
    }
    let mut kind = None;
    for c in &set.changes {
        if kind != Some(c.kind) {
            if kind.is_some() {
                out.push('\n');
            }
            let _ = writeln!(out, "{}", c.kind.heading());
            kind = Some(c.kind);
        }
        change(&mut out, c);
    }
    let _ = writeln!(out, "\nPlan: {}.", set.counts());
    out
}

fn change(out: &mut String, c: &Change) {
    let what = match c.action {
        ChangeAction::Unknown => "not known".to_string(),
        a => a.to_string(),
    };
    let _ = writeln!(out, "  {:<3} {}  ({what})", c.marker(), clean(&c.name));
    for f in &c.fields {
        let value = match (&f.old, &f.new) {
            (Some(o), Some(n)) => format!("{} -> {}", clean(o), clean(n)),
            (None, Some(n)) => clean(n),
            (Some(o), None) => format!("{} -> (none)", clean(o)),
            (None, None) => String::new(),
        };
        let _ = writeln!(out, "        {:<12} {value}", clean(&f.field));
    }
    if let Some(r) = &c.reason {
        let _ = writeln!(out, "        why: {}", clean(r));
    }
    if let Some(b) = &c.blocked {
        let _ = writeln!(out, "        blocked: {}", clean(b));
    }
}

/// `legion apply`'s question on a terminal; only `yes` proceeds.
pub(crate) fn confirmed() -> Result<bool> {
    use std::io::Write as _;
    let mut stdout = std::io::stdout();
    let _ = write!(stdout, "Apply these changes? Only 'yes' is accepted: ");
    let _ = stdout.flush();
    let mut line = String::new();
    std::io::stdin().read_line(&mut line)?;
    Ok(line.trim() == "yes")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::changes::{FieldChange, ResourceKind};

    fn change(kind: ResourceKind, name: &str, action: ChangeAction) -> Change {
        Change {
            kind,
            name: name.into(),
            action,
            fields: vec![],
            reason: None,
            blocked: None,
        }
    }

    #[test]
    fn changes_print_grouped_with_markers_and_old_to_new() {
        let mut offer = change(ResourceKind::Node, "web-1", ChangeAction::Update);
        offer.fields.push(FieldChange {
            field: "offer".into(),
            old: Some("sim-small".into()),
            new: Some("sim-large".into()),
        });
        offer.blocked = Some("a resize is not supported yet".into());
        let mut add = change(ResourceKind::Node, "web-2", ChangeAction::Create);
        add.fields.push(FieldChange {
            field: "region".into(),
            old: None,
            new: Some("sim-east".into()),
        });
        let set = ChangeSet {
            changes: vec![
                offer,
                add,
                change(ResourceKind::Zone, "example.test", ChangeAction::Delete),
                change(ResourceKind::Firewall, "prod", ChangeAction::Replace),
            ],
            unchanged: 3,
        };
        let text = render(&set);
        assert_eq!(
            text,
            "Nodes\n\
             \x20 !   web-1  (update)\n\
             \x20       offer        sim-small -> sim-large\n\
             \x20       blocked: a resize is not supported yet\n\
             \x20 +   web-2  (create)\n\
             \x20       region       sim-east\n\
             \n\
             DNS zones\n\
             \x20 -   example.test  (delete)\n\
             \n\
             Firewall sets\n\
             \x20 -/+ prod  (replace)\n\
             \n\
             Plan: 1 to create, 1 to change, 1 to replace, 1 to delete, 1 blocked.\n"
        );
        assert!(render(&ChangeSet::default()).starts_with("No changes"));
    }

    #[test]
    fn remote_strings_are_shown_escaped() {
        let mut c = change(ResourceKind::Node, "web-1", ChangeAction::Update);
        c.fields.push(FieldChange {
            field: "offer".into(),
            old: Some("evil\x1b[2J".into()),
            new: Some("sim-large".into()),
        });
        let text = render(&ChangeSet {
            changes: vec![c],
            unchanged: 0,
        });
        assert!(!text.contains('\x1b'), "{text:?}");
        assert!(text.contains("\\x1b[2J"), "{text:?}");
    }
}
