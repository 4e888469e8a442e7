//! sensord: the sensor daemon. See docs/operations.md.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Parser;
use sensor_user::{config::Config, daemon, datapath, paths};

/// XDP inline blocker daemon: enforces isolations, blocks and the segment
/// policy on a gateway's interfaces.
///
/// Example: sensord --config /etc/sensor/sensord.toml
#[derive(Parser)]
#[command(name = "sensord", version = sensor_user::VERSION)]
struct Args {
    /// Configuration file (TOML).
    #[arg(long, short, default_value = paths::DEFAULT_CONFIG_FILE)]
    config: PathBuf,
    /// Check the configuration, print what it means, and exit.
    #[arg(long)]
    check_config: bool,
    /// Detach the program and remove every pinned map (recovery), then exit.
    /// Enforcement stops; the state file is kept.
    #[arg(long, conflicts_with = "check_config")]
    remove: bool,
    /// Write the manual page (sensord.8) to this directory, then exit: the
    /// package build's, not an operator's.
    #[arg(long, hide = true)]
    man: Option<PathBuf>,
}

fn main() -> Result<()> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let args = Args::parse();
    if let Some(dir) = &args.man {
        return sensor_user::cli::write_manual(<Args as clap::CommandFactory>::command(), dir, "8");
    }
    let config = Config::load(&args.config).context("invalid configuration")?;
    let problems = if args.remove {
        Vec::new()
    } else {
        config.preflight()
    };
    if !problems.is_empty() {
        for problem in &problems {
            eprintln!("{}: {problem}", args.config.display());
        }
        anyhow::bail!(
            "{} cannot start sensord: {} problem(s) above",
            args.config.display(),
            problems.len()
        );
    }
    if args.check_config {
        println!("{} is valid", args.config.display());
        print!("{}", config.describe());
        return Ok(());
    }
    if args.remove {
        datapath::remove_pins(&config.pin_dir)?;
        println!(
            "removed the XDP links and pinned maps in {}",
            config.pin_dir.display()
        );
        return Ok(());
    }
    raise_descriptor_limit();
    return_freed_memory();
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?
        .block_on(daemon::run(config))
}

/// Makes memory a flood made the engine allocate go back to the system
/// when its tables shrink again. glibc's defaults keep it: each thread
/// gets an arena of its own, and the size above which an allocation is a
/// separate mapping (returned whole when freed) grows with every large
/// block freed, so a flood's tables end up inside the arenas, where
/// `malloc_trim` can release only whole free pages between live objects.
/// Fixed at 128 KiB, every table past that is a mapping of its own; two
/// arenas are enough for two worker threads.
fn return_freed_memory() {
    // SAFETY: mallopt only changes allocator parameters.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

/// Raises the soft limit on open files to the hard one: connections are
/// capped per listener, and what is left is headroom for the maps, the
/// state file and the alert sinks.
fn raise_descriptor_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: valid out pointer / in pointer to an initialised rlimit.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < limit.rlim_max
        {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}
