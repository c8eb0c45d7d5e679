//! The `lstore` debug CLI. All logic lives in the library; this only parses and prints.

mod cli;
mod demo;

fn main() {
    std::process::exit(cli::run());
}
