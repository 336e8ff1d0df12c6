#![forbid(unsafe_code)]

/// mimalloc instead of glibc's malloc: judging a push allocates and frees hundreds of
/// thousands of small buffers (tree objects, blobs, findings) on several threads, where
/// glibc's allocator took a seventh of the gate's time.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    std::process::exit(modelgate::cli::run(std::env::args_os()));
}
