//! The `verity-fuse` command; everything it does lives in [`verity_fuse::cli`].
#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    verity_fuse::cli::run(std::env::args_os())
}
