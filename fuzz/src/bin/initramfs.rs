//! AFL++ target `initramfs`: see vfio_gen_fuzz::initramfs and docs/fuzzing.md.
fn main() {
    afl::fuzz!(|data: &[u8]| {
        vfio_gen_fuzz::initramfs(data);
    });
}
