//! `chatgate`: parse the command line and hand over to the library.

use std::process::ExitCode;

use clap::Parser;

/// mimalloc instead of glibc malloc: per-thread free lists, so the runtime
/// workers and the log thread (which frees every line a worker allocated)
/// do not contend on glibc's arenas (BENCHMARKS.md, issue 20).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    chatgate::cli::main(chatgate::cli::Cli::parse())
}
