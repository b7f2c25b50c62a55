//! booster (Arch): the VFIO modules first in `modules_force_load` of `/etc/booster.yaml`,
//! marked so that `--revert` takes exactly them out.

use super::{Generator, Input};
use crate::root::Files;
use crate::targets::Out;
use anyhow::Result;

pub const BOOSTER_YAML: &str = "/etc/booster.yaml";

pub struct Booster;

impl Generator for Booster {
    fn name(&self) -> &'static str {
        "booster"
    }
    fn config(&self) -> &'static str {
        BOOSTER_YAML
    }
    fn owns_config(&self) -> bool {
        false
    }
    fn early_load(&self) -> String {
        format!("modules_force_load in {BOOSTER_YAML}")
    }
    fn hook(&self) -> &'static [&'static str] {
        &["/usr/lib/booster/regenerate_images"]
    }
    fn detect(&self, files: &dyn Files) -> Option<String> {
        files.exists(BOOSTER_YAML).then(|| BOOSTER_YAML.into())
    }
    fn plan(&self, out: &mut dyn Out, input: &Input) -> Result<()> {
        let cur = out.files().read(BOOSTER_YAML)?;
        let new = edit(cur.as_deref(), input.modules, out.revert())?;
        out.edited(BOOSTER_YAML, cur, new)
    }
}

const BOOSTER_MARK: &str = "# vfio-gen: the VFIO modules load first";

/// `/etc/booster.yaml` with the VFIO modules first in `modules_force_load` (or taken out).
pub fn edit(current: Option<&[u8]>, modules: &[&str], revert: bool) -> Result<Option<Vec<u8>>> {
    let text = String::from_utf8_lossy(current.unwrap_or_default()).into_owned();
    let mut lines: Vec<String> = text.split_inclusive('\n').map(str::to_string).collect();
    let key = "modules_force_load:";
    let found = lines.iter().position(|l| l.starts_with(key));
    if let Some(i) = found
        && lines[i][key.len()..].trim().is_empty()
    {
        anyhow::bail!(
            "{BOOSTER_YAML}: line {}: modules_force_load is not a comma-separated string (booster reads `modules_force_load: a,b,c`); write it on one line, then run vfio-gen again",
            i + 1
        );
    }
    let list_of = |l: &str| -> Vec<String> {
        l[key.len()..]
            .trim()
            .trim_matches(|c| c == '"' || c == '\'')
            .split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect()
    };
    let theirs: Vec<String> = found
        .map(|i| list_of(&lines[i]))
        .unwrap_or_default()
        .into_iter()
        .filter(|m| !modules.contains(&m.as_str()))
        .collect();
    let mut list: Vec<String> = if revert {
        Vec::new()
    } else {
        modules.iter().map(|m| m.to_string()).collect()
    };
    list.extend(theirs);
    let new_line = format!("{key} {}\n", list.join(","));
    match found {
        Some(i) if list.is_empty() => {
            lines.remove(i);
            if i > 0 && lines[i - 1].starts_with(BOOSTER_MARK) {
                lines.remove(i - 1);
            }
        }
        Some(i) if list_of(&lines[i]) != list => lines[i] = new_line,
        Some(_) => {}
        None if !revert => {
            if let Some(last) = lines.last_mut()
                && !last.ends_with('\n')
            {
                last.push('\n');
            }
            lines.push(format!(
                "{BOOSTER_MARK}; `vfio-gen apply --revert` removes them\n"
            ));
            lines.push(new_line);
        }
        None => {}
    }
    // The file stays even when empty: it may have been there before vfio-gen (a revert with
    // history puts back exactly what was there).
    Ok(Some(lines.concat().into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::super::modules;
    use super::*;

    #[test]
    fn booster_list_keeps_the_users_modules() {
        let before = "compression: zstd\nmodules_force_load: nvme,btrfs\n";
        let after = edit(Some(before.as_bytes()), &modules(false), false)
            .unwrap()
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&after),
            "compression: zstd\nmodules_force_load: vfio_pci,vfio,vfio_iommu_type1,nvme,btrfs\n"
        );
        let back = edit(Some(&after), &modules(false), true).unwrap().unwrap();
        assert_eq!(
            String::from_utf8_lossy(&back),
            "compression: zstd\nmodules_force_load: nvme,btrfs\n"
        );
        let fresh = edit(Some(b"universal: false"), &modules(false), false)
            .unwrap()
            .unwrap();
        let back = edit(Some(&fresh), &modules(false), true).unwrap().unwrap();
        assert_eq!(back, b"universal: false\n");
    }
}
