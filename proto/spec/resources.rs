//! Resource limits of an instance's process tree, what valid ones are, and
//! how people write them (`512M`, `50%`). A leaking dev server must not
//! take the machine down with it.

use serde::{Deserialize, Serialize};

use super::{InvalidField, invalid};
use crate::limits::quoted;

/// Smallest memory limit: below it no real server starts.
pub const MIN_MEMORY_MAX: u64 = 1 << 20;
/// Largest memory limit (1 PiB): anything more is a typo.
pub const MAX_MEMORY_MAX: u64 = 1 << 50;
/// Largest CPU limit: 1,024 cores.
pub const MAX_CPU_PERCENT: u32 = 1024 * 100;

/// What an instance's process tree may use.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Limits {
    /// Most resident memory, bytes.
    pub memory_max: Option<u64>,
    /// Most CPU, percent of one core.
    pub cpu_max_percent: Option<u32>,
}

impl Limits {
    /// Whether any limit is set.
    pub fn is_set(&self) -> bool {
        self.memory_max.is_some() || self.cpu_max_percent.is_some()
    }

    /// Checks the limits; errors name the fields under `prefix`
    /// (`spec.limits`).
    pub fn validate(&self, prefix: &str) -> Result<(), InvalidField> {
        if let Some(bytes) = self.memory_max
            && !(MIN_MEMORY_MAX..=MAX_MEMORY_MAX).contains(&bytes)
        {
            return Err(invalid(
                &format!("{prefix}.memory_max_bytes"),
                format!(
                    "{bytes} is not from {MIN_MEMORY_MAX} (1 MiB) to {MAX_MEMORY_MAX} (1 PiB) bytes"
                ),
            ));
        }
        if let Some(percent) = self.cpu_max_percent
            && !(1..=MAX_CPU_PERCENT).contains(&percent)
        {
            return Err(invalid(
                &format!("{prefix}.cpu_max_percent"),
                format!("{percent} is not from 1 to {MAX_CPU_PERCENT} percent"),
            ));
        }
        Ok(())
    }
}

/// `512M`, `1.5G`, `64MiB`, `1048576`: bytes, with binary multiples (as
/// systemd's `MemoryMax=` and pm2 read them).
pub fn parse_bytes(text: &str) -> Result<u64, String> {
    let trimmed = text.trim();
    let split = trimmed
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(trimmed.len());
    let (number, unit) = trimmed.split_at(split);
    let shift = match unit.trim().to_ascii_uppercase().as_str() {
        "" | "B" => 0,
        "K" | "KB" | "KIB" => 10,
        "M" | "MB" | "MIB" => 20,
        "G" | "GB" | "GIB" => 30,
        "T" | "TB" | "TIB" => 40,
        _ => return Err(format!("{} is not a size like 512M or 2G", quoted(text))),
    };
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{} is not a size like 512M or 2G", quoted(text)))?;
    let bytes = value * (1u64 << shift) as f64;
    if !bytes.is_finite() || bytes >= u64::MAX as f64 {
        return Err(format!("{} is too large", quoted(text)));
    }
    Ok(bytes as u64)
}

/// `50%` (or `50`): percent of one core.
pub fn parse_percent(text: &str) -> Result<u32, String> {
    let number = text.trim().trim_end_matches('%').trim();
    number
        .parse()
        .map_err(|_| format!("{} is not a percentage like 50% or 200%", quoted(text)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_read_as_people_write_them() {
        assert_eq!(parse_bytes("512M"), Ok(512 << 20));
        assert_eq!(parse_bytes("1.5G"), Ok(3 << 29));
        assert_eq!(parse_bytes("64MiB"), Ok(64 << 20));
        assert_eq!(parse_bytes("2048"), Ok(2048));
        assert_eq!(parse_bytes(" 1 k "), Ok(1024));
        for bad in ["", "M", "12X", "-5M", "1e400G"] {
            assert!(parse_bytes(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_percent("50%"), Ok(50));
        assert_eq!(parse_percent("250"), Ok(250));
        assert!(parse_percent("half").is_err());
    }

    #[test]
    fn limits_out_of_range_name_their_field() {
        let memory = Limits {
            memory_max: Some(1000),
            ..Default::default()
        };
        assert_eq!(
            memory.validate("spec.limits").unwrap_err().field,
            "spec.limits.memory_max_bytes"
        );
        let cpu = Limits {
            cpu_max_percent: Some(0),
            ..Default::default()
        };
        assert_eq!(
            cpu.validate("spec.limits").unwrap_err().field,
            "spec.limits.cpu_max_percent"
        );
        let fine = Limits {
            memory_max: Some(512 << 20),
            cpu_max_percent: Some(50),
        };
        assert!(fine.validate("spec.limits").is_ok());
    }
}
