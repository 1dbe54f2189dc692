//! Which vector instructions the hand-vectorized code may use.
//!
//! Everything is compiled for the target's baseline (x86-64: SSE2), so a build
//! runs on any CPU of its architecture. Only the fused kernels
//! (`kernel/block.rs`) and the dropout masks (`dropout.rs`) have variants
//! compiled with `#[target_feature]`; they call [`level`] to pick one at run
//! time. [`Level::Avx512`] requires every feature either variant enables.
//!
//! `RUSTRNN_CPU=portable|avx2|avx512` caps the choice (read once, at first
//! use), e.g. to test the portable kernels on a CPU that has AVX-512. A value
//! that names no level, or a level this CPU lacks, leaves the detected level in
//! place and is reported by [`choice`] (the Python module raises or warns at
//! import).

// Values from Python reach this module: no index or slice may panic.
#![cfg_attr(not(test), deny(clippy::indexing_slicing))]

use std::fmt;
use std::sync::OnceLock;

/// The environment variable that caps [`level`].
pub const VAR: &str = "RUSTRNN_CPU";

/// Instruction-set levels, lowest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Portable,
    Avx2,
    Avx512,
}

impl Level {
    pub const ALL: [Level; 3] = [Level::Portable, Level::Avx2, Level::Avx512];

    /// The spelling `RUSTRNN_CPU` takes.
    pub fn name(self) -> &'static str {
        match self {
            Level::Portable => "portable",
            Level::Avx2 => "avx2",
            Level::Avx512 => "avx512",
        }
    }

    fn parse(value: &str) -> Option<Level> {
        Level::ALL
            .into_iter()
            .find(|l| l.name().eq_ignore_ascii_case(value.trim()))
    }
}

/// The best level the running CPU supports.
pub fn detected() -> Level {
    #[cfg(target_arch = "x86_64")]
    {
        let avx2 = is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma");
        if avx2
            && is_x86_feature_detected!("avx512f")
            && is_x86_feature_detected!("avx512dq")
            && is_x86_feature_detected!("avx512vl")
        {
            return Level::Avx512;
        }
        if avx2 {
            return Level::Avx2;
        }
    }
    Level::Portable
}

/// Why a `RUSTRNN_CPU` value was not followed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Problem {
    /// The value names no level.
    Unknown(String),
    /// The CPU lacks the level asked for.
    Unsupported { asked: Level, detected: Level },
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::Unknown(value) => write!(
                f,
                "{VAR}={value:?} is not one of portable, avx2, avx512 (or unset for the best \
                 this CPU supports)"
            ),
            Problem::Unsupported { asked, detected } => write!(
                f,
                "{VAR}={} asks for instructions this CPU lacks; using {}",
                asked.name(),
                detected.name()
            ),
        }
    }
}

/// The level in use and how it was chosen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Choice {
    pub level: Level,
    pub detected: Level,
    /// `RUSTRNN_CPU` as set (`None` when unset or empty).
    pub requested: Option<String>,
    pub problem: Option<Problem>,
}

/// The rule: the requested level if the CPU has it, else the detected one.
pub fn choose(requested: Option<&str>, detected: Level) -> Choice {
    let requested = requested.filter(|v| !v.trim().is_empty());
    let (level, problem) = match requested.map(|v| (v, Level::parse(v))) {
        None => (detected, None),
        Some((value, None)) => (detected, Some(Problem::Unknown(value.to_owned()))),
        Some((_, Some(asked))) if asked > detected => {
            (detected, Some(Problem::Unsupported { asked, detected }))
        }
        Some((_, Some(asked))) => (asked, None),
    };
    Choice {
        level,
        detected,
        requested: requested.map(str::to_owned),
        problem,
    }
}

/// [`choose`] for this process's environment and CPU, decided once.
pub fn choice() -> &'static Choice {
    static CHOICE: OnceLock<Choice> = OnceLock::new();
    CHOICE.get_or_init(|| choose(std::env::var(VAR).ok().as_deref(), detected()))
}

/// The level the kernels and dropout run at.
pub fn level() -> Level {
    choice().level
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unset_or_empty_takes_the_detected_level() {
        for requested in [None, Some(""), Some("  ")] {
            let c = choose(requested, Level::Avx2);
            assert_eq!((c.level, c.requested, c.problem), (Level::Avx2, None, None));
        }
    }

    #[test]
    fn a_lower_level_caps_the_choice() {
        let c = choose(Some("portable"), Level::Avx512);
        assert_eq!((c.level, c.problem), (Level::Portable, None));
        assert_eq!(choose(Some("AVX2"), Level::Avx512).level, Level::Avx2);
        assert_eq!(choose(Some("avx512"), Level::Avx512).level, Level::Avx512);
    }

    #[test]
    fn a_level_the_cpu_lacks_keeps_the_detected_one() {
        let c = choose(Some("avx512"), Level::Avx2);
        assert_eq!(c.level, Level::Avx2);
        let problem = c.problem.unwrap();
        assert!(
            problem.to_string().contains("lacks; using avx2"),
            "{problem}"
        );
    }

    #[test]
    fn an_unknown_value_is_reported() {
        let c = choose(Some("sse9"), Level::Avx512);
        assert_eq!(c.level, Level::Avx512);
        assert_eq!(c.problem, Some(Problem::Unknown("sse9".into())));
        assert!(c
            .problem
            .unwrap()
            .to_string()
            .contains("not one of portable, avx2, avx512"));
    }
}
