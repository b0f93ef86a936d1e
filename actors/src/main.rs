//! The `turingwatch` binary: parse the command line, run the chosen role, map the outcome to an
//! exit code (0 ok, 1 failure, 2 usage, 78 configuration error).

use std::process::ExitCode;

fn main() -> ExitCode {
    turingwatch::roles::cli::main()
}
