//! AFL++ target `grub`: see vfio_gen_fuzz::grub and docs/fuzzing.md.
fn main() {
    afl::fuzz!(|data: &[u8]| {
        vfio_gen_fuzz::grub(data);
    });
}
