use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = tandem::ctl::Cli::parse();
    tandem::ctl::run(cli, &mut std::io::stdout(), &mut std::io::stderr())
}
