//! `healthcloud source …` as a real process: on a data directory with no server running it
//! edits and shows `sources.toml`; with `serve integration --source NAME=FHIR_BASE` running,
//! it shows the server's sources with their health through the sources admin API.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::{command_in, fail_in, free_port, succeed_in, wait_for};
use serde_json::Value;

/// `healthcloud source args…` on `data_dir`, asking the server at `server`.
fn source(data_dir: &Path, server: &str, args: &[&str]) -> Vec<String> {
    let mut all = vec!["source".to_owned()];
    all.extend(args.iter().map(|a| a.to_string()));
    all.extend([
        "--data-dir".to_owned(),
        data_dir.to_str().unwrap().to_owned(),
        "--server".to_owned(),
        server.to_owned(),
    ]);
    all
}

fn run(data_dir: &Path, server: &str, args: &[&str]) -> String {
    let all = source(data_dir, server, args);
    let all: Vec<&str> = all.iter().map(String::as_str).collect();
    succeed_in(data_dir, &all)
}

fn fail(data_dir: &Path, server: &str, args: &[&str]) -> String {
    let all = source(data_dir, server, args);
    let all: Vec<&str> = all.iter().map(String::as_str).collect();
    fail_in(data_dir, &all)
}

#[test]
fn without_a_server_sources_are_added_listed_and_removed_in_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let nobody = format!("http://127.0.0.1:{}", free_port());

    let listed = run(data, &nobody, &["list"]);
    assert!(listed.contains("no sources are configured"), "{listed}");

    let added = run(
        data,
        &nobody,
        &[
            "add",
            "gp",
            "http://127.0.0.1:8103/fhir/R4",
            "--organization",
            "Organization/gp-clinic",
            "--types",
            "Observation,Condition",
            "--deadline-secs",
            "2",
        ],
    );
    assert!(added.contains("added source gp"), "{added}");
    run(
        data,
        &nobody,
        &["add", "kommune", "http://127.0.0.1:8104/fhir"],
    );
    let file = std::fs::read_to_string(data.join("sources.toml")).unwrap();
    assert!(file.contains("name = \"gp\""), "{file}");
    assert!(file.contains("deadline-secs = 2.0"), "{file}");

    let listed = run(data, &nobody, &["list"]);
    assert!(listed.contains("the server is not running"), "{listed}");
    let gp = listed.lines().find(|l| l.starts_with("gp ")).unwrap();
    assert!(
        gp.contains("Organization/gp-clinic")
            && gp.contains("http://127.0.0.1:8103/fhir/R4")
            && gp.contains("Observation, Condition"),
        "{gp}"
    );
    let json: Value = serde_json::from_str(&run(data, &nobody, &["list", "--json"])).unwrap();
    assert_eq!(json[1]["name"], "kommune");

    // What the file could not hold is refused, naming the fix; the file is unchanged.
    let refused = fail(data, &nobody, &["add", "GP", "http://127.0.0.1:1/fhir"]);
    assert!(
        refused.contains("lowercase letters, digits and '-'"),
        "{refused}"
    );
    let refused = fail(data, &nobody, &["add", "x", "ftp://127.0.0.1/fhir"]);
    assert!(
        refused.contains("give the source's FHIR base URL"),
        "{refused}"
    );
    assert_eq!(
        std::fs::read_to_string(data.join("sources.toml")).unwrap(),
        file
    );

    let removed = run(data, &nobody, &["remove", "gp"]);
    assert!(removed.contains("removed source gp"), "{removed}");
    let refused = fail(data, &nobody, &["remove", "gp"]);
    assert!(
        refused.contains("configures no source named 'gp'"),
        "{refused}"
    );
    let listed = run(data, &nobody, &["list"]);
    assert!(!listed.contains("gp "), "{listed}");
    assert!(listed.contains("kommune"), "{listed}");

    // A source that is down: check says so from here.
    let refused = fail(data, &nobody, &["check", "kommune"]);
    assert!(
        refused.contains("source 'kommune' could not be reached"),
        "{refused}"
    );
}

/// A `healthcloud serve integration` process, killed when dropped; its output lines.
struct Served {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Served {
    fn start(data_dir: &Path, port: u16, extra: &[&str]) -> Served {
        let mut command = command_in(
            data_dir,
            &[
                "serve",
                "integration",
                "--data-dir",
                data_dir.to_str().unwrap(),
                "--addr",
                &format!("127.0.0.1:{port}"),
            ],
        );
        let mut child = command
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (send, lines) = mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = send.send(line);
            }
        });
        wait_for(port, "serve integration");
        Served { child, lines }
    }

    /// Its lines up to the one containing `text`.
    fn lines_until(&self, text: &str) -> Vec<String> {
        let mut seen = Vec::new();
        loop {
            match self.lines.recv_timeout(Duration::from_secs(60)) {
                Ok(line) if line.contains(text) => return seen,
                Ok(line) => seen.push(line),
                Err(error) => panic!("never printed '{text}' ({error}): {seen:?}"),
            }
        }
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_source_given_with_a_flag_shows_in_source_list_with_its_health() {
    // The upstream: another region's FHIR API node.
    let other_dir = tempfile::tempdir().unwrap();
    let other_port = free_port();
    let _other = Served::start(other_dir.path(), other_port, &[]);
    let other_base = format!("http://127.0.0.1:{other_port}/fhir/r4");

    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let port = free_port();
    let down = format!("http://127.0.0.1:{}/fhir", free_port());
    let node = Served::start(
        data,
        port,
        &[
            "--source",
            &format!("hovedstaden={other_base}"),
            "--source",
            &format!("gone={down}"),
        ],
    );
    // One line per source at start: its types, or the failure with the fix.
    let started = node.lines_until("FHIR API node on").join("\n");
    let line = |name: &str| {
        started
            .lines()
            .find(|l| l.trim_start().starts_with(&format!("{name} ")))
            .unwrap_or_else(|| panic!("no line for {name}: {started}"))
            .to_owned()
    };
    assert!(line("hovedstaden").contains("Observation"), "{started}");
    let gone = line("gone");
    assert!(
        gone.contains("could not be reached") && gone.contains("retried on use"),
        "{gone}"
    );

    let server = format!("http://127.0.0.1:{port}");
    let listed = run(data, &server, &["list"]);
    let row = listed
        .lines()
        .find(|l| l.starts_with("hovedstaden (--source)"))
        .unwrap_or_else(|| panic!("{listed}"));
    assert!(row.contains(&other_base), "{row}");
    assert!(row.contains(" ms"), "the start-up check measured it: {row}");
    let json: Value = serde_json::from_str(&run(data, &server, &["list", "--json"])).unwrap();
    let gone = json
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "gone")
        .unwrap();
    assert_eq!(gone["failures_in_a_row"], 1, "{gone}");
    assert_eq!(gone["configured_in"], "command-line");

    // Added through the running server: used at once, and kept in the file.
    let added = run(
        data,
        &server,
        &["add", "again", &other_base, "--types", "Observation"],
    );
    assert!(added.contains("types:        Observation"), "{added}");
    let file = std::fs::read_to_string(data.join("sources.toml")).unwrap();
    assert!(file.contains("name = \"again\""), "{file}");
    let checked = run(data, &server, &["check", "again"]);
    assert!(checked.contains("latency:"), "{checked}");
    let refused = fail(data, &server, &["check", "gone"]);
    assert!(
        refused.contains("source 'gone' could not be reached"),
        "{refused}"
    );
    run(data, &server, &["remove", "again"]);
    let file = std::fs::read_to_string(data.join("sources.toml")).unwrap();
    assert!(!file.contains("again"), "{file}");

    // A name both in the file and given with --source is refused at start, naming both.
    run(data, &server, &["add", "hovedstaden-file", &other_base]);
    drop(node);
    let clash = command_in(
        data,
        &[
            "serve",
            "integration",
            "--data-dir",
            data.to_str().unwrap(),
            "--addr",
            &format!("127.0.0.1:{}", free_port()),
            "--source",
            &format!("hovedstaden-file={other_base}"),
        ],
    )
    .output()
    .unwrap();
    assert!(!clash.status.success());
    let stderr = String::from_utf8_lossy(&clash.stderr);
    assert!(
        stderr.contains("is given both with --source hovedstaden-file=")
            && stderr.contains("sources.toml"),
        "{stderr}"
    );
}
