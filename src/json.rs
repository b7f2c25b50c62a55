//! The envelope of every `--format json` document (leaf): the format version, then the
//! command's own fields. README.md documents each command's fields.

use serde_json::Value;

/// The version every JSON document carries; it changes only with an incompatible change.
pub const VERSION: u32 = 1;

/// `body` (an object) with `"version"` added. Keys are written sorted, so where it is added
/// does not change the bytes.
pub fn envelope(mut body: Value) -> Value {
    if let Value::Object(map) = &mut body {
        map.insert("version".into(), VERSION.into());
    }
    body
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_version_comes_in_its_sorted_place() {
        let doc = super::envelope(serde_json::json!({"zeta": 1, "alpha": true}));
        assert_eq!(
            serde_json::to_string(&doc).unwrap(),
            r#"{"alpha":true,"version":1,"zeta":1}"#
        );
    }
}
