//! AFL++ target `loader_entry`: see vfio_gen_fuzz::loader_entry and docs/fuzzing.md.
fn main() {
    afl::fuzz!(|data: &[u8]| {
        vfio_gen_fuzz::loader_entry(data);
    });
}
