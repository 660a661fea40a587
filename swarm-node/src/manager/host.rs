//! What this host reports about itself: hostname, platform, CPUs and memory.
//!
//! The platform follows Docker: the OS is `std::env::consts::OS` and the architecture is the
//! kernel's name (`x86_64`, `aarch64`), which is what `docker node inspect` shows; the scheduler's
//! platform filter treats `x86_64` = `amd64` and `aarch64` = `arm64`.

use swarm_core::objects::node::{EngineDescription, NodeDescription, Platform, Resources};

/// This host's description. `hostname` overrides the host's own name.
pub fn describe_host(hostname: Option<&str>) -> NodeDescription {
    NodeDescription {
        hostname: hostname.map(str::to_string).unwrap_or_else(host_name),
        platform: platform(),
        resources: Resources {
            nano_cpus: i64::try_from(cpus())
                .unwrap_or(1)
                .saturating_mul(1_000_000_000),
            memory_bytes: i64::try_from(memory_bytes()).unwrap_or(i64::MAX),
        },
        engine: EngineDescription {
            engine_version: env!("CARGO_PKG_VERSION").to_string(),
            labels: Default::default(),
        },
    }
}

/// The host's name: the kernel's, else `$HOSTNAME`, else `localhost`.
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok().filter(|s| !s.is_empty()))
        .unwrap_or_else(|| "localhost".to_string())
}

/// OS and architecture as Docker reports them (`linux`, `x86_64`).
pub fn platform() -> Platform {
    Platform {
        architecture: docker_arch(std::env::consts::ARCH).to_string(),
        os: std::env::consts::OS.to_string(),
    }
}

/// Rust's architecture names mapped to the kernel's (`uname -m`), which Docker shows.
pub fn docker_arch(rust_arch: &str) -> &str {
    match rust_arch {
        "x86" => "i686",
        "arm" => "armv7l",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

/// Logical CPUs available to this process.
pub fn cpus() -> u64 {
    std::thread::available_parallelism()
        .map(|n| n.get() as u64)
        .unwrap_or(1)
}

/// Total memory in bytes from `/proc/meminfo` (0 when unknown).
pub fn memory_bytes() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| parse_meminfo(&s))
        .unwrap_or(0)
}

fn parse_meminfo(text: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meminfo_is_parsed_in_bytes() {
        let text = "MemTotal:       16303456 kB\nMemFree:         123 kB\n";
        assert_eq!(parse_meminfo(text), Some(16_303_456 * 1024));
        assert_eq!(parse_meminfo("garbage"), None);
    }

    #[test]
    fn host_description_is_plausible() {
        let d = describe_host(Some("box"));
        assert_eq!(d.hostname, "box");
        assert!(d.resources.nano_cpus >= 1_000_000_000);
        assert!(!d.platform.os.is_empty());
        assert_eq!(docker_arch("x86_64"), "x86_64");
        assert_eq!(docker_arch("aarch64"), "aarch64");
    }
}
