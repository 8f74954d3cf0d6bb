//! The `legion` binary: parse the command line, install the error handler, run the
//! command on a tokio runtime, and turn its error into a message and an exit code.
//!
//! Every command lives in the library's `cli` module (`src/cli/`); diagnostics go to the
//! home's `logs/` once a command knows its home (`cli::session`), never to the terminal.

use std::process::ExitCode;

use legion::cli;

fn main() -> ExitCode {
    let args = cli::parse();
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
            return ExitCode::from(cli::exit::FAILURE);
        }
    };
    let handle = runtime.handle().clone();
    match runtime.block_on(cli::run(args, handle)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if !cli::exit::is_silent(&e) {
                eprintln!("{}", cli::error_line(&e));
            }
            ExitCode::from(cli::exit::exit_code(&e))
        }
    }
}
