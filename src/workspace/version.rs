//! Job version strings as operators write them (`"1"`, `"v2.1"`, `"2.0.0-rc1"`), read into
//! [`semver::Version`]. Pure; owns only the accepted syntax.

use semver::Version;

/// Why a version string was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VersionError {
    /// The string is empty (or only a `v`).
    #[error("the version is empty; write one such as \"1.0.0\"")]
    Empty,
    /// More than three dot-separated numbers (`1.2.3.4`).
    #[error(
        "\"{input}\" has more than three numeric parts; use major.minor.patch such as \"1.2.3\""
    )]
    TooManySegments { input: String },
    /// A part that should be a number is not (`unknown`, `1.x`).
    #[error("\"{input}\" is not a version: \"{segment}\" is not a number; use major.minor.patch such as \"1.2.3\" (an optional leading \"v\" and a \"-suffix\" are allowed)")]
    NonNumeric { input: String, segment: String },
    /// The `-prerelease` or `+build` suffix is not valid semver.
    #[error("\"{input}\" has an invalid suffix: {reason}; use letters, digits, '-' and '.' after the dash, as in \"2.0.0-rc1\"")]
    InvalidSuffix { input: String, reason: String },
}

/// Parses a job version.
///
/// Accepts one to three dot-separated non-negative integers (missing parts are `0`), an
/// optional leading `v`, and an optional semver prerelease (`-rc1`) and/or build (`+b7`)
/// suffix. Rejects empty strings, non-numeric parts (such as `unknown`) and four or more
/// numeric parts.
///
/// ```
/// use maand::workspace::parse_version;
/// assert_eq!(parse_version("v2.1").unwrap().to_string(), "2.1.0");
/// assert_eq!(parse_version("3").unwrap().to_string(), "3.0.0");
/// assert_eq!(parse_version("2.0.0-rc1").unwrap().to_string(), "2.0.0-rc1");
/// assert!(parse_version("1.2.3.4").is_err());
/// ```
pub fn parse_version(input: &str) -> Result<Version, VersionError> {
    let body = input.strip_prefix('v').unwrap_or(input);
    if body.is_empty() {
        return Err(VersionError::Empty);
    }
    let core_end = body.find(['-', '+']).unwrap_or(body.len());
    let (core, suffix) = body.split_at(core_end);
    let segments: Vec<&str> = core.split('.').collect();
    if segments.len() > 3 {
        return Err(VersionError::TooManySegments {
            input: input.to_string(),
        });
    }
    let mut numbers = [0u64; 3];
    for (slot, segment) in numbers.iter_mut().zip(&segments) {
        let non_numeric = || VersionError::NonNumeric {
            input: input.to_string(),
            segment: segment.to_string(),
        };
        if segment.is_empty() || !segment.bytes().all(|b| b.is_ascii_digit()) {
            return Err(non_numeric());
        }
        *slot = segment.parse().map_err(|_| non_numeric())?;
    }
    let [major, minor, patch] = numbers;
    Version::parse(&format!("{major}.{minor}.{patch}{suffix}")).map_err(|e| {
        VersionError::InvalidSuffix {
            input: input.to_string(),
            reason: e.to_string(),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn full_version_is_taken_as_written() {
        assert_eq!(parse_version("1.0.0").unwrap(), Version::new(1, 0, 0));
    }

    #[test]
    fn leading_v_is_ignored_and_missing_parts_are_zero() {
        assert_eq!(parse_version("v2.1").unwrap(), Version::new(2, 1, 0));
        assert_eq!(parse_version("3").unwrap(), Version::new(3, 0, 0));
    }

    #[test]
    fn prerelease_suffix_is_kept() {
        let version = parse_version("2.0.0-rc1").unwrap();
        assert_eq!(version.to_string(), "2.0.0-rc1");
        assert!(version < Version::new(2, 0, 0));
    }

    #[test]
    fn short_version_may_carry_a_suffix() {
        assert_eq!(
            parse_version("v2-beta.1").unwrap().to_string(),
            "2.0.0-beta.1"
        );
    }

    #[test]
    fn empty_and_bare_v_are_rejected() {
        assert_eq!(parse_version(""), Err(VersionError::Empty));
        assert_eq!(parse_version("v"), Err(VersionError::Empty));
    }

    #[test]
    fn unknown_is_rejected_as_non_numeric() {
        assert!(matches!(
            parse_version("unknown"),
            Err(VersionError::NonNumeric { .. })
        ));
    }

    #[test]
    fn four_segments_are_rejected() {
        assert!(matches!(
            parse_version("1.2.3.4"),
            Err(VersionError::TooManySegments { .. })
        ));
    }

    #[test]
    fn non_numeric_segments_and_stray_dots_are_rejected() {
        for input in ["1.x", "1..2", "1.", ".1", " 1.0.0", "1.0.0 ", "V1.0"] {
            assert!(parse_version(input).is_err(), "{input} should be rejected");
        }
    }

    #[test]
    fn bad_suffix_is_rejected() {
        assert!(matches!(
            parse_version("1.0.0-"),
            Err(VersionError::InvalidSuffix { .. })
        ));
        assert!(matches!(
            parse_version("1.0.0-rc 1"),
            Err(VersionError::InvalidSuffix { .. })
        ));
    }

    proptest! {
        #[test]
        fn generated_versions_parse_to_their_parts(
            major in 0u64..100_000,
            minor in 0u64..100_000,
            patch in 0u64..100_000,
            parts in 1usize..=3,
            v_prefix in any::<bool>(),
            prerelease in proptest::option::of("[a-z][a-z0-9]{0,6}(\\.(0|[1-9][0-9]{0,3}|[a-z][a-z0-9]{0,3}))?"),
        ) {
            let numbers = [major, minor, patch];
            let core: Vec<String> = numbers[..parts].iter().map(u64::to_string).collect();
            let mut text = format!("{}{}", if v_prefix { "v" } else { "" }, core.join("."));
            if let Some(pre) = &prerelease {
                text.push('-');
                text.push_str(pre);
            }
            let version = parse_version(&text).unwrap();
            let expected_minor = if parts >= 2 { minor } else { 0 };
            let expected_patch = if parts == 3 { patch } else { 0 };
            prop_assert_eq!(version.major, major);
            prop_assert_eq!(version.minor, expected_minor);
            prop_assert_eq!(version.patch, expected_patch);
            prop_assert_eq!(version.pre.as_str(), prerelease.as_deref().unwrap_or(""));
        }

        #[test]
        fn canonical_output_parses_back_to_itself(major in 0u64..1000, minor in 0u64..1000, patch in 0u64..1000) {
            let version = Version::new(major, minor, patch);
            prop_assert_eq!(parse_version(&version.to_string()).unwrap(), version);
        }
    }
}
