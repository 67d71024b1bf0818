//! `prism-conform`: run Prism's scenario corpus against backends through the real proxy.

fn main() -> std::process::ExitCode {
    prism_conform::cli::process_main()
}
