//! Facts about the Linux kernel that vfio-gen relies on, and kernel release parsing (leaf).
//! Sources: docs/kernel.md and docs/kernel-cmdline.md.

/// The longest command line the x86 kernel keeps: COMMAND_LINE_SIZE is 2048 with the
/// terminating zero, and the rest is dropped without a word (docs/kernel-cmdline.md).
pub const COMMAND_LINE_MAX: usize = 2047;

/// The first kernel (major, minor) where `vfio_virqfd` is part of `vfio` and no module of its
/// own (docs/kernel.md).
pub const VIRQFD_IN_VFIO: (u32, u32) = (6, 2);

/// Whether a kernel of this (major, minor) has `vfio_virqfd` as a module of its own.
pub fn has_virqfd_module(version: (u32, u32)) -> bool {
    version < VIRQFD_IN_VFIO
}

/// Parses the major and minor of a kernel release such as `6.1.0-13-amd64`.
pub fn parse_version(v: &str) -> Option<(u32, u32)> {
    let mut parts = v.split(|c: char| !c.is_ascii_digit());
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn releases_parse_to_major_and_minor() {
        assert_eq!(parse_version("6.1.0-13-amd64"), Some((6, 1)));
        assert_eq!(parse_version("5.15"), Some((5, 15)));
        assert_eq!(parse_version("6"), None);
        assert_eq!(parse_version("linux"), None);
    }

    #[test]
    fn virqfd_is_a_module_before_6_2_only() {
        assert!(has_virqfd_module((6, 1)));
        assert!(has_virqfd_module((5, 15)));
        assert!(!has_virqfd_module((6, 2)));
        assert!(!has_virqfd_module((6, 12)));
    }
}
