//! The `lstore` command: a front end over the library's public API; it parses and prints.

mod cli;

fn main() {
    std::process::exit(cli::run());
}
