//! The `legion` binary: parses the command line and wires a face to the engine.
//!
//! Faces: the dashboard (`legion`, `legion demo`), `legion config init`,
//! `legion status`, `legion keymap --defaults`.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use color_eyre::eyre::{Context, Result, eyre};
use legion::engine::secret::Secret;
use legion::engine::snapshot::ApplyView;
use legion::engine::snapshot::LockState;
use legion::engine::{Engine, EngineConfig, EngineError, demo, home};
use legion::providers::Env;
use legion::views::keymap::Keymap;
use legion::views::plain;
use legion::views::run::DashboardConfig;
use legion::views::theme::ColorDepth;

/// Exit codes (documented in `--help`).
const EXIT_FAILURE: u8 = 1;
const EXIT_LOCKED: u8 = 3;

#[derive(Parser)]
#[command(
    name = "legion",
    version,
    about = "Run fleets of cloud servers from a terminal",
    after_help = "Exit codes: 0 ok, 1 failure, 2 usage error, 3 locked or wrong password."
)]
struct Cli {
    /// Legion home (state, logs); default $LEGION_HOME or the platform data directory.
    #[arg(long, global = true, value_name = "DIR")]
    home: Option<PathBuf>,
    /// Read the unlock password from this file (first line).
    #[arg(long, global = true, env = "LEGION_PASSWORD_FILE", value_name = "FILE")]
    password_file: Option<PathBuf>,
    /// Dashboard: offer no action or form that changes anything.
    #[arg(long, global = true)]
    readonly: bool,
    /// Dashboard theme: dark, light, ansi16, or a NAME.toml in the home's themes/.
    #[arg(long, global = true, default_value = "dark")]
    theme: String,
    /// Colour depth: truecolor, 256, 16 or none (default: detected from TERM/COLORTERM;
    /// NO_COLOR is honoured).
    #[arg(long, global = true, value_name = "DEPTH")]
    colors: Option<ColorDepth>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Open the demo: a simulated cloud with a seeded fleet, applied and shown live.
    Demo {
        /// Start the demo fresh.
        #[arg(long)]
        reset: bool,
        /// Print text tables instead of the dashboard, and exit once the first apply
        /// finishes (for scripts).
        #[arg(long)]
        once: bool,
    },
    /// Print the default key bindings as a keymap file (save it as HOME/keymap.toml).
    Keymap {
        #[arg(long)]
        defaults: bool,
    },
    /// Create or change the encrypted state.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Show providers, resources and the apply state.
    Status {
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Create a new state in the Legion home.
    Init,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(e) = color_eyre::install() {
        eprintln!("legion: {e}");
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("legion-engine")
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("legion: cannot start the runtime: {e}");
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    let handle = runtime.handle().clone();
    match runtime.block_on(run(cli, handle)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("legion: {e:#}");
            let locked = e
                .downcast_ref::<EngineError>()
                .is_some_and(|e| e.is_wrong_password() || matches!(e, EngineError::Locked));
            ExitCode::from(if locked { EXIT_LOCKED } else { EXIT_FAILURE })
        }
    }
}

/// Diagnostics go to a daily file in the home's `logs/`, never to the terminal.
fn init_tracing(home: &Path) -> Option<tracing_appender::non_blocking::WorkerGuard> {
    let dir = home.join("logs");
    std::fs::create_dir_all(&dir).ok()?;
    let appender = tracing_appender::rolling::daily(dir, "legion.log");
    let (writer, guard) = tracing_appender::non_blocking(appender);
    let filter = tracing_subscriber::EnvFilter::try_from_env("LEGION_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_ansi(false)
        .try_init()
        .ok()?;
    Some(guard)
}

fn read_password(path: &Path) -> Result<Secret> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the password file {}", path.display()))?;
    let line = text.lines().next().unwrap_or("").to_string();
    if line.is_empty() {
        return Err(eyre!("the password file {} is empty", path.display()));
    }
    Ok(Secret::new(line))
}

fn password(cli: &Cli) -> Result<Secret> {
    match &cli.password_file {
        Some(p) => read_password(p),
        None => Err(eyre!(
            "no password: pass --password-file FILE or set LEGION_PASSWORD_FILE"
        )),
    }
}

async fn run(cli: Cli, rt: tokio::runtime::Handle) -> Result<()> {
    let Some(command) = &cli.command else {
        let home = home::resolve_home(cli.home.clone())?;
        let _guard = init_tracing(&home);
        let engine = Engine::start(EngineConfig::new(home.clone()));
        if let Some(pw) = &cli.password_file {
            engine.unlock(read_password(pw)?).await?;
        }
        let shown = dashboard(&cli, &rt, engine.clone(), home, None).await;
        // Save and lock whatever happened to the dashboard.
        if engine.snapshot().lock == LockState::Unlocked {
            engine.logout().await?;
        }
        return shown;
    };
    match command {
        Command::Demo { reset, once } => run_demo(&cli, &rt, *reset, *once).await,
        Command::Keymap { defaults } => {
            if !defaults {
                return Err(eyre!(
                    "say --defaults to print the default keymap (the file it reads is HOME/keymap.toml)"
                ));
            }
            print!("{}", Keymap::defaults_toml());
            Ok(())
        }
        Command::Config {
            command: ConfigCommand::Init,
        } => {
            let home = home::resolve_home(cli.home.clone())?;
            let _guard = init_tracing(&home);
            let engine = Engine::start(EngineConfig::new(home.clone()));
            engine.init(password(&cli)?).await?;
            engine.logout().await?;
            println!("created a new Legion state in {}", home.display());
            Ok(())
        }
        Command::Status { json } => {
            let home = home::resolve_home(cli.home.clone())?;
            let _guard = init_tracing(&home);
            let engine = Engine::start(EngineConfig::new(home));
            engine.unlock(password(&cli)?).await?;
            let snap = engine
                .wait_for(|s| s.seq > 0 && s.lock == LockState::Unlocked)
                .await?;
            if *json {
                println!("{}", serde_json::to_string_pretty(&*snap)?);
            } else {
                print!("{}", plain::render(&snap));
            }
            engine.logout().await?;
            Ok(())
        }
    }
}

/// The demo's own home, beside the operator's, so it never touches real state.
fn demo_home(cli: &Cli) -> Result<PathBuf> {
    Ok(home::resolve_home(cli.home.clone())?.join("demo"))
}

/// Run the dashboard on a blocking thread (the UI thread), leaving the runtime free.
async fn dashboard(
    cli: &Cli,
    rt: &tokio::runtime::Handle,
    engine: Engine,
    home: PathBuf,
    demo: Option<String>,
) -> Result<()> {
    let depth = cli
        .colors
        .unwrap_or_else(|| ColorDepth::detect(|k| std::env::var(k).ok()));
    let cfg = DashboardConfig {
        home,
        readonly: cli.readonly,
        demo,
        theme: cli.theme.clone(),
        depth,
    };
    let rt = rt.clone();
    tokio::task::spawn_blocking(move || legion::views::run::run(&rt, engine, cfg))
        .await
        .map_err(|e| eyre!("the dashboard stopped: {e}"))??;
    Ok(())
}

async fn run_demo(cli: &Cli, rt: &tokio::runtime::Handle, reset: bool, once: bool) -> Result<()> {
    let home = demo_home(cli)?;
    if reset && home.exists() {
        std::fs::remove_dir_all(&home)
            .with_context(|| format!("removing the old demo at {}", home.display()))?;
    }
    home::ensure_home(&home).with_context(|| format!("preparing {}", home.display()))?;
    let _guard = init_tracing(&home);
    let pw_path = home.join("demo-password");
    let fresh = !legion::engine::state::store::StateFile::in_home(&home).exists();
    let mut config = EngineConfig::new(home.clone());
    config.env = Env::from_process().with("LEGION_MOCK_NETWORK", "1");
    let engine = Engine::start(config);
    if fresh {
        let mut bytes = [0u8; 16];
        getrandom::fill(&mut bytes).map_err(|e| eyre!("system random failed: {e}"))?;
        let pw = hex::encode(bytes);
        write_private(&pw_path, &pw)?;
        engine.init(Secret::new(pw)).await?;
        demo::seed(&engine, 150).await?;
    } else {
        engine.unlock(read_password(&pw_path)?).await?;
    }
    let id = engine.apply().await?;
    let stdout = std::io::stdout();
    let tty = stdout.is_terminal();
    if tty && !once {
        let note = format!(
            "demo: simulated cloud · password kept in {}",
            pw_path.display()
        );
        let shown = dashboard(cli, rt, engine.clone(), home.clone(), Some(note)).await;
        engine.logout().await?;
        return shown;
    }
    println!(
        "Legion demo (simulated cloud) in {}\nIts state is encrypted; the demo keeps the password in {}.\n",
        home.display(),
        pw_path.display()
    );
    let mut rx = engine.snapshots();
    let mut last = String::new();
    loop {
        let snap = rx.borrow_and_update().clone();
        let text = plain::render(&snap);
        if text != last {
            let mut out = stdout.lock();
            if tty {
                // Redraw in place: home the cursor and clear below.
                let _ = write!(out, "\x1b[H\x1b[J");
            }
            let _ = write!(out, "DEMO  {text}");
            let _ = out.flush();
            last = text;
        }
        if once && matches!(&snap.apply, ApplyView::Finished { id: done, .. } if *done >= id) {
            break;
        }
        tokio::select! {
            r = rx.changed() => if r.is_err() { break },
            _ = tokio::signal::ctrl_c() => break,
        }
        // Coalesce bursts into one redraw.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    engine.logout().await?;
    Ok(())
}

fn write_private(path: &Path, contents: &str) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    f.write_all(contents.as_bytes())?;
    f.sync_all()?;
    Ok(())
}
