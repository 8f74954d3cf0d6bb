//! `legion plan`: what an apply of the current plan would change, grouped by resource kind
//! with Terraform's markers (`+` create, `~` update, `-/+` replace, `-` delete; `?` not
//! observed yet; `!` a change apply cannot make now, with why), `--json`, and
//! `--detailed-exitcode` (0 nothing to do, 2 changes, 1 error).
//!
//! The change set is the engine's (`engine::changes`); this file only prints it, and
//! [`render`] is shared with `legion apply`, which shows the plan before it starts.
//! `plan` takes subcommands (`show` is the default): `export` writes the plan as one
//! document and `import FILE` makes a document the plan, as one edit, after the engine
//! checked all of it (`engine::plan_file`); refusals are printed with their line in the
//! file.

use color_eyre::eyre::{Context as _, Result, eyre};
use std::fmt::Write as _;
use std::io::IsTerminal as _;
use std::path::PathBuf;

use super::Cli;
use super::exit::PlanHasChanges;
use super::output::{clean, json, outln, print_block};
use super::session::with_link;
use crate::engine::changes::{Change, ChangeAction, ChangeSet};
use crate::engine::plan_file::text::{Format, Locator, parse as parse_document};
use crate::engine::plan_file::{EntryChanges, ImportMode, ImportReport, PlanDiff, PlanDocument};
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
    /// Write the plan as one document (JSON, or TOML), sorted by name: nodes, clusters,
    /// zones and records, firewall rules, domains. No secrets, nothing tracked.
    Export(ExportArgs),
    /// Make a document (as `export` writes it) the plan, as one edit. The whole file is
    /// checked first; any error (with its line) changes nothing. Then prints what an
    /// apply would do.
    Import(ImportArgs),
}

#[derive(clap::Args, Clone, Default)]
pub(crate) struct ExportArgs {
    /// The document's format (default: from the output file's name, else JSON).
    #[arg(long, value_enum)]
    format: Option<Format>,
    /// Write to this file instead of stdout.
    #[arg(long, short = 'o')]
    output: Option<PathBuf>,
}

#[derive(clap::Args, Clone, Default)]
pub(crate) struct ImportArgs {
    /// The document; `-` reads stdin.
    file: PathBuf,
    /// The document's format (default: from the file's name, `.toml`, else JSON).
    #[arg(long, value_enum)]
    format: Option<Format>,
    /// The file is the whole plan: what it does not name is removed (the default).
    #[arg(long, conflicts_with = "merge")]
    replace: bool,
    /// Entries of the file replace the plan's entries of the same name; others stay.
    #[arg(long)]
    merge: bool,
    /// Check the file and say what would change; change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Remove nodes without asking on a terminal.
    #[arg(long, short = 'y')]
    yes: bool,
}

/// Under `--readonly`: the command's name and what it would change, for the subcommands
/// that change something (`import`, except a dry run).
pub(crate) fn writes(args: &PlanArgs) -> Option<(&'static str, &'static str)> {
    match &args.command {
        Some(PlanCommand::Import(i)) if !i.dry_run => Some(("plan import", "changes the plan")),
        _ => None,
    }
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
        Some(PlanCommand::Export(export)) => export_plan(cli, export).await,
        Some(PlanCommand::Import(import)) => import_plan(cli, import).await,
        None => show_plan(cli, &args.show).await,
    }
}

async fn export_plan(cli: &Cli, args: &ExportArgs) -> Result<()> {
    use std::io::Write as _;
    let plan = with_link(cli, async |l: &Link| Ok(l.plan().await?)).await?;
    let format = args
        .format
        .or_else(|| args.output.as_deref().map(Format::of_path))
        .unwrap_or_default();
    let text = crate::engine::plan_file::text::render(&PlanDocument::from_plan(&plan), format)?;
    match &args.output {
        Some(path) => std::fs::write(path, text)
            .with_context(|| format!("writing the plan to {}", path.display()))?,
        None => {
            let mut out = std::io::stdout().lock();
            out.write_all(text.as_bytes())?;
            out.flush()?;
        }
    }
    Ok(())
}

async fn import_plan(cli: &Cli, args: &ImportArgs) -> Result<()> {
    use std::io::Read as _;
    let shown = args.file.display().to_string();
    let text = if shown == "-" {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .context("reading the plan document from stdin")?;
        s
    } else {
        std::fs::read_to_string(&args.file)
            .with_context(|| format!("reading the plan document {shown}"))?
    };
    let format = args.format.unwrap_or_else(|| Format::of_path(&args.file));
    let doc = parse_document(&text, format).map_err(|e| {
        eprintln!(
            "legion: {}:{}:{}: {}",
            clean(&shown),
            e.line,
            e.column,
            clean(&e.message)
        );
        eyre!("{} could not be read; nothing was changed", clean(&shown))
    })?;
    let mode = if args.merge {
        ImportMode::Merge
    } else {
        ImportMode::Replace
    };
    let terminal = std::io::stdin().is_terminal() && std::io::stdout().is_terminal();
    let ask = terminal && !args.yes && !args.dry_run && shown != "-";
    let refused = |report: &ImportReport| -> Result<()> {
        if report.problems.is_empty() {
            return Ok(());
        }
        print_problems(&shown, &text, format, report);
        Err(eyre!(
            "{} errors in {}; nothing was changed",
            report.problems.len(),
            clean(&shown)
        ))
    };
    with_link(cli, async |l: &Link| {
        if ask {
            // Removing nodes tears servers down at the next apply: show them and ask.
            let preview = l.import_plan(doc.clone(), mode, true).await?;
            refused(&preview)?;
            let removed = &preview.diff.nodes.removed;
            if !removed.is_empty() {
                outln!("{}", clean(&describe(&preview.diff)));
                outln!("These planned nodes are not in {} and would be removed from the plan (the next apply tears them down):", clean(&shown));
                for n in removed {
                    outln!("  - {}", clean(n));
                }
                let question = format!("Remove {} nodes from the plan?", removed.len());
                if !tokio::task::spawn_blocking(move || ask_yes(&question)).await?? {
                    return Err(eyre!("import cancelled; nothing was changed"));
                }
            }
        }
        let report = l.import_plan(doc, mode, args.dry_run).await?;
        refused(&report)?;
        if report.diff.is_empty() {
            outln!("{} matches the plan; nothing to import", clean(&shown));
        } else if !report.applied {
            outln!("{} would change the plan: {}; nothing was changed (--dry-run)", clean(&shown), clean(&describe(&report.diff)));
            for n in &report.diff.nodes.removed {
                outln!("  would remove node {}", clean(n));
            }
            return Ok(());
        } else {
            outln!("imported {}: {}", clean(&shown), clean(&describe(&report.diff)));
        }
        let set = l.changes().await?;
        print_block(&render(&set));
        if !set.is_empty() {
            outln!("Run `legion apply` to make it so.");
        }
        Ok(())
    })
    .await
}

/// Every refusal on stderr as `FILE:LINE:COLUMN: entry: message`, in file order.
fn print_problems(file: &str, text: &str, format: Format, report: &ImportReport) {
    let locator = Locator::new(text, format);
    let mut placed: Vec<_> = report
        .problems
        .iter()
        .map(|p| {
            let entry = p.path.join(".");
            let message = if entry.is_empty() {
                p.message.clone()
            } else {
                format!("{entry}: {}", p.message)
            };
            locator.place(&p.path, p.field.as_deref(), message)
        })
        .collect();
    placed.sort_by_key(|p| (p.line, p.column));
    for p in placed {
        eprintln!(
            "legion: {}:{}:{}: {}",
            clean(file),
            p.line,
            p.column,
            clean(&p.message)
        );
    }
}

/// `nodes 3 added, 1 changed; zones 1 removed` (kinds with no change left out).
fn describe(diff: &PlanDiff) -> String {
    let kinds: [(&str, &EntryChanges); 5] = [
        ("nodes", &diff.nodes),
        ("clusters", &diff.clusters),
        ("zones", &diff.zones),
        ("firewall sets", &diff.firewalls),
        ("domains", &diff.domains),
    ];
    let mut parts: Vec<String> = kinds
        .iter()
        .filter(|(_, c)| !c.is_empty())
        .map(|(kind, c)| {
            let counts: Vec<String> = [
                (c.added.len(), "added"),
                (c.changed.len(), "changed"),
                (c.removed.len(), "removed"),
            ]
            .iter()
            .filter(|(n, _)| *n > 0)
            .map(|(n, what)| format!("{n} {what}"))
            .collect();
            format!("{kind} {}", counts.join(", "))
        })
        .collect();
    if diff.management_sources {
        parts.push("management sources changed".into());
    }
    if parts.is_empty() {
        "no changes".into()
    } else {
        parts.join("; ")
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
    ask_yes("Apply these changes?")
}

/// Ask `question` on the terminal; only `yes` proceeds.
fn ask_yes(question: &str) -> Result<bool> {
    use std::io::Write as _;
    let mut stdout = std::io::stdout();
    let _ = write!(stdout, "{question} Only 'yes' is accepted: ");
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
