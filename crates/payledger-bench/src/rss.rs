//! The server's peak resident memory, read from Linux's `/proc/PID/status`.

use anyhow::Context;

/// The peak resident set size (`VmHWM`) of process `pid`, in KiB.
pub fn peak_rss_kib(pid: u32) -> anyhow::Result<u64> {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
    parse_vm_hwm(&status).with_context(|| format!("no VmHWM line in {path}"))
}

/// Finds the `VmHWM:  123456 kB` line of a `/proc/PID/status` text.
fn parse_vm_hwm(status: &str) -> Option<u64> {
    let line = status.lines().find_map(|line| line.strip_prefix("VmHWM:"))?;
    let mut parts = line.split_whitespace();
    let value = parts.next()?.parse().ok()?;
    // The kernel has always reported this in kB; anything else means we are reading something unexpected.
    (parts.next() == Some("kB")).then_some(value)
}

/// Formats KiB as MiB with one decimal, in integers.
pub fn format_mib(kib: u64) -> String {
    let tenths = (kib * 10 + 512) / 1024;
    format!("{}.{}", tenths / 10, tenths % 10)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_peak_line() {
        let status = "Name:\tpayledger\nVmPeak:\t  900000 kB\nVmHWM:\t   48132 kB\nVmRSS:\t   40000 kB\n";
        assert_eq!(parse_vm_hwm(status), Some(48_132));
        assert_eq!(parse_vm_hwm("Name:\tx\n"), None);
        assert_eq!(parse_vm_hwm("VmHWM:\t 12 MB\n"), None);
    }

    #[test]
    fn reads_our_own_process() {
        assert!(peak_rss_kib(std::process::id()).unwrap() > 0);
    }

    #[test]
    fn formats_mebibytes() {
        assert_eq!(format_mib(48_132), "47.0");
        assert_eq!(format_mib(1_024), "1.0");
        assert_eq!(format_mib(1_536), "1.5");
        assert_eq!(format_mib(0), "0.0");
    }
}
