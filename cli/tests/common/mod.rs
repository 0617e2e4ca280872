//! What the CLI's end-to-end tests share: running the real `healthcloud` binary, and finding
//! and waiting for the servers it starts.
#![allow(dead_code, reason = "each test binary uses some of these")]

use std::path::Path;
use std::process::{Command, Output};

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
