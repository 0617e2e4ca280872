//! Renders a run's results twice from the same tables: aligned text for the terminal and
//! markdown for `bench/RESULTS.md`.

use std::fmt::Write as _;
use std::time::Duration;

use crate::fhir::{Config, Results, import_rate};
use crate::machine::Machine;
use crate::stats::{Latency, ms, per_second, rate, secs, share, thousands};

/// Import throughput the store should reach on the reference 2-core machine.
pub const IMPORT_TARGET_PER_SEC: f64 = 20_000.0;
/// In-process p99 latency the patient-compartment search should stay under.
pub const SEARCH_P99_TARGET: Duration = Duration::from_millis(5);

/// A titled table.
#[derive(Debug)]
pub struct Table {
    title: String,
    note: Option<String>,
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    fn new(title: &str, header: &[&str]) -> Table {
        Table {
            title: title.to_owned(),
            note: None,
            header: header.iter().map(|h| (*h).to_owned()).collect(),
            rows: Vec::new(),
        }
    }

    fn note(mut self, note: &str) -> Table {
        self.note = Some(note.to_owned());
        self
    }

    fn row(&mut self, cells: &[String]) {
        self.rows.push(cells.to_vec());
    }
}

/// Everything printed and written about one run.
#[derive(Debug)]
pub struct Report {
    /// When the run started (UTC, RFC 3339).
    pub date: String,
    /// The command line, as typed.
    pub command: String,
    /// The tables.
    pub tables: Vec<Table>,
}

/// `"yes"`/`"NO"`: a miss must stand out.
fn met(ok: bool) -> String {
    if ok { "yes".into() } else { "NO".into() }
}

/// Builds the report of a run.
pub fn build(
    date: String,
    command: String,
    machine: &Machine,
    config: &Config,
    results: &Results,
) -> Report {
    let import = &results.import;
    let search = &results.search;
    let mut tables = Vec::new();

    let mut setup = Table::new("Setup", &["", ""]);
    for (key, value) in [
        ("date (UTC)", date.clone()),
        ("command", format!("`{command}`")),
        ("nproc", machine.nproc.to_string()),
        ("CPU", machine.cpu_model.clone()),
        ("memory", machine.memory.clone()),
        (
            "load average at start / end (1/5/15 min)",
            format!("{} / {}", machine.load_average.0, machine.load_average.1),
        ),
        ("rustc", machine.rustc.clone()),
        (
            "database",
            format!(
                "embedded SQLite (WAL, synchronous=FULL) on {}",
                machine.filesystem
            ),
        ),
        ("patients", thousands(config.patients as u64)),
        (
            "seed / synth today",
            format!("{} / {}", config.seed, config.today),
        ),
    ] {
        setup.row(&[key.into(), value]);
    }
    tables.push(setup);

    let mut headline = Table::new("Results", &["figure", "value", "target", "met"]);
    let rate_value = import_rate(import);
    headline.row(&[
        "FHIR import throughput".into(),
        format!("{} resources/s", rate(import.resources, import.elapsed)),
        format!("≥ {} resources/s", thousands(IMPORT_TARGET_PER_SEC as u64)),
        met(rate_value >= IMPORT_TARGET_PER_SEC),
    ]);
    headline.row(&[
        "FHIR import, Bundles".into(),
        format!("{} Bundles/s", rate(import.bundles, import.elapsed)),
        String::new(),
        String::new(),
    ]);
    for (name, timed) in [
        ("search, raw store", &search.raw),
        ("search, FhirService (clinician)", &search.service),
    ] {
        let latency = &timed.latency;
        headline.row(&[
            format!("{name}: p50 / p99 / max"),
            latency_triple(latency),
            format!("p99 ≤ {}", ms(SEARCH_P99_TARGET)),
            met(latency.p99 <= SEARCH_P99_TARGET),
        ]);
    }
    if let Some(generate) = &results.generate {
        headline.row(&[
            "data generate (load_synthetic)".into(),
            format!(
                "{} resources/s ({} patients/s)",
                rate(generate.resources, generate.elapsed),
                rate(generate.patients, generate.elapsed)
            ),
            String::new(),
            String::new(),
        ]);
    }
    tables.push(headline);

    let corpus = &results.corpus;
    let per_resource = |d: Duration| {
        format!(
            "{:.1} µs",
            d.as_secs_f64() * 1e6 / import.resources.max(1) as f64
        )
    };
    let mut detail = Table::new("Import: where the time goes", &["part", "time", "share", "per resource"]).note(
        "Input: one transaction Bundle per patient (urn:uuid fullUrls, POST entries, references between the \
         patient's resources rewritten to the fullUrls, like Synthea), held in memory as serialized JSON and \
         parsed inside the timed loop (the file → store path). Organizations first, as one Bundle of PUTs. \
         \"prepare\" is the `Importer::add` calls that only queue their Bundle (resolve references, validate, \
         index, serialize); \"store wait\" is the `add` calls that hand a full group of 20,000 resources to \
         the store, plus `finish`: the time the import loop was blocked on SQL INSERTs and COMMITs (if the \
         importer commits in the background, only the part that preparing the next group did not hide). \
         CPU time is the whole process, all threads: above the wall time means both cores were busy.",
    );
    detail.row(&[
        "total".into(),
        secs(import.elapsed),
        "100 %".into(),
        per_resource(import.elapsed),
    ]);
    for (name, time) in [
        ("parse Bundle JSON (serde_json)", import.parse),
        ("prepare (Importer::add queuing a Bundle)", import.prepare),
        (
            &*format!("store wait ({} groups: SQL INSERT + COMMIT)", import.groups),
            import.store_wait,
        ),
    ] {
        detail.row(&[
            name.into(),
            secs(time),
            share(time, import.elapsed),
            per_resource(time),
        ]);
    }
    let usage = &import.usage;
    for (name, time) in [
        ("CPU time, user (process)", usage.user),
        ("CPU time, kernel (process)", usage.system),
    ] {
        detail.row(&[
            name.into(),
            secs(time),
            share(time, import.elapsed),
            per_resource(time),
        ]);
    }
    tables.push(detail);

    let mut volume = Table::new("Import: volume", &["", ""]);
    let cpu = &results.cpu;
    let per_sampled = |n: usize| n as f64 / cpu.resources.max(1) as f64;
    for (key, value) in [
        (
            "resources / Bundles written",
            format!(
                "{} / {}",
                thousands(import.resources as u64),
                thousands(import.bundles as u64)
            ),
        ),
        (
            "Bundle JSON in memory",
            format!("{:.0} MiB", corpus.bytes as f64 / (1 << 20) as f64),
        ),
        ("corpus build time (untimed)", secs(corpus.build_time)),
        (
            "index rows per resource (sample)",
            format!(
                "{:.1} token + {:.1} date, + 1 resource row",
                per_sampled(cpu.token_rows),
                per_sampled(cpu.date_rows)
            ),
        ),
        (
            "stored JSON per resource (sample)",
            format!("{:.0} bytes", per_sampled(cpu.content_bytes)),
        ),
        (
            "storage traffic during import (read / written)",
            format!(
                "{:.0} MiB / {:.0} MiB",
                import.usage.read_bytes as f64 / (1 << 20) as f64,
                import.usage.write_bytes as f64 / (1 << 20) as f64
            ),
        ),
        (
            "database size after import",
            format!("{:.0} MiB", import.db_bytes as f64 / (1 << 20) as f64),
        ),
        ("peak RSS (corpus + import)", import.peak_rss.clone()),
    ] {
        volume.row(&[key.into(), value]);
    }
    tables.push(volume);

    let per = |d: Duration| {
        format!(
            "{:.1} µs",
            d.as_secs_f64() * 1e6 / cpu.resources.max(1) as f64
        )
    };
    let prepare_per_resource = import.prepare / import.resources.max(1) as u32;
    let measured = (cpu.validate + cpu.prepared) / cpu.resources.max(1) as u32;
    let mut steps = Table::new("Import: prepare steps one by one (sample)", &["step", "per resource"]).note(&format!(
        "The importer's CPU steps re-run separately on the first {} Bundles ({} resources), outside the timed \
         import. \"the rest\" is the timed prepare per resource minus these steps: reference resolution, \
         id assignment and bookkeeping.",
        cpu.bundles,
        thousands(cpu.resources as u64)
    ));
    steps.row(&["parse Bundle JSON".into(), per(cpu.parse)]);
    steps.row(&["validate::resource".into(), per(cpu.validate)]);
    steps.row(&[
        "Prepared::new (meta, index rows, serialize)".into(),
        per(cpu.prepared),
    ]);
    steps.row(&[
        "the rest of prepare (timed prepare − the two above)".into(),
        format!(
            "{:.1} µs",
            prepare_per_resource.saturating_sub(measured).as_secs_f64() * 1e6
        ),
    ]);
    tables.push(steps);

    let mut latencies = Table::new("Search latency", &["path", "p50", "p99", "max", "mean", "samples"]).note(&format!(
        "`Observation?patient=<id>&code=http://loinc.org|85354-9&_sort=-date&_count=100` for {} random \
         patients with blood pressures ({:.1} matches each on average), {} timed passes after one untimed \
         warm-up pass. Timings include parsing the query. Every answer is checked against the imported \
         data. The service runs as a clinician (token with organization and practitioner, so the consent \
         check runs) and writes an AuditEvent per search. Each path has a time budget of {:.0} s \
         (warm-up: a quarter of it); \"samples\" says how many of the planned queries ran within it.",
        search.patients,
        search.mean_matches,
        config.rounds,
        config.search_budget.as_secs_f64()
    ));
    for (name, timed) in [
        ("raw store.search", &search.raw),
        ("  of which COUNT(*) only (`_count=0`)", &search.count_only),
        (
            "FhirService::search (policy + consent + audit)",
            &search.service,
        ),
        (
            "  audit write alone (1 AuditEvent, own transaction)",
            &search.audit_write,
        ),
    ] {
        let samples = if timed.truncated() {
            format!("{} of {} (budget)", timed.latency.samples, timed.planned)
        } else {
            timed.latency.samples.to_string()
        };
        let l = &timed.latency;
        latencies.row(&[
            name.into(),
            ms(l.p50),
            ms(l.p99),
            ms(l.max),
            ms(l.mean),
            samples,
        ]);
    }
    tables.push(latencies);

    if let Some(generate) = &results.generate {
        let mut table = Table::new("data generate (load_synthetic)", &["", ""]);
        table.row(&[
            "patients / resources".into(),
            format!(
                "{} / {}",
                thousands(generate.patients as u64),
                thousands(generate.resources as u64)
            ),
        ]);
        table.row(&["wall time".into(), secs(generate.elapsed)]);
        table.row(&[
            "throughput".into(),
            format!(
                "{:.0} resources/s",
                per_second(generate.resources, generate.elapsed)
            ),
        ]);
        tables.push(table);
    }

    Report {
        date,
        command,
        tables,
    }
}

fn latency_triple(l: &Latency) -> String {
    format!("{} / {} / {}", ms(l.p50), ms(l.p99), ms(l.max))
}

impl Report {
    /// Aligned plain text for the terminal.
    pub fn text(&self) -> String {
        let mut out = String::new();
        for table in &self.tables {
            let _ = writeln!(out, "\n== {} ==", table.title);
            let columns = table.header.len();
            let width = |c: usize| {
                std::iter::once(&table.header)
                    .chain(&table.rows)
                    .map(|row| row.get(c).map_or(0, |cell| cell.chars().count()))
                    .max()
                    .unwrap_or(0)
            };
            let widths: Vec<usize> = (0..columns).map(width).collect();
            let line = |row: &[String]| {
                row.iter()
                    .zip(&widths)
                    .map(|(cell, w)| format!("{cell:<w$}"))
                    .collect::<Vec<_>>()
                    .join("  ")
                    .trim_end()
                    .to_owned()
            };
            if table.header.iter().any(|h| !h.is_empty()) {
                let _ = writeln!(out, "{}", line(&table.header));
            }
            for row in &table.rows {
                let _ = writeln!(out, "{}", line(row));
            }
        }
        out
    }

    /// The contents of RESULTS.md.
    pub fn markdown(&self) -> String {
        let mut out = String::from("# healthcloud benchmark results\n\n");
        let _ = writeln!(
            out,
            "Written by `healthcloud-bench` on {}; regenerate with `{}`. See `bench/README.md` for what each \
             figure means.\n",
            self.date, self.command
        );
        for table in &self.tables {
            let _ = writeln!(out, "## {}\n", table.title);
            if let Some(note) = &table.note {
                let _ = writeln!(out, "{note}\n");
            }
            let escape = |cell: &str| cell.replace('|', "\\|");
            let _ = writeln!(
                out,
                "| {} |",
                table
                    .header
                    .iter()
                    .map(|h| escape(h))
                    .collect::<Vec<_>>()
                    .join(" | ")
            );
            let _ = writeln!(out, "|{}", "---|".repeat(table.header.len()));
            for row in &table.rows {
                let _ = writeln!(
                    out,
                    "| {} |",
                    row.iter()
                        .map(|c| escape(c))
                        .collect::<Vec<_>>()
                        .join(" | ")
                );
            }
            out.push('\n');
        }
        out
    }
}
