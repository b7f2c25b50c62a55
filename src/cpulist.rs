//! The kernel's cpu-list syntax (leaf): `isolcpus=`, `nohz_full=`, `rcu_nocbs=`, `irqaffinity=`
//! and the `[resources] isolate_cpus` key take it; sysfs writes it (`thread_siblings_list`,
//! `/sys/devices/system/cpu/present`). Parsed as `bitmap_parselist()` in the kernel's
//! `lib/bitmap-str.c` reads it, with the bounds of docs/resources.md ("CPU lists"):
//!
//! - items separated by commas: `N`, `a-b`, `a-b:used/group` (a stride: from each group of
//!   `group` CPUs starting at `a`, the first `used`), and `all` (`0-N`, may take a stride);
//! - `N` stands for the last possible CPU, wherever a number may stand;
//! - `a > b`, a group of 0, `used > group` and a CPU past the last possible one are refused,
//!   as the kernel refuses them; so are spaces (the kernel takes them as separators, but on a
//!   command line a space ends the option) and empty items (`1,,2`), which the kernel skips.
//!
//! A [`CpuSet`] never holds more than [`MAX_CPUS`] CPUs, so no input, however hostile, makes
//! parsing slow or large. [`CpuSet`]'s `Display` writes the canonical list the kernel prints
//! (`0-3,8,10-11`), never `N`: `isolcpus=` reads a list that starts with a letter as flags.

use std::collections::BTreeSet;
use std::fmt;

/// The most CPUs an x86-64 kernel can be built for (`NR_CPUS_RANGE_END`, docs/resources.md):
/// CPU numbers are below this.
pub const MAX_CPUS: u32 = 8192;

/// A set of CPU numbers, each below [`MAX_CPUS`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct CpuSet(BTreeSet<u32>);

/// What is wrong with a cpu-list and where: `column` counts characters from 1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    pub column: usize,
    pub message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "column {}: {}", self.column, self.message)
    }
}

impl std::error::Error for ParseError {}

impl CpuSet {
    pub fn new() -> CpuSet {
        CpuSet::default()
    }

    /// Adds a CPU; `false` (and nothing added) for a number at or past [`MAX_CPUS`].
    pub fn insert(&mut self, cpu: u32) -> bool {
        if cpu >= MAX_CPUS {
            return false;
        }
        self.0.insert(cpu);
        true
    }

    pub fn contains(&self, cpu: u32) -> bool {
        self.0.contains(&cpu)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = u32> + '_ {
        self.0.iter().copied()
    }

    pub fn first(&self) -> Option<u32> {
        self.0.first().copied()
    }

    pub fn last(&self) -> Option<u32> {
        self.0.last().copied()
    }

    pub fn is_subset(&self, other: &CpuSet) -> bool {
        self.0.is_subset(&other.0)
    }

    pub fn intersects(&self, other: &CpuSet) -> bool {
        self.0.intersection(&other.0).next().is_some()
    }

    pub fn union(&self, other: &CpuSet) -> CpuSet {
        CpuSet(self.0.union(&other.0).copied().collect())
    }

    pub fn intersection(&self, other: &CpuSet) -> CpuSet {
        CpuSet(self.0.intersection(&other.0).copied().collect())
    }

    /// The CPUs of `self` that are not in `other`.
    pub fn difference(&self, other: &CpuSet) -> CpuSet {
        CpuSet(self.0.difference(&other.0).copied().collect())
    }

    /// The CPUs of `present` that are not in `self`: the host's share when `self` is the
    /// guest's (what `irqaffinity=` takes).
    pub fn complement_in(&self, present: &CpuSet) -> CpuSet {
        present.difference(self)
    }
}

impl FromIterator<u32> for CpuSet {
    /// Collects CPU numbers, leaving out any at or past [`MAX_CPUS`].
    fn from_iter<I: IntoIterator<Item = u32>>(iter: I) -> CpuSet {
        CpuSet(iter.into_iter().filter(|c| *c < MAX_CPUS).collect())
    }
}

impl fmt::Display for CpuSet {
    /// The canonical list: ascending, runs of two or more as `a-b`, no strides, no `N`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        let mut it = self.0.iter().copied().peekable();
        while let Some(start) = it.next() {
            let mut end = start;
            while it.peek() == Some(&(end + 1)) {
                end += 1;
                it.next();
            }
            if !first {
                f.write_str(",")?;
            }
            first = false;
            if start == end {
                write!(f, "{start}")?;
            } else {
                write!(f, "{start}-{end}")?;
            }
        }
        Ok(())
    }
}

/// Parses a cpu-list for a machine whose CPU numbers are below `possible` (the kernel's
/// `nr_cpu_ids`; `N` is `possible - 1`). `possible` is capped at [`MAX_CPUS`]; pass
/// [`MAX_CPUS`] when the host is not known, and check the result against the host's CPUs.
pub fn parse(text: &str, possible: u32) -> Result<CpuSet, ParseError> {
    let possible = possible.clamp(1, MAX_CPUS);
    let last = possible - 1;
    let chars: Vec<char> = text.chars().collect();
    if chars.is_empty() {
        return Err(err(
            1,
            "the list is empty; give CPU numbers such as `2-7,10-15`",
        ));
    }
    let mut set = CpuSet::new();
    let mut p = Parser {
        chars: &chars,
        pos: 0,
        last,
    };
    loop {
        let item_start = p.pos;
        let region = p.region()?;
        if region.start > region.end {
            return Err(err(
                item_start + 1,
                &format!(
                    "the range {}-{} goes down; write the lower CPU first",
                    region.start, region.end
                ),
            ));
        }
        if region.end > last {
            return Err(err(
                region.end_column,
                &format!(
                    "CPU {} is past the last possible CPU {last}; the kernel refuses the whole list",
                    region.end
                ),
            ));
        }
        if let Some((used, group, column)) = region.stride {
            if group == 0 {
                return Err(err(column, "a stride's group size must be at least 1"));
            }
            if used > group {
                return Err(err(
                    column,
                    &format!(
                        "a stride uses {used} CPUs of each group of {group}: more than the group"
                    ),
                ));
            }
            // At most MAX_CPUS / group steps, each adding at most `used` CPUs below MAX_CPUS.
            let mut first = region.start;
            while first <= region.end {
                let take = used.min(region.end - first + 1);
                for cpu in first..first + take {
                    set.insert(cpu);
                }
                match first.checked_add(group) {
                    Some(next) => first = next,
                    None => break,
                }
            }
        } else {
            for cpu in region.start..=region.end {
                set.insert(cpu);
            }
        }
        match p.peek() {
            None => break,
            Some(',') => {
                p.pos += 1;
                if p.peek().is_none() {
                    return Err(err(p.pos, "the list ends with a comma"));
                }
            }
            Some(c) => return Err(p.unexpected(c, "`,`")),
        }
    }
    Ok(set)
}

fn err(column: usize, message: &str) -> ParseError {
    ParseError {
        column,
        message: message.to_string(),
    }
}

struct Region {
    start: u32,
    end: u32,
    /// 1-based column of the end number, for "past the last CPU".
    end_column: usize,
    /// (used, group, column of `:`).
    stride: Option<(u32, u32, usize)>,
}

struct Parser<'a> {
    chars: &'a [char],
    pos: usize,
    last: u32,
}

impl Parser<'_> {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn unexpected(&self, c: char, expected: &str) -> ParseError {
        let what = if c.is_whitespace() {
            "a space (a space ends a kernel option; separate CPUs with commas)".to_string()
        } else {
            format!("`{}`", c.escape_debug())
        };
        err(
            self.pos + 1,
            &format!("unexpected {what}; expected {expected}"),
        )
    }

    /// One item: `all`, a number, or a range, with an optional stride after a range or `all`.
    fn region(&mut self) -> Result<Region, ParseError> {
        let rest: String = self.chars[self.pos..].iter().take(3).collect();
        let (start, end, end_column) = if rest.eq_ignore_ascii_case("all") {
            let column = self.pos + 1;
            self.pos += 3;
            (0, self.last, column)
        } else {
            let start = self.number()?;
            if self.peek() != Some('-') {
                if self.peek() == Some(':') {
                    return Err(err(
                        self.pos + 1,
                        "a stride needs a range before it (`a-b:used/group`)",
                    ));
                }
                return Ok(Region {
                    start,
                    end: start,
                    end_column: self.pos,
                    stride: None,
                });
            }
            self.pos += 1;
            let column = self.pos + 1;
            let end = self.number()?;
            (start, end, column)
        };
        let stride = if self.peek() == Some(':') {
            let column = self.pos + 1;
            self.pos += 1;
            let used = self.number()?;
            match self.peek() {
                Some('/') => self.pos += 1,
                Some(c) => return Err(self.unexpected(c, "`/` and the group size")),
                None => {
                    return Err(err(
                        self.pos + 1,
                        "the stride ends early; expected `/` and the group size",
                    ));
                }
            }
            let group = self.number()?;
            Some((used, group, column))
        } else {
            None
        };
        Ok(Region {
            start,
            end,
            end_column,
            stride,
        })
    }

    /// A decimal CPU number or `N`; numbers past `u32` are refused as the kernel refuses them
    /// (`-EOVERFLOW`), without reading more digits than that takes.
    fn number(&mut self) -> Result<u32, ParseError> {
        let column = self.pos + 1;
        match self.peek() {
            Some('N') => {
                self.pos += 1;
                Ok(self.last)
            }
            Some(c) if c.is_ascii_digit() => {
                let mut n: u64 = 0;
                while let Some(d) = self.peek().and_then(|c| c.to_digit(10)) {
                    n = n * 10 + u64::from(d);
                    if n > u64::from(u32::MAX) {
                        return Err(err(column, "number too large for a CPU"));
                    }
                    self.pos += 1;
                }
                Ok(n as u32)
            }
            Some(c) => Err(self.unexpected(c, "a CPU number or `N`")),
            None => Err(err(column, "the list ends early; expected a CPU number")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(cpus: &[u32]) -> CpuSet {
        cpus.iter().copied().collect()
    }

    #[test]
    fn lists_ranges_and_strides_parse_as_the_kernel_reads_them() {
        assert_eq!(parse("0", 16).unwrap(), set(&[0]));
        assert_eq!(parse("2-7,10-15", 16).unwrap().to_string(), "2-7,10-15");
        assert_eq!(parse("1,2,10-12", 16).unwrap(), set(&[1, 2, 10, 11, 12]));
        // The kernel's own example (lib/bitmap-str.c): 0-1023:2/256.
        assert_eq!(
            parse("0-1023:2/256", 1024).unwrap(),
            set(&[0, 1, 256, 257, 512, 513, 768, 769])
        );
        // kernel-parameters.rst: 100-2000:2/25 is 100,101,125,126,150,151,...
        let s = parse("100-2000:2/25", MAX_CPUS).unwrap();
        assert_eq!(
            s.iter().take(6).collect::<Vec<_>>(),
            [100, 101, 125, 126, 150, 151]
        );
        // The last group is cut at the end of the range.
        assert_eq!(parse("0-4:2/4", 8).unwrap(), set(&[0, 1, 4]));
        assert_eq!(parse("0-7:0/2", 8).unwrap(), CpuSet::new());
    }

    #[test]
    fn n_and_all_stand_for_the_last_possible_cpu() {
        assert_eq!(parse("N", 16).unwrap(), set(&[15]));
        assert_eq!(parse("2-N", 8).unwrap().to_string(), "2-7");
        assert_eq!(parse("all", 4).unwrap().to_string(), "0-3");
        assert_eq!(parse("ALL:1/2", 8).unwrap().to_string(), "0,2,4,6");
        assert_eq!(parse("0-N:1/N", 4).unwrap().to_string(), "0,3");
    }

    #[test]
    fn errors_say_what_and_at_which_column() {
        let e = parse("0-99999", 16).unwrap_err();
        assert_eq!(e.column, 3);
        assert!(
            e.message.contains("99999") && e.message.contains("15"),
            "{e}"
        );
        let e = parse("1e9", MAX_CPUS).unwrap_err();
        assert_eq!(
            (e.column, e.message.as_str()),
            (2, "unexpected `e`; expected `,`")
        );
        let e = parse("2-7, 10", 16).unwrap_err();
        assert_eq!(e.column, 5);
        assert!(e.message.contains("a space"), "{e}");
        assert_eq!(parse("7-2", 16).unwrap_err().column, 1);
        assert_eq!(parse("1,,2", 16).unwrap_err().column, 3);
        assert_eq!(parse("1,", 16).unwrap_err().column, 2);
        assert_eq!(parse("", 16).unwrap_err().column, 1);
        assert_eq!(parse("3:1/2", 16).unwrap_err().column, 2);
        assert_eq!(parse("0-7:1/0", 16).unwrap_err().column, 4);
        assert_eq!(parse("0-7:3/2", 16).unwrap_err().column, 4);
        assert_eq!(parse("0-7:3", 16).unwrap_err().column, 6);
        assert_eq!(parse("-1", 16).unwrap_err().column, 1);
        assert_eq!(parse("+1", 16).unwrap_err().column, 1);
        let e = parse("99999999999999999999999", MAX_CPUS).unwrap_err();
        assert_eq!(
            (e.column, e.message.as_str()),
            (1, "number too large for a CPU")
        );
        // Past MAX_CPUS whatever `possible` says.
        assert!(parse("8192", u32::MAX).is_err());
        assert!(parse("8191", u32::MAX).is_ok());
    }

    #[test]
    fn format_writes_canonical_ranges() {
        assert_eq!(set(&[]).to_string(), "");
        assert_eq!(set(&[0, 1, 2, 4, 6, 7]).to_string(), "0-2,4,6-7");
        assert_eq!(set(&[5]).to_string(), "5");
    }

    #[test]
    fn complement_is_the_present_cpus_left() {
        let present = parse("0-15", 16).unwrap();
        let guest = parse("2-7,10-15", 16).unwrap();
        assert_eq!(guest.complement_in(&present).to_string(), "0-1,8-9");
        // CPUs that are not present do not appear in the complement.
        assert_eq!(set(&[1, 40]).complement_in(&set(&[0, 1])).to_string(), "0");
        assert!(!set(&[]).insert(MAX_CPUS) && set(&[MAX_CPUS]).is_empty());
    }
}
