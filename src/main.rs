//! The `vfio-gen` binary: parse arguments, run, map the outcome to an exit status.
//! 0 success, 1 a result worth noticing (drift, pending changes, a failed check), 2 an error
//! (nothing written), 3 files installed but a hook failed.

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = vfio_gen::cli::Cli::parse();
    let mut stdout = std::io::stdout().lock();
    match vfio_gen::app::run(cli, &mut stdout) {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            drop(stdout);
            // A reader that went away (`vfio-gen man | head`): stop quietly, as coreutils do.
            let broken_pipe = err.chain().any(|c| {
                c.downcast_ref::<std::io::Error>()
                    .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
            });
            if broken_pipe {
                return ExitCode::SUCCESS;
            }
            eprintln!("vfio-gen: error: {err:#}");
            if err.downcast_ref::<vfio_gen::app::HookFailed>().is_some() {
                ExitCode::from(3)
            } else {
                ExitCode::from(2)
            }
        }
    }
}
