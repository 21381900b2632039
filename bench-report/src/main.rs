//! The `bench-report` command (see the library's docs).

use std::path::PathBuf;
use std::process::ExitCode;

use bench_report::{Error, Result, report, root, run};
use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    version,
    about = "The project's benchmarks: run them, and write docs/BENCHMARKS.md from their JSON"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Write the generated part of docs/BENCHMARKS.md (between its
    /// `bench-report` markers) from docs/bench/*.json; the rest of the page
    /// is kept.
    Report {
        /// The documents (default: docs/bench under the repository).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// The page (default: docs/BENCHMARKS.md under the repository;
        /// created with a title if missing; `-`: the generated part, with
        /// its markers, on stdout).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Write nothing; fail if the page is not what the documents give.
        #[arg(long)]
        check: bool,
    },
    /// Run benchmarks (all by default), save their JSON under docs/bench,
    /// then write the page. Server URLs: BENCH_POSTGRES_URL,
    /// BENCH_REDIS_URL, BENCH_REDIS_CLUSTER_URL, BENCH_MONGO_URL, each
    /// defaulting to the test servers' BROKER_TEST_*_URL.
    Run(run::RunArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let outcome = match cli.command {
        Command::Report { dir, out, check } => report_cmd(dir, out, check),
        Command::Run(args) => {
            // The page even when a benchmark failed (the run still fails).
            let ran = run::run(&root(), &args);
            let (out, page) = args.destinations(&root());
            let written = report_cmd(Some(out), Some(page), false);
            ran.and(written)
        }
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench-report: {e}");
            ExitCode::FAILURE
        }
    }
}

fn report_cmd(dir: Option<PathBuf>, out: Option<PathBuf>, check: bool) -> Result<()> {
    let dir = dir.unwrap_or_else(|| root().join("docs/bench"));
    let out = out.unwrap_or_else(|| root().join("docs/BENCHMARKS.md"));
    if out.as_os_str() == "-" {
        let region = report::render(&bench_report::docs::BenchDir::load(&dir)?);
        print!(
            "{}\n{}\n{}\n",
            report::BEGIN,
            region.trim_end(),
            report::END
        );
        return Ok(());
    }
    let page = report::regenerate(&dir, &out)?;
    if check {
        let now = bench_report::docs::read(&out)?;
        return if now == page {
            Ok(())
        } else {
            Err(Error::run(
                format!("{} is stale", out.display()),
                "regenerate it with `cargo run -p bench-report -- report`",
            ))
        };
    }
    std::fs::write(&out, page).map_err(|source| Error::Write {
        path: out.clone(),
        source,
    })?;
    eprintln!("wrote {}", out.display());
    Ok(())
}
