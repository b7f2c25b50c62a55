//! `vfio-gen detect`: a commented profile for this host, on stdout or into a file; exit 1 with
//! no profile when there is no GPU to pass through.

use super::{Ctx, Io};
use crate::host::cpu::Cpu;
use crate::host::pci::Pci;
use crate::inspect;
use crate::install;
use anyhow::Result;
use std::path::PathBuf;

pub struct Options {
    /// The GPUs asked for with `--gpu`.
    pub gpus: Vec<String>,
    /// `-o FILE`: write the profile there instead of stdout.
    pub output: Option<PathBuf>,
    /// Overwrite an existing `-o` file.
    pub force: bool,
    /// Text: the commented profile; JSON: the facts and the profile (README, "detect --format
    /// json").
    pub format: crate::cli::Format,
}

pub fn run(ctx: &Ctx, opts: &Options, io: &mut Io) -> Result<u8> {
    let root = &ctx.root;
    let pci = Pci::read(root)?;
    let cpu = Cpu::read(root)?;
    let virt = crate::host::virt::Virt::read(root, &cpu)?;
    let json = opts.format == crate::cli::Format::Json;
    if let Some(why) = inspect::no_candidate(&pci, &virt, &opts.gpus) {
        if json {
            let v = crate::json::envelope(serde_json::json!({"profile": null, "why": why}));
            writeln!(io.out, "{}", serde_json::to_string_pretty(&v)?)?;
        } else {
            writeln!(io.err, "vfio-gen: {why}")?;
        }
        return Ok(1);
    }
    let (profile, facts) = inspect::detect::detect_with_facts(&pci, &cpu, root, &opts.gpus)?;
    if json {
        writeln!(
            io.out,
            "{}",
            serde_json::to_string_pretty(&as_json(&profile, &facts)?)?
        )?;
        return Ok(0);
    }
    let Some(file) = &opts.output else {
        write!(io.out, "{profile}")?;
        return Ok(0);
    };
    let made = install::write_new_file(file, profile.as_bytes(), opts.force)?;
    if !ctx.quiet {
        for dir in made {
            writeln!(io.out, "created {}", dir.display())?;
        }
        writeln!(
            io.out,
            "wrote {}; read it, then `{}{}` shows what apply would change",
            file.display(),
            super::sudo_on_host(root),
            root.clone().with_profile(Some(file)).command("plan")
        )?;
    }
    Ok(0)
}

/// `detect --format json`: `{"version": 1, "facts": {...}, "profile": {...}, "profile_text":
/// "..."}`; the facts are what the profile's comments say (each note one string), the profile
/// is its TOML as JSON.
fn as_json(text: &str, facts: &minijinja::Value) -> Result<serde_json::Value> {
    let mut facts = to_json(facts);
    if let Some(notes) = facts.get_mut("notes") {
        let joined: Vec<String> = notes
            .as_array()
            .into_iter()
            .flatten()
            .map(|lines| {
                let words: Vec<&str> = lines
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|l| l.as_str())
                    .collect();
                words.join(" ")
            })
            .collect();
        *notes = serde_json::json!(joined);
    }
    let profile: toml::Value = toml::from_str(text)?;
    Ok(crate::json::envelope(serde_json::json!({
        "facts": facts,
        "profile": profile,
        "profile_text": text,
    })))
}

/// A template context as JSON (minijinja is built without serde here).
fn to_json(v: &minijinja::Value) -> serde_json::Value {
    use minijinja::value::ValueKind;
    match v.kind() {
        ValueKind::Bool => serde_json::json!(v.is_true()),
        ValueKind::Number => match i64::try_from(v.clone()) {
            Ok(n) => serde_json::json!(n),
            Err(_) => serde_json::json!(f64::try_from(v.clone()).ok()),
        },
        ValueKind::String => serde_json::json!(v.as_str()),
        ValueKind::Seq | ValueKind::Iterable => serde_json::Value::Array(
            v.try_iter()
                .into_iter()
                .flatten()
                .map(|i| to_json(&i))
                .collect(),
        ),
        ValueKind::Map => serde_json::Value::Object(
            v.try_iter()
                .into_iter()
                .flatten()
                .map(|k| {
                    let item = v.get_item(&k).unwrap_or_default();
                    (k.to_string(), to_json(&item))
                })
                .collect(),
        ),
        _ => serde_json::Value::Null,
    }
}
