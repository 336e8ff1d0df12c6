//! modelgate: finds code that runs when a model file is loaded, without running anything.
//!
//! Data flows one way: `source` -> `detect` -> `formats` (facts) -> `lists` (classify
//! imports) -> `policy` (decide) -> `report` (render).
#![forbid(unsafe_code)]

pub mod audit;
pub mod clamav;
pub mod cli;
pub mod detect;
pub mod engine;
pub mod finding;
pub mod formats;
pub mod git;
pub mod hook;
pub mod lfs;
pub mod lists;
pub mod policy;
pub mod report;
pub mod source;
pub mod store;

/// Every module's finding-code table (see [`finding::all_codes`]).
pub const CODE_TABLES: &[&[finding::CodeInfo]] = &[
    engine::CODES,
    clamav::CODES,
    formats::pickle::CODES,
    formats::zip::CODES,
    formats::tar::CODES,
    formats::compress::CODES,
    formats::numpy::CODES,
    formats::sevenz::CODES,
    formats::safetensors::CODES,
    formats::gguf::CODES,
    formats::jinja::CODES,
    formats::hdf5::CODES,
    formats::keras::CODES,
    formats::tensorflow::CODES,
    formats::torchscript::CODES,
    formats::onnx::CODES,
    formats::eicar::CODES,
    lists::CODES,
    cli::CODES,
    lfs::CODES,
    hook::CODES,
];

/// Engine version: part of cache keys, bumped whenever verdicts for the same bytes may change.
pub const ENGINE_VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), "+engine.3");
