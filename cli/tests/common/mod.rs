//! What the CLI's end-to-end tests share: running the real `healthcloud` binary, and finding
//! and waiting for the servers it starts.
#![allow(dead_code, reason = "each test binary uses some of these")]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// The `healthcloud` binary with `args`, run in `dir`, with none of the caller's settings.
pub fn command_in(dir: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_healthcloud"));
    command.args(args).current_dir(dir);
    for setting in [
        "HEALTHCLOUD_DATABASE_URL",
        "HEALTHCLOUD_SERVER",
        "HEALTHCLOUD_TOKEN",
    ] {
        command.env_remove(setting);
    }
    command
}

/// Runs `healthcloud args` in `dir`.
pub fn healthcloud_in(dir: &Path, args: &[&str]) -> Output {
    command_in(dir, args)
        .output()
        .expect("the healthcloud binary runs")
}

/// Runs `healthcloud args` in the current directory.
pub fn healthcloud(args: &[&str]) -> Output {
    healthcloud_in(Path::new("."), args)
}

/// Runs `healthcloud args` in `dir`, which must succeed; its stdout.
pub fn succeed_in(dir: &Path, args: &[&str]) -> String {
    let output = healthcloud_in(dir, args);
    assert!(
        output.status.success(),
        "{args:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stderr),
        String::from_utf8_lossy(&output.stdout)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// Runs `healthcloud args`, which must succeed; its stdout.
pub fn succeed(args: &[&str]) -> String {
    succeed_in(Path::new("."), args)
}

/// Runs `healthcloud args` in `dir`, which must fail; its stderr.
pub fn fail_in(dir: &Path, args: &[&str]) -> String {
    let output = healthcloud_in(dir, args);
    assert!(
        !output.status.success(),
        "{args:?} succeeded:\n{}",
        String::from_utf8_lossy(&output.stdout)
    );
    String::from_utf8(output.stderr).unwrap()
}

/// A loopback port nobody listens on now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Waits until a server listens on `port`.
pub fn wait_for(port: u16, what: &str) {
    let started = std::time::Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            started.elapsed().as_secs() < 60,
            "{what} did not start serving"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// A bare HTTP/1.1 GET over loopback: status code and body.
pub fn http_get(port: u16, path: &str, token: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response.split(' ').nth(1).unwrap().parse().unwrap();
    (status, response)
}

/// A running `healthcloud up` whose output the test reads.
pub struct Up {
    child: Child,
    lines: mpsc::Receiver<String>,
    pub url: String,
}

impl Up {
    /// Starts `healthcloud up` on `data_dir`, pausing publishes at `pause_at`, and waits until
    /// it says it is up.
    pub fn start(data_dir: &Path, port: u16, pause_at: Option<&str>) -> Up {
        Self::start_on(data_dir, None, port, pause_at)
    }

    /// [`Up::start`] on the database at `database_url` (SQLite in the data dir when `None`).
    pub fn start_on(
        data_dir: &Path,
        database_url: Option<&str>,
        port: u16,
        pause_at: Option<&str>,
    ) -> Up {
        Self::start_listening(data_dir, database_url, "127.0.0.1", port, pause_at)
    }

    /// [`Up::start_on`] listening on `host` (the URL stays on loopback).
    pub fn start_listening(
        data_dir: &Path,
        database_url: Option<&str>,
        host: &str,
        port: u16,
        pause_at: Option<&str>,
    ) -> Up {
        let mut command = command_in(
            data_dir,
            &[
                "up",
                "--data-dir",
                data_dir.to_str().unwrap(),
                "--addr",
                &format!("{host}:{port}"),
            ],
        );
        command.env_remove("HEALTHCLOUD_STORE_PAUSE_AT");
        if let Some(url) = database_url {
            command.args(["--database-url", url]);
        }
        if let Some(step) = pause_at {
            command.env("HEALTHCLOUD_STORE_PAUSE_AT", step);
        }
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (send, lines) = mpsc::channel();
        for stream in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let send = send.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    let _ = send.send(line);
                }
            });
        }
        drop(send);
        let up = Up {
            child,
            lines,
            url: format!("http://127.0.0.1:{port}"),
        };
        up.wait_for_line("healthcloud is up");
        up
    }

    pub fn wait_for_line(&self, text: &str) {
        self.line_containing(text);
    }

    /// The first line from now on that contains `text` (panics after five minutes).
    pub fn line_containing(&self, text: &str) -> String {
        let deadline = std::time::Instant::now() + Duration::from_secs(300);
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.contains(text) => return line,
                Ok(line) => seen.push(line),
                Err(error) => panic!(
                    "healthcloud up never printed '{text}' ({error}); it printed:\n{}",
                    seen.join("\n")
                ),
            }
        }
    }

    /// SIGKILL: no destructor, no flush, no shutdown.
    pub fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

/// A test that fails midway leaves no server behind.
impl Drop for Up {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
