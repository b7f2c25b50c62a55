//! The result of one check (`vfio-gen check`): an id, pass/warn/pending/fail, a message and
//! what to do (leaf: the checks of `inspect` and `initramfs_check` both produce it).

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Pass,
    Warn,
    /// Right for the files in place, wrong only in the running system: a reboot changes it
    /// (`check` exits 3 when such items are all that is left; README, "Exit status").
    Pending,
    Fail,
}

#[derive(Debug, Clone, Serialize)]
pub struct Item {
    pub id: &'static str,
    pub status: Status,
    pub message: String,
    /// What to do, for warn, pending and fail.
    pub remedy: Option<String>,
    /// The device the item is about, if one.
    pub bdf: Option<String>,
    /// The file the item is about (an initramfs image), if one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
}
