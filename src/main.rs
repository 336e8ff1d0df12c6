fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // TEMPORARY hand-written dispatch for the git hooks until the clap CLI is merged; the CLI
    // calls the same functions.
    match args.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        ["hook", "pre-receive"] => std::process::exit(modelgate::hook::pre_receive::run()),
        ["hook", "post-receive"] => std::process::exit(modelgate::hook::post_receive::run()),
        _ => {}
    }
    // PLACEHOLDER (being written): the CLI.
    for p in std::env::args().skip(1) {
        let r = modelgate::engine::scan_path(std::path::Path::new(&p), &p, &Default::default());
        println!("{}", serde_json::to_string(&r).unwrap_or_default());
    }
}
