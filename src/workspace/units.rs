//! Memory and CPU quantities as written in workspace files (`"4 gb"`, `"1.5 gb"`,
//! `"2000 mhz"`), converted to whole megabytes / megahertz. Pure string arithmetic; owns no
//! files and never rounds silently.

use std::fmt;

/// Why a memory or CPU quantity could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuantityError {
    /// Nothing but whitespace was given.
    #[error("the value is empty; write a {measure} such as \"{example}\"")]
    Empty {
        measure: Measure,
        example: &'static str,
    },
    /// The number part is missing or malformed (signs, several dots, letters).
    #[error("\"{input}\" is not a {measure}; write a non-negative number followed by one of {accepted} (for example \"{example}\")")]
    Malformed {
        input: String,
        measure: Measure,
        accepted: &'static str,
        example: &'static str,
    },
    /// The unit is not one this measure accepts.
    #[error("\"{input}\" uses the unknown unit \"{unit}\"; use one of {accepted} (case-insensitive), or no unit for {base}")]
    UnknownUnit {
        input: String,
        unit: String,
        accepted: &'static str,
        base: &'static str,
    },
    /// The value is not a whole number of the base unit (e.g. `"0.3 gb"` = 307.2 MB).
    #[error("\"{input}\" is not a whole number of {base}; write it in {base} instead (for example \"{rounded} {base}\")")]
    NotWhole {
        input: String,
        base: &'static str,
        rounded: u64,
    },
    /// The value does not fit in 64 bits.
    #[error("\"{input}\" is too large; write a realistic {measure}")]
    TooLarge { input: String, measure: Measure },
}

/// Which quantity is being parsed; used in messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Measure {
    /// Memory, counted in megabytes (1 gb = 1024 mb).
    Memory,
    /// CPU, counted in megahertz (1 ghz = 1000 mhz).
    Cpu,
}

impl fmt::Display for Measure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Measure::Memory => "memory size",
            Measure::Cpu => "CPU speed",
        })
    }
}

struct Scale {
    measure: Measure,
    base: &'static str,
    accepted: &'static str,
    example: &'static str,
    units: &'static [(&'static str, u64)],
}

const MEMORY: Scale = Scale {
    measure: Measure::Memory,
    base: "mb",
    accepted: "mb, gb, tb",
    example: "4096 mb",
    units: &[("mb", 1), ("gb", 1024), ("tb", 1024 * 1024)],
};

const CPU: Scale = Scale {
    measure: Measure::Cpu,
    base: "mhz",
    accepted: "mhz, ghz, thz",
    example: "2000 mhz",
    units: &[("mhz", 1), ("ghz", 1000), ("thz", 1000 * 1000)],
};

/// Parses a memory size into whole megabytes.
///
/// Accepts a non-negative number with an optional decimal part followed by an optional
/// unit `mb`, `gb` or `tb` (case-insensitive, space optional); no unit means megabytes.
/// `1 gb` is 1024 MB. Results that are not a whole number of megabytes are rejected.
///
/// ```
/// use maand::workspace::parse_memory_mb;
/// assert_eq!(parse_memory_mb("4 GB").unwrap(), 4096);
/// assert_eq!(parse_memory_mb("1.5 gb").unwrap(), 1536);
/// assert_eq!(parse_memory_mb("512").unwrap(), 512);
/// ```
pub fn parse_memory_mb(input: &str) -> Result<u64, QuantityError> {
    parse_quantity(input, &MEMORY)
}

/// Parses a CPU speed into whole megahertz.
///
/// Accepts a non-negative number with an optional decimal part followed by an optional
/// unit `mhz`, `ghz` or `thz` (case-insensitive, space optional); no unit means megahertz.
/// `1 ghz` is 1000 MHz. Results that are not a whole number of megahertz are rejected.
///
/// ```
/// use maand::workspace::parse_cpu_mhz;
/// assert_eq!(parse_cpu_mhz("2 ghz").unwrap(), 2000);
/// assert_eq!(parse_cpu_mhz("2.4GHz").unwrap(), 2400);
/// ```
pub fn parse_cpu_mhz(input: &str) -> Result<u64, QuantityError> {
    parse_quantity(input, &CPU)
}

fn parse_quantity(input: &str, scale: &Scale) -> Result<u64, QuantityError> {
    let trimmed = input.trim();
    if trimmed.is_empty() {
        return Err(QuantityError::Empty {
            measure: scale.measure,
            example: scale.example,
        });
    }
    let malformed = || QuantityError::Malformed {
        input: input.to_string(),
        measure: scale.measure,
        accepted: scale.accepted,
        example: scale.example,
    };
    let number_end = trimmed
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(trimmed.len());
    let (number, unit) = trimmed.split_at(number_end);
    let unit = unit.trim().to_ascii_lowercase();
    if !unit.bytes().all(|b| b.is_ascii_alphabetic()) {
        return Err(malformed());
    }
    let (whole, fraction) = match number.split_once('.') {
        Some((whole, fraction)) => (whole, fraction),
        None => (number, ""),
    };
    let digits_only = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty() || !digits_only(whole) || !digits_only(fraction) {
        return Err(malformed());
    }
    if number.ends_with('.') {
        return Err(malformed());
    }
    let multiplier = if unit.is_empty() {
        1
    } else {
        scale
            .units
            .iter()
            .find(|(name, _)| *name == unit)
            .map(|(_, multiplier)| *multiplier)
            .ok_or_else(|| QuantityError::UnknownUnit {
                input: input.to_string(),
                unit: unit.clone(),
                accepted: scale.accepted,
                base: scale.base,
            })?
    };
    let too_large = || QuantityError::TooLarge {
        input: input.to_string(),
        measure: scale.measure,
    };
    // Exact decimal arithmetic: value = whole * multiplier + fraction * multiplier / 10^len.
    let fraction = fraction.trim_end_matches('0');
    if fraction.len() > 18 {
        return Err(malformed());
    }
    let whole: u128 = whole.parse().map_err(|_| too_large())?;
    let whole = whole
        .checked_mul(u128::from(multiplier))
        .ok_or_else(too_large)?;
    let denominator = 10u128.pow(fraction.len() as u32);
    let numerator: u128 = if fraction.is_empty() {
        0
    } else {
        fraction.parse().map_err(|_| malformed())?
    };
    let scaled_fraction = numerator * u128::from(multiplier);
    if !scaled_fraction.is_multiple_of(denominator) {
        return Err(QuantityError::NotWhole {
            input: input.to_string(),
            base: scale.base,
            rounded: u64::try_from(whole + scaled_fraction / denominator).unwrap_or(u64::MAX),
        });
    }
    let total = whole
        .checked_add(scaled_fraction / denominator)
        .ok_or_else(too_large)?;
    u64::try_from(total).map_err(|_| too_large())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn memory_without_unit_is_megabytes() {
        assert_eq!(parse_memory_mb("512").unwrap(), 512);
    }

    #[test]
    fn memory_units_are_case_insensitive_and_space_is_optional() {
        assert_eq!(parse_memory_mb("8192 mb").unwrap(), 8192);
        assert_eq!(parse_memory_mb("4 GB").unwrap(), 4096);
        assert_eq!(parse_memory_mb("4gb").unwrap(), 4096);
        assert_eq!(parse_memory_mb("1 Tb").unwrap(), 1024 * 1024);
    }

    #[test]
    fn memory_accepts_decimals_that_come_to_whole_megabytes() {
        assert_eq!(parse_memory_mb("1.5 gb").unwrap(), 1536);
        assert_eq!(parse_memory_mb("0.25 gb").unwrap(), 256);
        assert_eq!(parse_memory_mb("2.0 mb").unwrap(), 2);
    }

    #[test]
    fn memory_rejects_fractions_of_a_megabyte_and_suggests_a_value() {
        let error = parse_memory_mb("0.3 gb").unwrap_err();
        assert!(matches!(
            error,
            QuantityError::NotWhole { rounded: 307, .. }
        ));
        assert!(error.to_string().contains("307 mb"), "{error}");
    }

    #[test]
    fn cpu_units_scale_by_thousand() {
        assert_eq!(parse_cpu_mhz("2000 mhz").unwrap(), 2000);
        assert_eq!(parse_cpu_mhz("2 GHz").unwrap(), 2000);
        assert_eq!(parse_cpu_mhz("2.4 ghz").unwrap(), 2400);
        assert_eq!(parse_cpu_mhz("1 thz").unwrap(), 1_000_000);
    }

    #[test]
    fn unknown_unit_lists_the_accepted_units() {
        let error = parse_memory_mb("4 gib").unwrap_err();
        let message = error.to_string();
        assert!(message.contains("\"gib\""), "{message}");
        assert!(message.contains("mb, gb, tb"), "{message}");
        let error = parse_cpu_mhz("3 cores").unwrap_err();
        assert!(error.to_string().contains("mhz, ghz, thz"), "{error}");
    }

    #[test]
    fn memory_units_are_not_cpu_units() {
        assert!(matches!(
            parse_cpu_mhz("4 gb"),
            Err(QuantityError::UnknownUnit { .. })
        ));
        assert!(matches!(
            parse_memory_mb("2 ghz"),
            Err(QuantityError::UnknownUnit { .. })
        ));
    }

    #[test]
    fn malformed_numbers_are_rejected() {
        for input in ["-5 mb", "mb", ".5 gb", "1. gb", "1.2.3 gb", "1,5 gb", "+3"] {
            assert!(
                matches!(parse_memory_mb(input), Err(QuantityError::Malformed { .. })),
                "{input} should be malformed"
            );
        }
    }

    #[test]
    fn empty_value_is_rejected() {
        assert!(matches!(
            parse_memory_mb("  "),
            Err(QuantityError::Empty { .. })
        ));
    }

    #[test]
    fn overflow_is_reported_not_wrapped() {
        assert!(matches!(
            parse_memory_mb("99999999999999999999 tb"),
            Err(QuantityError::TooLarge { .. })
        ));
    }

    proptest! {
        #[test]
        fn memory_round_trips_in_every_unit(value in 0u64..1_000_000_000, unit in 0usize..3, upper in any::<bool>(), space in any::<bool>()) {
            let (name, multiplier) = MEMORY.units[unit];
            let name = if upper { name.to_ascii_uppercase() } else { name.to_string() };
            let text = format!("{value}{}{name}", if space { " " } else { "" });
            prop_assert_eq!(parse_memory_mb(&text).unwrap(), value * multiplier);
        }

        #[test]
        fn cpu_round_trips_in_every_unit(value in 0u64..1_000_000_000, unit in 0usize..3, upper in any::<bool>(), space in any::<bool>()) {
            let (name, multiplier) = CPU.units[unit];
            let name = if upper { name.to_ascii_uppercase() } else { name.to_string() };
            let text = format!("{value}{}{name}", if space { " " } else { "" });
            prop_assert_eq!(parse_cpu_mhz(&text).unwrap(), value * multiplier);
        }

        #[test]
        fn megabytes_written_as_decimal_gigabytes_round_trip(megabytes in 0u64..100_000_000) {
            // Every multiple of 1/1024 GB has a finite decimal expansion (at most 10 digits).
            let gigabytes = megabytes / 1024;
            let rest = megabytes % 1024;
            let fraction = rest * 9_765_625; // rest / 1024 scaled by 10^10
            let text = format!("{gigabytes}.{fraction:010} gb");
            prop_assert_eq!(parse_memory_mb(&text).unwrap(), megabytes);
        }

        #[test]
        fn megahertz_written_as_decimal_gigahertz_round_trip(megahertz in 0u64..100_000_000) {
            let text = format!("{}.{:03} GHz", megahertz / 1000, megahertz % 1000);
            prop_assert_eq!(parse_cpu_mhz(&text).unwrap(), megahertz);
        }
    }
}
