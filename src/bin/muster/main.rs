//! The `muster` command line: a thin layer over the library.

use std::fs::File;
use std::io::{self, BufWriter, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

mod progress;
mod state;

use clap::{Parser, Subcommand};
use muster::guard::Verdict;
use muster::plan::{self, FileError, Plan};
use muster::profile::{Date, Profile};
use muster::results::{Outcome, ResultsWriter};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Exit codes (SPEC §5).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Exit {
    /// No line rejected, failed or carrying a code.
    Clean = 0,
    /// The run failed (I/O, LMS unreachable); the next run resumes safely.
    Failed = 1,
    /// Usage or configuration error.
    Usage = 2,
    /// Finished, but some rows were rejected, failed or carry a code.
    Rows = 3,
    /// The file was refused or a safety guard held it: nothing was applied.
    Refused = 4,
}

/// What `--help` adds after the commands: the presets and the exit codes.
const AFTER_HELP: &str = "\
Presets (--profile NAME): mobietrain, winningtemp-users, winningtemp-groups,
  winningtemp-segments, lucca-360learning; or a profile TOML file (docs/profiles.md).

Exit codes:
  0  every line fine
  1  the run failed (I/O, the LMS unreachable): nothing half-applied, the next run resumes
  2  usage or configuration error
  3  finished, but some rows were rejected, failed or carry a code
  4  a file was refused, or held by a safety guard: nothing of it was applied

Examples:
  muster check --profile mobietrain export.csv --results results.csv
  muster diff --profile winningtemp-users monday.csv tuesday.csv
  muster run --config muster.toml --dry-run
  muster gen --profile winningtemp-users --rows 1000 > users.csv";

#[derive(Parser)]
#[command(
    name = "muster",
    version,
    about = "Import HR user snapshots into a learning platform",
    after_help = AFTER_HELP
)]
struct Cli {
    /// How log lines are written on stderr: `text` (colours on a terminal
    /// only) or `json`, one object a line, for log shippers.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

/// The shapes of the log (`--log-format`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Process each tenant's inbox: plan, guard, write through the sink, move to processed/.
    #[command(after_help = "Example: muster run --config muster.toml --tenant acme --dry-run")]
    Run {
        /// The configuration file (tenants, sources, files, sinks, state).
        #[arg(long)]
        config: PathBuf,
        /// Only this tenant.
        #[arg(long)]
        tenant: Option<String>,
        /// Plan and check the guards; write nothing, move nothing.
        #[arg(long)]
        dry_run: bool,
        /// Release files a safety guard holds.
        #[arg(long)]
        force: bool,
        /// "Today" for end dates, YYYY-MM-DD (default: today in each profile's time zone).
        #[arg(long)]
        today: Option<String>,
    },
    /// Run each tenant on its schedule until SIGTERM / SIGINT (logs on stderr).
    #[command(after_help = "Example: muster daemon --config muster.toml")]
    Daemon {
        /// The configuration file.
        #[arg(long)]
        config: PathBuf,
        /// Only this tenant.
        #[arg(long)]
        tenant: Option<String>,
    },
    /// Parse and validate a snapshot: the plan against an empty store.
    #[command(
        after_help = "Example: muster check --profile mobietrain export.csv --results results.csv"
    )]
    Check {
        /// A preset name or a profile TOML file.
        #[arg(long)]
        profile: String,
        /// The snapshot file.
        input: PathBuf,
        /// Where to write the results CSV (default: stdout).
        #[arg(long)]
        results: Option<PathBuf>,
        /// "Today" for end dates, YYYY-MM-DD (default: today in the profile's time zone).
        #[arg(long)]
        today: Option<String>,
    },
    /// The plan a run of NEW would make right after OLD was applied to an empty store.
    #[command(
        after_help = "Example: muster diff --profile winningtemp-users monday.csv tuesday.csv"
    )]
    Diff {
        /// A preset name or a profile TOML file.
        #[arg(long)]
        profile: String,
        /// The snapshot already applied.
        old: PathBuf,
        /// The next snapshot.
        new: PathBuf,
        /// Where to write the results CSV (default: stdout).
        #[arg(long)]
        results: Option<PathBuf>,
        /// "Today" for end dates, YYYY-MM-DD (default: today in the profile's time zone).
        #[arg(long)]
        today: Option<String>,
    },
    /// Each tenant's last run, next run and held files, read from the state stores.
    #[command(after_help = "Example: muster status --config muster.toml --json")]
    Status {
        /// The configuration file.
        #[arg(long)]
        config: PathBuf,
        /// Only this tenant.
        #[arg(long)]
        tenant: Option<String>,
        /// One JSON array, for scripts.
        #[arg(long)]
        json: bool,
    },
    /// Release a held file: the tenant's next run applies it despite the guards.
    #[command(
        after_help = "Example: muster release --config muster.toml --tenant acme wt_users.csv"
    )]
    Release {
        /// The configuration file.
        #[arg(long)]
        config: PathBuf,
        /// The tenant.
        #[arg(long)]
        tenant: String,
        /// The held file's name in the inbox.
        file: String,
    },
    /// Look after a tenant's state store.
    #[command(subcommand)]
    State(StateCommand),
    /// Write a synthetic snapshot to stdout.
    #[command(
        after_help = "Examples:\n  muster gen --profile winningtemp-users --rows 1000 > day1.csv\n  muster gen --profile winningtemp-users --from day1.csv --change-ratio 0.02 > day2.csv"
    )]
    Gen {
        /// A preset name or a profile TOML file.
        #[arg(long)]
        profile: String,
        /// Rows to generate (ignored with --from).
        #[arg(long, default_value_t = 1000)]
        rows: u64,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Derive a changed snapshot from this one.
        #[arg(long)]
        from: Option<PathBuf>,
        /// With --from: the share of rows changed (0.0–1.0, default 0.02).
        #[arg(long, requires = "from")]
        change_ratio: Option<f64>,
        /// With --from: write the rows in a random order.
        #[arg(long, requires = "from")]
        shuffle: bool,
    },
}

#[derive(Subcommand)]
enum StateCommand {
    /// Make a tenant's state store anew from what its sink holds (the LMS's
    /// users and groups by externalId, or the JSONL outbox); the old store
    /// is moved aside.
    #[command(after_help = "Example: muster state rebuild --config muster.toml --tenant acme")]
    Rebuild {
        /// The configuration file.
        #[arg(long)]
        config: PathBuf,
        /// The tenant whose store is rebuilt.
        #[arg(long)]
        tenant: String,
    },
    /// Move a tenant's state between an embedded store file and the
    /// `[cluster]`'s PostgreSQL, then check that the copy holds the same
    /// objects. The destination must hold nothing of the tenant yet.
    #[command(
        after_help = "Examples:\n  muster state copy --config muster.toml --tenant acme --from state/acme.redb   # into the cluster\n  muster state copy --config muster.toml --tenant acme --to acme-back.redb      # out of it"
    )]
    Copy {
        /// The configuration file (with a `[cluster]`).
        #[arg(long)]
        config: PathBuf,
        /// The tenant whose state is copied.
        #[arg(long)]
        tenant: String,
        /// Copy this embedded store into the cluster.
        #[arg(long, conflicts_with = "to", required_unless_present = "to")]
        from: Option<PathBuf>,
        /// Copy the cluster's state of the tenant into this new store file.
        #[arg(long)]
        to: Option<PathBuf>,
    },
}

/// Turns transparent huge pages off for this process. muster writes its
/// large arrays once, front to back; a huge page makes the first touch
/// zero 2 MB at once, and on a VM that first touch is the dearest part of
/// a diff (BENCHMARKS.md has the figures).
fn no_huge_pages() {
    #[cfg(target_os = "linux")]
    // SAFETY: PR_SET_THP_DISABLE takes integer arguments only and changes
    // a flag of this process; no memory is passed.
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
}

fn main() -> ExitCode {
    no_huge_pages();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { Exit::Usage as u8 } else { 0 });
        }
    };
    // The daemon's log is its output: runs, schedules, problems.
    let level = match cli.command {
        Command::Daemon { .. } => "info",
        _ => "warn",
    };
    {
        use tracing_subscriber::filter::{FilterExt, LevelFilter, Targets};
        use tracing_subscriber::prelude::*;
        let env = tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
        // The HTTP and TLS stacks' own logs stay at debug at most, whatever
        // RUST_LOG asks: ureq 3 redacts the Authorization header itself,
        // but a request's URL and a handshake's details are theirs to log
        // (the secret-scan test, tests/it/secrets.rs, reads trace logs).
        let secrets = Targets::new()
            .with_default(LevelFilter::TRACE)
            .with_target("ureq", LevelFilter::DEBUG)
            .with_target("ureq_proto", LevelFilter::DEBUG)
            .with_target("rustls", LevelFilter::DEBUG);
        let filter = env.and(secrets);
        // Through the progress bar, when one is drawn: above it.
        let layer = tracing_subscriber::fmt::layer().with_writer(progress::LogWriter);
        match cli.log_format {
            LogFormat::Json => tracing_subscriber::registry()
                .with(layer.json().with_filter(filter))
                .init(),
            // Colours on a terminal only: a log file or a service manager's
            // journal gets plain text.
            LogFormat::Text => tracing_subscriber::registry()
                .with(
                    layer
                        .with_ansi(io::stderr().is_terminal())
                        .with_filter(filter),
                )
                .init(),
        }
    }
    let exit = match cli.command {
        Command::Check {
            profile,
            input,
            results,
            today,
        } => check(&profile, &input, results, today),
        Command::Run {
            config,
            tenant,
            dry_run,
            force,
            today,
        } => run(&config, tenant, dry_run, force, today),
        Command::Daemon { config, tenant } => daemon(&config, tenant),
        Command::State(StateCommand::Rebuild { config, tenant }) => {
            state::rebuild(&config, &tenant)
        }
        Command::State(StateCommand::Copy {
            config,
            tenant,
            from,
            to,
        }) => state::copy_state(&config, &tenant, from.as_deref(), to.as_deref()),
        Command::Status {
            config,
            tenant,
            json,
        } => status(&config, tenant, json),
        Command::Release {
            config,
            tenant,
            file,
        } => release(&config, &tenant, &file),
        Command::Diff {
            profile,
            old,
            new,
            results,
            today,
        } => diff(&profile, &old, &new, results, today),
        Command::Gen {
            profile,
            rows,
            seed,
            from,
            change_ratio,
            shuffle,
        } => gen(
            &profile,
            rows,
            seed,
            from,
            change_ratio.unwrap_or(0.02),
            shuffle,
        ),
    };
    ExitCode::from(exit as u8)
}

/// The config at `path` and its tenants named `only` (all when `None`),
/// or the error said and the exit code.
fn tenants_of(
    path: &std::path::Path,
    only: Option<&str>,
) -> Result<Vec<muster::config::Tenant>, Exit> {
    let config = muster::config::Config::load(path).map_err(|e| {
        eprintln!("error: {e}");
        Exit::Usage
    })?;
    let chosen: Vec<_> = config
        .tenants
        .iter()
        .filter(|t| only.is_none_or(|n| t.name == n))
        .cloned()
        .collect();
    if let (Some(name), true) = (only, chosen.is_empty()) {
        let names: Vec<&str> = config.tenants.iter().map(|t| t.name.as_str()).collect();
        eprintln!("error: no tenant {name:?} (tenants: {})", names.join(", "));
        return Err(Exit::Usage);
    }
    Ok(chosen)
}

/// `muster status`: each tenant's last run, next run and held files.
fn status(config: &std::path::Path, only: Option<String>, json: bool) -> Exit {
    let tenants = match tenants_of(config, only.as_deref()) {
        Ok(t) => t,
        Err(exit) => return exit,
    };
    let mut all = Vec::new();
    let mut exit = Exit::Clean;
    for t in &tenants {
        match muster::pipeline::tenant_status(t) {
            Ok(s) => all.push(s),
            Err(e) => {
                eprintln!("error: tenant {}: {e}", t.name);
                exit = Exit::Failed;
            }
        }
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&all).unwrap_or_default());
        return exit;
    }
    println!(
        "{:<16} {:<12} {:<22} {:<22} held",
        "tenant", "last result", "last run ended", "next run"
    );
    for s in &all {
        let (result, ended) = match (&s.last_run, s.running) {
            (_, true) => ("running".to_string(), String::new()),
            (Some(r), false) => (r.result.clone(), r.ended.clone()),
            (None, false) => ("never run".to_string(), String::new()),
        };
        let mut held = s.held.join(", ");
        for r in &s.released {
            held.push_str(&format!(
                "{}{r} (released)",
                if held.is_empty() { "" } else { ", " }
            ));
        }
        println!(
            "{:<16} {:<12} {:<22} {:<22} {held}",
            s.name,
            result,
            ended.get(..19).unwrap_or(&ended),
            s.next_run
                .as_deref()
                .and_then(|n| n.get(..19))
                .unwrap_or("-"),
        );
    }
    exit
}

/// `muster release`: one held file applied by the tenant's next run.
fn release(config: &std::path::Path, name: &str, file: &str) -> Exit {
    let tenants = match tenants_of(config, Some(name)) {
        Ok(t) => t,
        Err(exit) => return exit,
    };
    match muster::pipeline::release(&tenants[0], file) {
        Ok(()) => {
            eprintln!("{name}: {file} released: the next run applies it despite the guards");
            Exit::Clean
        }
        Err(e @ muster::pipeline::ReleaseError::NotHeld { .. }) => {
            eprintln!("error: {e}");
            Exit::Usage
        }
        Err(e) => {
            eprintln!("error: tenant {name}: {e}");
            Exit::Failed
        }
    }
}

#[cfg(not(feature = "daemon"))]
fn daemon(_: &std::path::Path, _: Option<String>) -> Exit {
    eprintln!("error: this muster was built without the `daemon` feature");
    Exit::Usage
}

#[cfg(feature = "daemon")]
fn daemon(config_path: &std::path::Path, only: Option<String>) -> Exit {
    use std::sync::atomic::AtomicBool;
    use std::sync::Arc;
    let config = match muster::config::Config::load(config_path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return Exit::Usage;
        }
    };
    if let Some(name) = &only {
        if !config.tenants.iter().any(|t| &t.name == name) {
            eprintln!("error: no tenant {name:?}");
            return Exit::Usage;
        }
    }
    // The first SIGTERM / SIGINT asks for a clean stop; a second one
    // exits at once. SIGHUP asks for the config to be read again.
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        let registered = signal_hook::flag::register_conditional_shutdown(signal, 1, stop.clone())
            .and_then(|_| signal_hook::flag::register(signal, stop.clone()));
        if let Err(e) = registered {
            eprintln!("error: cannot handle signal {signal}: {e}");
            return Exit::Failed;
        }
    }
    let reload = Arc::new(AtomicBool::new(false));
    if let Err(e) = signal_hook::flag::register(signal_hook::consts::SIGHUP, reload.clone()) {
        eprintln!("error: cannot handle SIGHUP: {e}");
        return Exit::Failed;
    }
    // One tenant in the foreground: its runs' progress on the terminal.
    let bar = std::sync::Mutex::new(None::<progress::RunBar>);
    let foreground = only.is_some();
    let on_progress = |tenant: &muster::config::Tenant, p: muster::pipeline::RunProgress<'_>| {
        if foreground {
            let mut bar = bar.lock().unwrap_or_else(|e| e.into_inner());
            bar.get_or_insert_with(|| progress::RunBar::new(&tenant.name))
                .update(p);
        }
    };
    let on_done = |tenant: &muster::config::Tenant, result: &muster::daemon::RunOutcome| {
        if let Some(bar) = bar.lock().unwrap_or_else(|e| e.into_inner()).take() {
            bar.finish();
        }
        if let Ok(reports) = result {
            for r in reports {
                tracing::info!(tenant = %tenant.name, file = ?r.file, "{}", r.summary);
            }
        }
    };
    let opts = muster::daemon::DaemonOptions {
        only,
        stop,
        reload: Some((config_path.to_path_buf(), reload)),
    };
    if let Err(e) = muster::daemon::run_daemon(&config, &opts, &on_progress, &on_done) {
        eprintln!("error: {e}");
        return Exit::Usage;
    }
    Exit::Clean
}

fn load_profile(name: &str) -> Result<Profile, Exit> {
    Profile::load(name).map_err(|e| {
        eprintln!("error: {e}");
        Exit::Usage
    })
}

fn parse_today(profile: &Profile, today: Option<String>) -> Result<Date, Exit> {
    match today {
        None => Ok(profile.today()),
        Some(s) => Date::parse_iso(&s).ok_or_else(|| {
            eprintln!("error: --today {s:?} is not a date (YYYY-MM-DD)");
            Exit::Usage
        }),
    }
}

/// Where results go: a file, or stdout (where a closed pipe is not an error).
fn results_out(path: &Option<PathBuf>) -> Result<Box<dyn Write>, Exit> {
    match path {
        Some(p) => File::create(p)
            .map(|f| Box::new(BufWriter::new(f)) as Box<dyn Write>)
            .map_err(|e| {
                // The path named on the command line: a usage error.
                eprintln!("error: --results {}: cannot create it: {e}", p.display());
                Exit::Usage
            }),
        None => Ok(Box::new(BufWriter::new(io::stdout().lock()))),
    }
}

fn write_results(
    path: &Option<PathBuf>,
    plan: Option<&Plan>,
    outcome: Outcome,
) -> Result<(), Exit> {
    let out = results_out(path)?;
    let result = (|| -> io::Result<()> {
        let mut w = ResultsWriter::new(out)?;
        if let Some(plan) = plan {
            w.write_plan(plan, outcome)?;
        }
        w.into_inner()?.flush()
    })();
    match result {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => {
            eprintln!("error: writing results: {e}");
            Err(Exit::Failed)
        }
    }
}

fn check(
    profile: &str,
    input: &std::path::Path,
    results: Option<PathBuf>,
    today: Option<String>,
) -> Exit {
    let run = || -> Result<Exit, Exit> {
        let profile = load_profile(profile)?;
        let today = parse_today(&profile, today)?;
        let file = open_input(input)?;
        let started = std::time::Instant::now();
        let size = file.metadata().map_or(0, |m| m.len());
        let mut bar = progress::RunBar::new("check");
        let planned = plan::check_with_progress(&profile, file, today, &mut |p| {
            bar.update(muster::pipeline::RunProgress::Reading {
                file: input,
                records: p.records,
                bytes: p.bytes,
                size,
            })
        });
        bar.finish();
        match planned {
            Ok(plan) => finish(&results, input, &plan, &Verdict::default(), started),
            Err(FileError::Read(muster::reader::ReadError::Io(e))) => {
                eprintln!("error: {}: {e}", input.display());
                Err(Exit::Failed)
            }
            Err(e) => {
                eprintln!("error: {}: refused, nothing applied: {e}", input.display());
                write_results(&results, None, Outcome::Planned)?;
                Ok(Exit::Refused)
            }
        }
    };
    run().unwrap_or_else(|e| e)
}

/// Opens an input file named on the command line: a missing file or a
/// folder is a usage error (exit 2), and an empty file is said to be empty.
fn open_input(path: &std::path::Path) -> Result<File, Exit> {
    let usage = |why: &str| {
        eprintln!("error: {}: {why}", path.display());
        Exit::Usage
    };
    let meta = match std::fs::metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(usage("no such file")),
        Err(e) => return Err(usage(&e.to_string())),
    };
    if meta.is_dir() {
        return Err(usage("is a folder, not a file"));
    }
    // A pipe (`/dev/stdin`) has no length to tell.
    if meta.is_file() && meta.len() == 0 {
        eprintln!(
            "warning: {}: the file is empty (no records)",
            path.display()
        );
    }
    File::open(path).map_err(|e| usage(&e.to_string()))
}

/// Writes the results of a planned file, prints its summary, and gives the
/// exit code: a held file is 4, rows with problems 3, else 0.
fn finish(
    results: &Option<PathBuf>,
    input: &std::path::Path,
    plan: &Plan,
    verdict: &Verdict,
    started: std::time::Instant,
) -> Result<Exit, Exit> {
    let outcome = if verdict.held() {
        Outcome::Held
    } else {
        Outcome::Planned
    };
    write_results(results, Some(plan), outcome)?;
    let tally = plan.tally();
    print_summary(input, plan, &tally, started.elapsed());
    if verdict.held() {
        for reason in &verdict.reasons {
            eprintln!(
                "held: {}: {reason}; nothing applied (--force releases it)",
                input.display()
            );
        }
        return Ok(Exit::Refused);
    }
    Ok(if tally.is_clean() {
        Exit::Clean
    } else {
        Exit::Rows
    })
}

fn run(
    config: &std::path::Path,
    only: Option<String>,
    dry_run: bool,
    force: bool,
    today: Option<String>,
) -> Exit {
    use muster::pipeline::{FileStatus, RunOptions};
    let config_path = config;
    let config = match muster::config::Config::load(config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return Exit::Usage;
        }
    };
    let today = match today {
        None => None,
        Some(s) => match Date::parse_iso(&s) {
            Some(d) => Some(d),
            None => {
                eprintln!("error: --today {s:?} is not a date (YYYY-MM-DD)");
                return Exit::Usage;
            }
        },
    };
    if let Some(name) = &only {
        if !config.tenants.iter().any(|t| &t.name == name) {
            let names: Vec<&str> = config.tenants.iter().map(|t| t.name.as_str()).collect();
            eprintln!("error: no tenant {name:?} (tenants: {})", names.join(", "));
            return Exit::Usage;
        }
    }
    let opts = RunOptions {
        dry_run,
        force,
        today,
        stop: None,
        trigger: muster::pipeline::Trigger::Manual,
    };
    let mut exit = Exit::Clean;
    let worse = |a: Exit, b: Exit| {
        let rank = |e: Exit| match e {
            Exit::Clean => 0,
            Exit::Rows => 1,
            Exit::Refused => 2,
            Exit::Failed => 3,
            Exit::Usage => 4,
        };
        if rank(b) > rank(a) {
            b
        } else {
            a
        }
    };
    let mut table: Vec<(String, muster::pipeline::FileReport)> = Vec::new();
    for tenant in config
        .tenants
        .iter()
        .filter(|t| only.as_ref().is_none_or(|n| &t.name == n))
    {
        let mut bar = progress::RunBar::new(&tenant.name);
        let result =
            muster::pipeline::run_tenant_with_progress(tenant, &opts, &mut |p| bar.update(p));
        bar.finish();
        match result {
            Ok(reports) => {
                if reports.is_empty() {
                    eprintln!(
                        "{}: nothing to do in {}",
                        tenant.name,
                        tenant.source.describe()
                    );
                }
                for r in reports {
                    eprintln!("{}: {}: {}", tenant.name, shown(&r.file), r.summary);
                    if let Some(why) = &r.why {
                        eprintln!("  {}: {why}", r.status.as_str());
                    }
                    if let Some(res) = &r.results {
                        eprintln!("  results: {}", shown(res));
                    }
                    exit = worse(
                        exit,
                        match r.status {
                            FileStatus::Clean | FileStatus::Superseded => Exit::Clean,
                            FileStatus::Rows => Exit::Rows,
                            FileStatus::Refused | FileStatus::Held => Exit::Refused,
                            FileStatus::SinkUnavailable => Exit::Failed,
                        },
                    );
                    table.push((tenant.name.clone(), r));
                }
            }
            // A missing inbox, a state path that cannot be made: the
            // configuration's fault, which no later run gets over.
            Err(e) if e.is_configuration() => {
                eprintln!("error: tenant {}: {e}", tenant.name);
                exit = worse(exit, Exit::Usage);
            }
            // The promise of resuming only where it holds: a damaged or
            // missing store says what to do instead.
            Err(e) => {
                let rebuild = format!(
                    "; or rebuild the store from the sink: muster state rebuild --config {} --tenant {}",
                    shown(config_path),
                    tenant.name
                );
                let then = if e.resumes() {
                    "; the next run resumes where this one stopped"
                } else if e.needs_rebuild() {
                    &rebuild
                } else {
                    ""
                };
                eprintln!("error: tenant {}: {e}{then}", tenant.name);
                exit = worse(exit, Exit::Failed);
            }
        }
    }
    print_run_table(&table);
    exit
}

/// A file name as output lines show it: as it is, or quoted and escaped
/// when it holds a control character (a newline would split the line).
fn shown(path: &std::path::Path) -> String {
    let text = path.display().to_string();
    if text.chars().any(char::is_control) {
        format!("{text:?}")
    } else {
        text
    }
}

/// The summary table at the end of a run.
fn print_run_table(table: &[(String, muster::pipeline::FileReport)]) {
    if table.is_empty() {
        return;
    }
    // Buffered: stderr is not, and the padding would be a write each.
    let mut err = io::BufWriter::new(io::stderr().lock());
    let _ = writeln!(
        err,
        "\n{:<10} {:<26} {:>9} {:>8} {:>8} {:>9} {:>10} {:>8} {:>8}  status",
        "tenant", "file", "rows", "create", "update", "unchanged", "deactivate", "delete", "reject"
    );
    for (tenant, r) in table {
        let name = shown(std::path::Path::new(r.file.file_name().unwrap_or_default()));
        let c = r.counts;
        // Held, refused or superseded: and why, on the same line.
        let status = match &r.why {
            Some(why) => format!("{}: {why}", r.status.as_str()),
            None => r.status.as_str().to_string(),
        };
        let _ = writeln!(
            err,
            "{tenant:<10} {name:<26} {:>9} {:>8} {:>8} {:>9} {:>10} {:>8} {:>8}  {status}",
            r.records, c[0], c[1], c[2], c[3], c[4], c[5]
        );
    }
    let _ = err.flush();
}

fn diff(
    profile: &str,
    old: &std::path::Path,
    new: &std::path::Path,
    results: Option<PathBuf>,
    today: Option<String>,
) -> Exit {
    let run = || -> Result<Exit, Exit> {
        let profile = load_profile(profile)?;
        let today = parse_today(&profile, today)?;
        open_input(old)?;
        open_input(new)?;
        let started = std::time::Instant::now();
        match muster::plan::diff_files(&profile, old, new, today) {
            Ok(d) => {
                let verdict = muster::guard::check(
                    &d.plan,
                    &profile.safety,
                    d.objects,
                    Some(d.old_records),
                    false,
                );
                let exit = finish(&results, new, &d.plan, &verdict, started);
                tracing::debug!(
                    ms = started.elapsed().as_millis() as u64,
                    "diff: results written"
                );
                // The process ends here: the OS takes the plan's memory back
                // at once, where freeing it block by block takes a while.
                std::mem::forget(d);
                exit
            }
            Err(muster::plan::DiffError {
                path,
                error: FileError::Read(muster::reader::ReadError::Io(e)),
            }) => {
                eprintln!("error: {path}: {e}");
                Err(Exit::Failed)
            }
            Err(e) => {
                eprintln!("error: {e}; refused, nothing applied");
                write_results(&results, None, Outcome::Planned)?;
                Ok(Exit::Refused)
            }
        }
    };
    run().unwrap_or_else(|e| e)
}

fn print_summary(
    input: &std::path::Path,
    plan: &Plan,
    tally: &muster::plan::Tally,
    elapsed: std::time::Duration,
) {
    use muster::plan::Action;
    let secs = elapsed.as_secs_f64().max(1e-9);
    // Through a buffer: stderr is unbuffered, and the padding would go out
    // a byte per write.
    let mut err = io::BufWriter::new(io::stderr().lock());
    let _ = writeln!(
        err,
        "{}: {}, {:.1} MB in {:.2} s ({:.0} MB/s)",
        input.display(),
        muster::model::counted(plan.records, "record"),
        plan.bytes as f64 / 1e6,
        secs,
        plan.bytes as f64 / 1e6 / secs
    );
    for action in Action::ALL {
        let n = tally.count(action);
        if n > 0 {
            let _ = writeln!(err, "  {:<10} {n:>10}", action.as_str());
        }
    }
    let coded = tally.flagged;
    if coded > 0 {
        let _ = writeln!(
            err,
            "  {:<10} {coded:>10} (applied rows carrying a code)",
            "flagged"
        );
    }
    if plan.decoded_rows > 0 {
        let _ = writeln!(err, "  {} rows decoded as windows-1252", plan.decoded_rows);
    }
    let _ = err.flush();
}

fn gen(
    profile: &str,
    rows: u64,
    seed: u64,
    from: Option<PathBuf>,
    ratio: f64,
    shuffle: bool,
) -> Exit {
    let run = || -> Result<Exit, Exit> {
        let profile = load_profile(profile)?;
        if !(0.0..=1.0).contains(&ratio) {
            eprintln!("error: --change-ratio must be between 0.0 and 1.0");
            return Err(Exit::Usage);
        }
        let year = profile.today().year;
        let out = io::stdout().lock();
        let result = match from {
            None => muster::gen::generate(&profile, rows, seed, year, out)
                .map_err(|e| FileError::Read(e.into())),
            Some(path) => {
                let file = File::open(&path).map_err(|e| {
                    eprintln!("error: cannot open {}: {e}", path.display());
                    Exit::Failed
                })?;
                muster::gen::derive(&profile, file, ratio, seed, shuffle, year, out).map(|c| {
                    eprintln!(
                        "derived from {}: {} kept, {} updated, {} deactivated, {} cosmetic, {} deleted, {} created",
                        path.display(),
                        c.kept,
                        c.updated,
                        c.deactivated,
                        c.cosmetic,
                        c.deleted,
                        c.created
                    );
                })
            }
        };
        match result {
            Ok(()) => Ok(Exit::Clean),
            Err(FileError::Read(muster::reader::ReadError::Io(e)))
                if e.kind() == io::ErrorKind::BrokenPipe =>
            {
                Ok(Exit::Clean)
            }
            Err(e) => {
                eprintln!("error: {e}");
                Err(Exit::Failed)
            }
        }
    };
    run().unwrap_or_else(|e| e)
}
