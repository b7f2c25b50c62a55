//! One source edit and its application (leaf): the GRUB editor and the loader-entry editor
//! both turn the command-line model's edits into splices of the file's bytes.

/// Replace `start..end` of the source with `text`. At one position, rank 0 (a deletion)
/// applies first and the highest rank last, so it ends up leftmost.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Splice {
    pub start: usize,
    pub end: usize,
    pub text: String,
    pub rank: u8,
}

impl Splice {
    /// Takes out `start..end`.
    pub fn delete(start: usize, end: usize) -> Splice {
        Splice {
            start,
            end,
            text: String::new(),
            rank: 0,
        }
    }

    /// Puts `text` at `at`, with a rank (1 unless two insertions at one place need an order).
    pub fn insert(at: usize, text: String, rank: u8) -> Splice {
        Splice {
            start: at,
            end: at,
            text,
            rank,
        }
    }
}

/// Applies the splices to `bytes`, from the end of the source backwards so that every offset
/// still points into the original; at one position lower ranks first, and splices of one rank
/// in the order given (each lands before the one given earlier).
pub fn apply(bytes: &mut Vec<u8>, mut splices: Vec<Splice>) {
    splices.sort_by(|a, b| b.start.cmp(&a.start).then(a.rank.cmp(&b.rank)));
    for s in splices {
        bytes.splice(s.start..s.end, s.text.into_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_are_the_originals_and_ranks_order_one_place() {
        let mut b = b"quiet splash".to_vec();
        apply(
            &mut b,
            vec![
                Splice::delete(0, 6),
                Splice::insert(12, " iommu=pt".into(), 1),
                Splice::insert(0, "\"".into(), 2),
                Splice::insert(0, "rw ".into(), 1),
            ],
        );
        assert_eq!(b, b"\"rw splash iommu=pt");
    }
}
