//! The `passthru` command.
fn main() {
    eprintln!("passthru: no subcommands yet");
    std::process::exit(4);
}
