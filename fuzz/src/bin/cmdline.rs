//! AFL++ target `cmdline`: see vfio_gen_fuzz::cmdline and docs/fuzzing.md.
fn main() {
    afl::fuzz!(|data: &[u8]| {
        vfio_gen_fuzz::cmdline(data);
    });
}
