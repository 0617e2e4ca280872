//! `healthcloud`: runs the health cloud and the tools around it. The binary only parses its
//! arguments and runs them ([`Cli`]); [`server::app`] composes what a listener serves, so
//! tests call it with `oneshot`, without a socket.

#![deny(missing_docs)]

mod app_cloud;
mod commands;
mod demo;
mod demo_sources;
mod progress;
mod region_client;
pub mod server;
mod source_client;
mod sources;

pub use commands::Cli;
