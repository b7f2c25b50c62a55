//! AFL++ target `modalias`: see vfio_gen_fuzz::modalias and docs/fuzzing.md.
fn main() {
    afl::fuzz!(|data: &[u8]| {
        vfio_gen_fuzz::modalias(data);
    });
}
