//! Plain-text tables of a snapshot, for terminals without the dashboard and for logs.
//! Strings that come from providers go through [`clean`] before printing, so a hostile
//! name cannot move the cursor: its control characters show escaped.

use std::fmt::Write;

use crate::engine::snapshot::{AppSnapshot, ApplyView};

/// Remote text with its control, C1 and bidi characters shown escaped
/// ([`crate::core::text::clean`], owned for the views' formatting).
pub fn clean(s: &str) -> String {
    crate::core::text::clean(s).into_owned()
}

fn trim(s: &str, max: usize) -> String {
    let s = clean(s);
    if s.chars().count() <= max {
        s
    } else {
        let mut t: String = s.chars().take(max.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}

pub fn apply_line(apply: &ApplyView) -> String {
    match apply {
        ApplyView::Idle => "apply: idle".into(),
        ApplyView::Running {
            id,
            stage,
            total,
            settled,
            failed,
        } => format!("apply #{id}: {stage} {settled}/{total} settled, {failed} failed"),
        ApplyView::Finished { id, ok: true, .. } => format!("apply #{id}: converged"),
        // Not converged without a failure: what still differs, and why.
        ApplyView::Finished {
            id,
            failed,
            waiting,
            ..
        } if failed.is_empty() => format!(
            "apply #{id}: not converged, {} still differ: {}",
            waiting.len(),
            waiting.join("; ")
        ),
        ApplyView::Finished { id, failed, .. } => {
            format!(
                "apply #{id}: {} failed: {}",
                failed.len(),
                failed.join(", ")
            )
        }
    }
}

/// The whole snapshot as text: header, nodes, zones, firewalls.
pub fn render(snap: &AppSnapshot) -> String {
    let mut out = String::new();
    let providers: Vec<String> = snap
        .providers
        .iter()
        .map(|p| format!("{} {}", p.id, p.health))
        .collect();
    let _ = writeln!(
        out,
        "Legion  home {}  {:?}  providers [{}]  {}",
        snap.home,
        snap.lock,
        providers.join(", "),
        apply_line(&snap.apply)
    );
    // STATUS is the one state column (`engine::status`); `nodes show` has the rest.
    let _ = writeln!(
        out,
        "{:<14} {:<6} {:<10} {:<26} {:<16} NOTE",
        "NODE", "PROV", "REGION", "STATUS", "ADDRESS"
    );
    for n in &snap.nodes {
        let note = n
            .last_error
            .as_deref()
            .or(n.waiting.as_deref())
            .unwrap_or("");
        let _ = writeln!(
            out,
            "{:<14} {:<6} {:<10} {:<26} {:<16} {}",
            trim(&n.name, 14),
            trim(&n.provider, 6),
            trim(&n.region, 10),
            trim(&n.status.to_string(), 26),
            trim(n.address.as_deref().unwrap_or("-"), 16),
            trim(note, 60),
        );
    }
    for (title, rows) in [
        ("ZONE", &snap.zones),
        ("FIREWALL", &snap.firewalls),
        ("DOMAIN", &snap.domains),
    ] {
        if rows.is_empty() {
            continue;
        }
        let _ = writeln!(
            out,
            "{:<22} {:<8} {:<18} {:<28} WAITING / ERROR",
            title, "PROV", "STATUS", "SUMMARY"
        );
        for r in rows.iter() {
            let note = r
                .last_error
                .as_deref()
                .or(r.waiting.as_deref())
                .unwrap_or("");
            let _ = writeln!(
                out,
                "{:<22} {:<8} {:<18} {:<28} {}",
                trim(&r.name, 22),
                trim(&r.provider, 8),
                r.status.to_string(),
                trim(&r.summary, 28),
                trim(note, 60)
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remote_text_cannot_move_the_cursor() {
        assert_eq!(clean("web\u{1b}[2J-1\r\n"), "web\\x1b[2J-1\\r\\n");
        assert_eq!(clean("web-1"), "web-1");
        assert_eq!(trim("abcdef", 4), "abc…");
    }
}
