//! The vocabulary file: versioned JSON (`"format": "rustrnn.vocab"`,
//! `"version": 1`), written by [`Vocab::to_json`] and [`Vocab::save`], read
//! back by [`Vocab::from_json`] and [`Vocab::load`] with every check a foreign
//! or corrupt document needs.
//!
//! Separate because the on-disk format is a contract of its own: it changes
//! with a version bump, not with how a vocabulary is built or looked up.

// Values from Python and from vocabulary files reach this module: no index or
// slice may panic.
#![cfg_attr(not(test), deny(clippy::indexing_slicing))]

use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{quote_all, Level, Vocab};
use crate::error::{Error, Result};

/// The `"format"` tag of a vocabulary file.
pub const FORMAT: &str = "rustrnn.vocab";
/// The file format version this code writes and reads.
pub const VERSION: u64 = 1;

impl Vocab {
    /// The versioned JSON document of this vocabulary:
    /// `{"format": "rustrnn.vocab", "version": 1, "level": "char"|"word",
    /// "lower": bool, "specials": [...], "tokens": [... in id order, specials first]}`.
    pub fn to_json(&self) -> String {
        let file = VocabFile {
            format: FORMAT.to_string(),
            version: VERSION,
            level: self.level,
            lower: self.lower,
            specials: self.specials().to_vec(),
            tokens: self.tokens.clone(),
        };
        #[allow(clippy::expect_used, reason = "strings and numbers always serialize")]
        let mut s = serde_json::to_string_pretty(&file).expect("a vocabulary serializes");
        s.push('\n');
        s
    }

    /// Reads [`Vocab::to_json`]'s document; a foreign or corrupt one is a
    /// `Value` error saying what is wrong.
    pub fn from_json(json: &[u8]) -> Result<Vocab> {
        if json.iter().all(u8::is_ascii_whitespace) {
            return Err(Error::value(
                "empty: no JSON document, not a rustrnn vocabulary",
            ));
        }
        if let Err(e) = std::str::from_utf8(json) {
            return Err(Error::value(format!(
                "not UTF-8 text (invalid byte at offset {}), not a rustrnn vocabulary",
                e.valid_up_to()
            )));
        }
        let value: serde_json::Value =
            serde_json::from_slice(json).map_err(|e| Error::value(format!("invalid JSON: {e}")))?;
        let obj = value.as_object().ok_or_else(|| {
            Error::value("not a rustrnn vocabulary: the document is not a JSON object")
        })?;
        match obj.get("format") {
            Some(serde_json::Value::String(f)) if f == FORMAT => {}
            Some(other) => {
                return Err(Error::value(format!(
                    "not a rustrnn vocabulary: \"format\" is {other}, expected \"{FORMAT}\""
                )))
            }
            None => {
                return Err(Error::value(format!(
                    "not a rustrnn vocabulary: no \"format\": \"{FORMAT}\" field"
                )))
            }
        }
        match obj.get("version") {
            Some(v) if v.as_u64() == Some(VERSION) => {}
            Some(v) => {
                return Err(Error::value(format!(
                    "unsupported vocabulary version {v} (this rustrnn reads version {VERSION})"
                )))
            }
            None => return Err(Error::value("missing field `version`")),
        }
        let file: VocabFile =
            serde_json::from_value(value).map_err(|e| Error::value(e.to_string()))?;
        let n = file.specials.len();
        if !file.tokens.starts_with(&file.specials) {
            return Err(Error::value(format!(
                "\"tokens\" must start with the specials [{}]",
                quote_all(&file.specials)
            )));
        }
        Vocab::from_parts(file.level, file.lower, n, file.tokens)
    }

    /// Writes [`Vocab::to_json`] to `path` atomically: a temporary file in the
    /// same directory, flushed and fsynced, then renamed over `path`.
    pub fn save(&self, path: &Path) -> Result<()> {
        crate::atomic::write(path, |f| f.write_all(self.to_json().as_bytes()))
    }

    /// Reads a file written by [`Vocab::save`]. A missing or unreadable file is
    /// an `Io` error, a foreign or corrupt one a `Format` error; both name it.
    pub fn load(path: &Path) -> Result<Vocab> {
        let bytes = crate::fs::read_regular(path)?;
        Vocab::from_json(&bytes).map_err(|e| match e {
            Error::Value(msg) => Error::format(path, msg),
            other => other,
        })
    }
}

#[derive(Serialize, Deserialize)]
struct VocabFile {
    format: String,
    version: u64,
    level: Level,
    lower: bool,
    specials: Vec<String>,
    tokens: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vocab::BuildOptions;
    use std::fs;

    #[test]
    fn json_round_trip_and_corruption() {
        let opts = BuildOptions {
            lower: true,
            ..Default::default()
        };
        let v = Vocab::build("Some words, some more.\n", Level::Word, &opts).unwrap();
        let json = v.to_json();
        let back = Vocab::from_json(json.as_bytes()).unwrap();
        assert_eq!(back, v);
        assert_eq!(
            back.encode_ids("some more").unwrap(),
            v.encode_ids("some more").unwrap()
        );

        let bad = |s: &str| match Vocab::from_json(s.as_bytes()) {
            Err(Error::Value(m)) => m,
            other => panic!("{s}: {other:?}"),
        };
        assert!(bad("").contains("empty"));
        assert!(bad("{").contains("invalid JSON"));
        assert!(bad("[1]").contains("not a rustrnn vocabulary"));
        assert!(bad(r#"{"format": "other"}"#).contains("not a rustrnn vocabulary"));
        assert!(bad(r#"{"format": "rustrnn.vocab", "version": 2}"#).contains("version 2"));
        let head = r#""format": "rustrnn.vocab", "version": 1, "level": "char", "lower": false"#;
        assert!(bad(&format!("{{{head}, \"specials\": []}}")).contains("tokens"));
        assert!(bad(&format!(
            "{{{head}, \"specials\": [], \"tokens\": [\"a\", \"a\"]}}"
        ))
        .contains("duplicate"));
        assert!(bad(&format!(
            "{{{head}, \"specials\": [], \"tokens\": [\"ab\"]}}"
        ))
        .contains("single character"));
        assert!(bad(&format!(
            "{{{head}, \"specials\": [\"<unk>\"], \"tokens\": [\"a\"]}}"
        ))
        .contains("start with the specials"));
    }

    #[test]
    fn save_is_atomic_and_load_names_the_file() {
        let dir = std::env::temp_dir().join(format!("rustrnn-vocab-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("v.json");
        let v = Vocab::build("abc", Level::Char, &BuildOptions::default()).unwrap();
        v.save(&path).unwrap();
        assert_eq!(Vocab::load(&path).unwrap(), v);
        let entries: Vec<_> = fs::read_dir(&dir).unwrap().collect();
        assert_eq!(entries.len(), 1, "no temporary file is left behind");

        let target_dir = dir.join("is_a_dir");
        fs::create_dir_all(&target_dir).unwrap();
        assert!(matches!(v.save(&target_dir), Err(Error::Io { .. })));
        assert_eq!(fs::read_dir(&dir).unwrap().count(), 2);

        fs::write(&path, "{").unwrap();
        let err = Vocab::load(&path).unwrap_err();
        assert!(matches!(err, Error::Format { .. }) && err.to_string().contains("v.json"));
        let err = Vocab::load(&dir.join("missing.json")).unwrap_err();
        assert!(matches!(err, Error::Io { .. }) && err.to_string().contains("missing.json"));
        fs::remove_dir_all(&dir).unwrap();
    }
}
