use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    // On the appliance this one binary is also installed as `tandemctl` (a symlink): the
    // initramfs carries one copy of the shared code instead of two.
    let invoked_as = std::env::args_os()
        .next()
        .map(std::path::PathBuf::from)
        .and_then(|p| p.file_name().map(|n| n.to_owned()));
    if invoked_as.as_deref() == Some(std::ffi::OsStr::new("tandemctl")) {
        let cli = tandem::ctl::Cli::parse();
        return tandem::ctl::run(cli, &mut std::io::stdout(), &mut std::io::stderr());
    }
    tandem::setup::run(tandem::setup::Cli::parse())
}
