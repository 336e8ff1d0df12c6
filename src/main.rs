fn main() {
    // PLACEHOLDER (being written): the CLI.
    for p in std::env::args().skip(1) {
        let r = modelgate::engine::scan_path(std::path::Path::new(&p), &p, &Default::default());
        println!("{}", serde_json::to_string(&r).unwrap_or_default());
    }
}
