//! sensorctl: the admin CLI. See docs/operations.md.

use std::process::ExitCode;

use clap::Parser;
use sensor_user::cli::{self, Cli};

fn main() -> ExitCode {
    let args = Cli::parse();
    match cli::run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sensorctl: {e:#}");
            ExitCode::from(cli::exit_code(&e))
        }
    }
}
