//! `gatekit-server`: the gate alone (the harness's `gatekit serve` runs the same server).

use clap::Parser;
use gatekit_server::cli::ServeArgs;
use std::process::ExitCode;

/// The gatekit gate server.
#[derive(Parser)]
#[command(name = "gatekit-server", version, about)]
struct Args {
    #[command(flatten)]
    serve: ServeArgs,
}

fn main() -> ExitCode {
    gatekit_server::cli::main(Args::parse().serve)
}
