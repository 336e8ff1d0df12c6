#![forbid(unsafe_code)]

fn main() {
    std::process::exit(modelgate::cli::run(std::env::args_os()));
}
