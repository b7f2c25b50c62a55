//! AFL++ target `profile`: see vfio_gen_fuzz::profile and docs/fuzzing.md.
fn main() {
    afl::fuzz!(|data: &[u8]| {
        vfio_gen_fuzz::profile(data);
    });
}
