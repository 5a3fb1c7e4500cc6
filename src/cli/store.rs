//! `dockless du`, `dockless prune`, and the size limit (`DOCKLESS_STORE_LIMIT`) kept after
//! each build.

use std::process::ExitCode;
use std::time::SystemTime;

use super::args::{Command, DuArgs, PruneArgs, TemplateCommand};
use super::json::DuResult;
use dockless_oci::store::Store;
use dockless_oci::usage::{self, PruneOptions, human_size};

/// The variable that bounds the store after each build.
const LIMIT_VAR: &str = "DOCKLESS_STORE_LIMIT";

/// `dockless du`: each area's items and bytes.
pub fn du(args: &DuArgs) -> anyhow::Result<ExitCode> {
    let root = Store::default_root();
    let areas = usage::du(&root)?;
    let total: u64 = areas.iter().map(|a| a.bytes).sum();
    if args.json {
        let result = DuResult {
            root: &root,
            areas: &areas,
            total_bytes: total,
        };
        println!("{}", serde_json::to_string(&result)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<16}{:>8}{:>10}  {:<18}REMOVED BY",
        "KIND", "ITEMS", "SIZE", "LAST USED"
    );
    for area in &areas {
        let removed_by = match area.pruned_by {
            dockless_oci::areas::PrunedBy::Always => "prune (dead processes' files)",
            dockless_oci::areas::PrunedBy::Default => "prune",
            dockless_oci::areas::PrunedBy::All => "prune --all",
        };
        println!(
            "{:<16}{:>8}{:>10}  {:<18}{removed_by}",
            area.kind.name(),
            area.items,
            human_size(area.bytes),
            area.last_used.map_or_else(|| "-".to_owned(), ago),
        );
    }
    println!("Total:{:>28}", human_size(total));
    Ok(ExitCode::SUCCESS)
}

/// `dockless prune`.
pub fn prune(args: &PruneArgs, quiet: bool) -> anyhow::Result<ExitCode> {
    let mut options = PruneOptions {
        all: args.all,
        ..PruneOptions::default()
    };
    if let Some(size) = &args.keep_storage {
        options.keep_storage = Some(usage::parse_size(size).map_err(super::usage)?);
    }
    for filter in &args.filter {
        options.unused_for = Some(usage::parse_filter(filter).map_err(super::usage)?);
    }
    let pruned = usage::prune(&Store::default_root(), &options, true)?.unwrap_or_default();
    if args.json {
        println!("{}", serde_json::to_string(&pruned)?);
    } else if !quiet {
        for kind in &pruned.removed {
            println!(
                "{:<16}{:>8} removed {:>10}",
                kind.kind.name(),
                kind.items,
                human_size(kind.bytes)
            );
        }
        println!("Total:\t{}", human_size(pruned.bytes));
    }
    Ok(ExitCode::SUCCESS)
}

/// The limit to keep after `command` (one that builds), read before it runs so that a bad
/// value stops it at once.
pub fn limit_for(command: &Command) -> anyhow::Result<Option<u64>> {
    let builds = matches!(
        command,
        Command::Build(_) | Command::Push(_) | Command::Template(TemplateCommand::Build(_))
    );
    match std::env::var(LIMIT_VAR) {
        Ok(text) if builds && !text.trim().is_empty() => {
            let limit = usage::parse_size(&text)
                .map_err(|e| super::usage(super::FlagError(format!("{LIMIT_VAR}: {e}"))))?;
            Ok(Some(limit))
        }
        _ => Ok(None),
    }
}

/// After a build: the store back within `limit`, least recently used first. Skipped while
/// another build uses the store (the last one to end keeps the limit).
pub fn keep_within(limit: u64, quiet: bool) {
    match usage::keep_under(&Store::default_root(), limit) {
        Ok(Some(pruned)) if pruned.bytes > 0 && !quiet => {
            let items: u64 = pruned.removed.iter().map(|k| k.items).sum();
            eprintln!(
                "store: removed {items} least recently used items ({}) to stay within {LIMIT_VAR}={}",
                human_size(pruned.bytes),
                human_size(limit)
            );
        }
        Ok(Some(_)) => {}
        Ok(None) => {
            tracing::info!("another build uses the store: it keeps {LIMIT_VAR} when it ends")
        }
        Err(e) => tracing::warn!("could not keep the store within {LIMIT_VAR}: {e}"),
    }
}

/// "5 minutes ago" from seconds since the epoch.
fn ago(epoch: u64) -> String {
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let seconds = now.saturating_sub(epoch);
    let (count, unit) = match seconds {
        0..60 => (seconds, "second"),
        60..3600 => (seconds / 60, "minute"),
        3600..86_400 => (seconds / 3600, "hour"),
        _ => (seconds / 86_400, "day"),
    };
    let plural = if count == 1 { "" } else { "s" };
    format!("{count} {unit}{plural} ago")
}
