//! `chatgate`: parse the command line and hand over to the library.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    chatgate::cli::main(chatgate::cli::Cli::parse())
}
