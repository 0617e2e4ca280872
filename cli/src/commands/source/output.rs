//! How `source` commands print sources for people.

use healthcloud_integration::admin::{Origin, SourceView};
use healthcloud_integration::sources_file::SourceEntry;

use crate::commands::table::print_table;

/// The sources with their health, one row each.
pub(super) fn print_health(views: &[SourceView]) {
    let rows: Vec<[String; 7]> = views
        .iter()
        .map(|view| {
            let status = &view.status;
            let mut name = status.name.clone();
            match view.configured_in {
                Origin::File => {}
                Origin::CommandLine => name.push_str(" (--source)"),
                Origin::Server => name.push_str(" (built in)"),
            }
            [
                name,
                or_dash(status.organization.clone()),
                status.base.clone(),
                or_dash(status.last_success.clone()),
                or_dash(status.latency_ms.map(|ms| format!("{ms} ms"))),
                status.failures_in_a_row.to_string(),
                or_dash(status.skipped_for_secs.map(|s| format!("{s} s more"))),
            ]
        })
        .collect();
    print_table(
        [
            "NAME",
            "ORGANIZATION",
            "BASE",
            "LAST SUCCESS",
            "LATENCY",
            "FAILURES",
            "SKIPPED",
        ],
        &rows,
    );
}

/// The sources as configured, one row each (no server: no health).
pub(super) fn print_configured(entries: &[SourceEntry]) {
    let rows: Vec<[String; 5]> = entries
        .iter()
        .map(|entry| {
            [
                entry.name.clone(),
                or_dash(entry.organization.clone()),
                entry.base.clone(),
                entry.auth.as_str().to_owned(),
                entry
                    .types
                    .as_ref()
                    .map_or("all it declares".to_owned(), |types| types.join(", ")),
            ]
        })
        .collect();
    print_table(["NAME", "ORGANIZATION", "BASE", "AUTH", "TYPES"], &rows);
}

/// One source's health after a check or a change, in a few lines.
pub(super) fn print_one(view: &SourceView) {
    let status = &view.status;
    println!("{}  {}", status.name, status.base);
    match &status.types {
        Some(types) => println!("  types:        {}", types.join(", ")),
        None => println!("  types:        not read yet"),
    }
    if let Some(latency) = status.latency_ms {
        println!("  latency:      {latency} ms");
    }
    if status.failures_in_a_row > 0
        && let Some(last) = status.recent_failures.last()
    {
        println!(
            "  warning:      {} ({} failures in a row; it is retried on use)",
            last.error, status.failures_in_a_row
        );
    }
}

fn or_dash(value: Option<String>) -> String {
    value.unwrap_or_else(|| "-".to_owned())
}
