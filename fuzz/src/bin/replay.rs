//! Runs one target's checks on files, without AFL: `cargo run --release --bin replay -- TARGET FILE...`
//! (a crash from fuzz/out/TARGET/default/crashes/ panics here with the broken property).
fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((target, files)) = args.split_first() else {
        eprintln!("usage: replay TARGET FILE...   (targets: {})", vfio_gen_fuzz::TARGETS.join(", "));
        std::process::exit(2);
    };
    let Some(check) = vfio_gen_fuzz::target(target) else {
        eprintln!("unknown target {target:?}; targets: {}", vfio_gen_fuzz::TARGETS.join(", "));
        std::process::exit(2);
    };
    for f in files {
        let data = std::fs::read(f).unwrap_or_else(|e| panic!("{f}: {e}"));
        eprintln!("{target}: {f} ({} bytes)", data.len());
        check(&data);
    }
    eprintln!("ok: {} input(s) hold every property", files.len());
}
