//! The layer rule of `src/lib.rs`, checked on the source: every `crate::` path (and every
//! `super::` path that names a sibling module) is an edge from the module it is written in to
//! the module it names. An edge into a higher layer, an unlisted module, or a cycle between
//! top-level modules or between sibling files of one directory fails the test.

// No function over 150 lines (the threshold is in clippy.toml): split it into functions with
// one job each.
#![deny(clippy::too_many_lines)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The layers, lowest first; a module may use its own layer and the ones below. Keep in step
/// with the module map in `src/lib.rs`.
const LAYERS: &[(&str, &[&str])] = &[
    (
        "leaves",
        &[
            "root",
            "digest",
            "kernel",
            "shell",
            "sh_grammar",
            "cmdline",
            "splice",
            "style",
            "check",
            "json",
            "escape",
            "rom",
            "cpulist",
            "resources",
        ],
    ),
    ("profile/host", &["profile", "host", "history"]),
    ("targets", &["targets"]),
    ("plan", &["plan"]),
    (
        "services",
        &[
            "diff",
            "install",
            "hooks",
            "bind",
            "companions",
            "boot_images",
            "initramfs_check",
            "inspect",
            "check_state",
            "rollback",
            "rom_check",
            "share",
            "trial",
            "handover",
        ],
    ),
    ("app", &["app", "cli", "completions"]),
];

/// A source file as a module path (`targets/grub/lex.rs` -> ["targets", "grub", "lex"]).
fn module_of(rel: &Path) -> Vec<String> {
    let mut parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    let last = parts.pop().unwrap();
    let stem = last.trim_end_matches(".rs");
    if stem != "mod" && stem != "lib" {
        parts.push(stem.to_string());
    }
    parts
}

fn files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The code of a file without comments (doc links name modules without using them).
fn code(text: &str) -> String {
    text.lines()
        .map(|l| {
            let t = l.trim_start();
            if t.starts_with("//") { "" } else { l }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn ident(s: &str) -> (&str, &str) {
    let end = s
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(s.len());
    (&s[..end], &s[end..])
}

/// The module paths named after a `crate::` (with `{a::b, c}` groups expanded), each as the
/// leading identifiers.
fn paths_after(rest: &str) -> Vec<Vec<String>> {
    let rest = rest.trim_start();
    if let Some(group) = rest.strip_prefix('{') {
        let mut depth = 0;
        let mut items = Vec::new();
        let mut start = 0;
        for (i, c) in group.char_indices() {
            match c {
                '{' => depth += 1,
                '}' if depth == 0 => {
                    items.push(&group[start..i]);
                    break;
                }
                '}' => depth -= 1,
                ',' if depth == 0 => {
                    items.push(&group[start..i]);
                    start = i + 1;
                }
                _ => {}
            }
        }
        return items
            .into_iter()
            .flat_map(|it| paths_after(it.trim()))
            .collect();
    }
    let mut out = Vec::new();
    let mut s = rest;
    loop {
        let (id, tail) = ident(s);
        if id.is_empty() {
            break;
        }
        out.push(id.to_string());
        match tail.strip_prefix("::") {
            Some(t) if !t.starts_with('{') => s = t,
            Some(t) => {
                // `crate::a::{b, c}`: each member extends the path.
                return paths_after(t)
                    .into_iter()
                    .map(|p| out.iter().cloned().chain(p).collect())
                    .collect();
            }
            None => break,
        }
    }
    vec![out]
}

struct Graph {
    modules: BTreeSet<Vec<String>>,
    /// (from, to) module paths, `to` cut to the longest module that exists.
    edges: BTreeSet<(Vec<String>, Vec<String>)>,
}

fn graph() -> Graph {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut paths = Vec::new();
    files(&src, &mut paths);
    let mut modules = BTreeSet::new();
    let mut texts = Vec::new();
    for p in paths {
        let rel = p.strip_prefix(&src).unwrap().to_path_buf();
        if rel == Path::new("main.rs") {
            continue; // the binary sits above every layer
        }
        let m = module_of(&rel);
        modules.insert(m.clone());
        texts.push((m, code(&std::fs::read_to_string(&p).unwrap())));
    }
    let longest = |path: &[String]| -> Option<Vec<String>> {
        (1..=path.len())
            .rev()
            .map(|n| path[..n].to_vec())
            .find(|p| modules.contains(p))
    };
    // Files of tests/support/ that lib.rs includes for the unit tests (`#[path]`, cfg(test)):
    // no layer of the product, so no edge.
    let lib = std::fs::read_to_string(src.join("lib.rs")).unwrap();
    let support: BTreeSet<String> = lib
        .split("#[path = \"../tests/support/")
        .skip(1)
        .filter_map(|rest| rest.split_once("mod ")?.1.split_once(';'))
        .map(|(name, _)| name.trim().to_string())
        .collect();
    let mut edges = BTreeSet::new();
    for (m, text) in &texts {
        for (i, _) in text.match_indices("crate::") {
            let before = text[..i].chars().last();
            if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
                continue; // `vfio_gen_crate::` and the like
            }
            for p in paths_after(&text[i + "crate::".len()..]) {
                if p.first().is_some_and(|f| support.contains(f)) {
                    continue;
                }
                let to = longest(&p).unwrap_or_else(|| {
                    panic!("{}: crate::{} names no module", m.join("::"), p.join("::"))
                });
                edges.insert((m.clone(), to));
            }
        }
        for (i, _) in text.match_indices("super::") {
            if text[..i].ends_with("::") {
                continue; // super::super:: is not used; the parent's items are not edges
            }
            let (id, _) = ident(&text[i + "super::".len()..]);
            // In a file module, `super::x` names a sibling when x is one.
            if m.is_empty() || id.is_empty() {
                continue;
            }
            let mut sibling = m[..m.len() - 1].to_vec();
            sibling.push(id.to_string());
            if modules.contains(&sibling) && &sibling != m {
                edges.insert((m.clone(), sibling));
            }
        }
    }
    Graph { modules, edges }
}

fn layer(top: &str) -> Option<usize> {
    LAYERS.iter().position(|(_, ms)| ms.contains(&top))
}

#[test]
fn every_module_has_a_layer() {
    let g = graph();
    let unlisted: BTreeSet<&str> = g
        .modules
        .iter()
        .filter(|m| !m.is_empty() && layer(&m[0]).is_none())
        .map(|m| m[0].as_str())
        .collect();
    assert!(
        unlisted.is_empty(),
        "modules missing from LAYERS in tests/layers.rs (and from the map in src/lib.rs): {unlisted:?}"
    );
}

#[test]
fn no_module_uses_a_higher_layer() {
    let g = graph();
    let mut bad = Vec::new();
    for (from, to) in &g.edges {
        if from.is_empty() || to.is_empty() || from[0] == to[0] {
            continue;
        }
        let (Some(a), Some(b)) = (layer(&from[0]), layer(&to[0])) else {
            continue;
        };
        if b > a {
            bad.push(format!(
                "{} ({}) uses {} ({})",
                from.join("::"),
                LAYERS[a].0,
                to.join("::"),
                LAYERS[b].0
            ));
        }
    }
    assert!(
        bad.is_empty(),
        "imports from a higher layer:\n{}",
        bad.join("\n")
    );
}

/// A cycle in a directed graph, as the nodes along it, if there is one.
fn cycle<N: Ord + Clone>(edges: &BTreeMap<N, BTreeSet<N>>) -> Option<Vec<N>> {
    fn visit<N: Ord + Clone>(
        n: &N,
        edges: &BTreeMap<N, BTreeSet<N>>,
        state: &mut BTreeMap<N, u8>,
        stack: &mut Vec<N>,
    ) -> Option<Vec<N>> {
        match state.get(n) {
            Some(2) => return None,
            Some(1) => {
                let at = stack.iter().position(|s| s == n).unwrap();
                let mut c = stack[at..].to_vec();
                c.push(n.clone());
                return Some(c);
            }
            _ => {}
        }
        state.insert(n.clone(), 1);
        stack.push(n.clone());
        for m in edges.get(n).into_iter().flatten() {
            if let Some(c) = visit(m, edges, state, stack) {
                return Some(c);
            }
        }
        stack.pop();
        state.insert(n.clone(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for n in edges.keys() {
        if let Some(c) = visit(n, edges, &mut state, &mut Vec::new()) {
            return Some(c);
        }
    }
    None
}

#[test]
fn no_cycle_between_top_level_modules() {
    let g = graph();
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (from, to) in &g.edges {
        if !from.is_empty() && !to.is_empty() && from[0] != to[0] {
            edges
                .entry(from[0].clone())
                .or_default()
                .insert(to[0].clone());
        }
    }
    if let Some(c) = cycle(&edges) {
        panic!("import cycle: {}", c.join(" -> "));
    }
}

#[test]
fn no_cycle_between_sibling_files() {
    let g = graph();
    let mut edges: BTreeMap<Vec<String>, BTreeSet<Vec<String>>> = BTreeMap::new();
    for (from, to) in &g.edges {
        // Siblings: two modules under the same parent directory (a parent and its children may
        // use each other's items, as `mod.rs` and `super::` do).
        let n = from.len().min(to.len());
        let common = from.iter().zip(to).take_while(|(a, b)| a == b).count();
        if n == 0 || common == n || from[..common] != to[..common] {
            continue;
        }
        let a = from[..=common].to_vec();
        let b = to[..=common].to_vec();
        if common > 0 {
            edges.entry(a).or_default().insert(b);
        }
    }
    if let Some(c) = cycle(&edges) {
        let names: Vec<String> = c.iter().map(|m| m.join("::")).collect();
        panic!(
            "import cycle between sibling modules: {}",
            names.join(" -> ")
        );
    }
}

#[test]
fn the_checker_sees_paths_in_groups() {
    let got = paths_after("{a::{b, c::d}, e} ;");
    let want: Vec<Vec<String>> = [vec!["a", "b"], vec!["a", "c", "d"], vec!["e"]]
        .iter()
        .map(|p| p.iter().map(|s| s.to_string()).collect())
        .collect();
    assert_eq!(got, want);
    let mut edges = BTreeMap::new();
    edges.insert(1, BTreeSet::from([2]));
    edges.insert(2, BTreeSet::from([3]));
    assert_eq!(cycle(&edges), None);
    edges.insert(3, BTreeSet::from([1]));
    assert_eq!(cycle(&edges), Some(vec![1, 2, 3, 1]));
}

/// The code of a file before its unit tests (`#[cfg(test)] mod tests` closes every file that
/// has them).
fn without_tests(text: &str) -> &str {
    match text.find("#[cfg(test)]\nmod ") {
        Some(i) => &text[..i],
        None => text,
    }
}

/// The rest of vfio-gen asks the boot loader's trait, never the kind: the profile's enum is
/// named only where it is defined and in `plan/loader/` (its dispatch and the loaders).
#[test]
fn boot_loaders_are_asked_through_their_trait() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut paths = Vec::new();
    files(&src, &mut paths);
    let mut found = Vec::new();
    for p in paths {
        let rel = p.strip_prefix(&src).unwrap().to_path_buf();
        if rel == Path::new("profile.rs") || rel.starts_with("plan/loader") {
            continue;
        }
        let text = std::fs::read_to_string(&p).unwrap();
        for (n, line) in code(without_tests(&text)).lines().enumerate() {
            if line.contains("Bootloader::") {
                found.push(format!("src/{}:{}: {}", rel.display(), n + 1, line.trim()));
            }
        }
    }
    assert!(
        found.is_empty(),
        "a match on the boot loader outside src/plan/loader/ (ask plan::loader::of(..) instead):\n{}",
        found.join("\n")
    );
}

/// No function is longer than 150 lines, from its `fn` line to its closing brace (comments
/// and blank lines count). clippy's `too_many_lines` says the same for most code, but takes a
/// `/*` inside a string for a comment and stops counting there; this counts what a reader sees.
#[test]
fn no_function_is_longer_than_150_lines() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut paths = Vec::new();
    for dir in ["src", "tests", "examples"] {
        files(&root.join(dir), &mut paths);
    }
    let mut long = Vec::new();
    for p in paths {
        let text = std::fs::read_to_string(&p).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            let t = line.trim_start();
            let indent = &line[..line.len() - t.len()];
            let head = t
                .trim_start_matches("pub(crate) ")
                .trim_start_matches("pub(super) ")
                .trim_start_matches("pub ")
                .trim_start_matches("const ")
                .trim_start_matches("async ")
                .trim_start_matches("unsafe ");
            if !head.starts_with("fn ") || t.ends_with(';') {
                continue;
            }
            let close = format!("{indent}}}");
            if let Some(end) = lines[i..].iter().position(|l| *l == close)
                && end + 1 > 150
            {
                long.push(format!(
                    "{}:{}: {} lines",
                    p.strip_prefix(root).unwrap().display(),
                    i + 1,
                    end + 1
                ));
            }
        }
    }
    assert!(
        long.is_empty(),
        "functions over 150 lines:\n{}",
        long.join("\n")
    );
}
