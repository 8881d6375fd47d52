//! What Linux's `/proc` says about a process: resident memory, open files and the open-file limit.
//! Every function returns `None` where `/proc` is not available.

use std::path::PathBuf;

fn proc_dir(pid: Option<u32>) -> PathBuf {
    match pid {
        Some(p) => PathBuf::from(format!("/proc/{p}")),
        None => PathBuf::from("/proc/self"),
    }
}

/// Resident memory (`VmRSS`) of a process (`None`: this process), in KiB.
pub fn rss_kib(pid: Option<u32>) -> Option<u64> {
    let status = std::fs::read_to_string(proc_dir(pid).join("status")).ok()?;
    status_field_kib(&status, "VmRSS:")
}

fn status_field_kib(status: &str, field: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with(field))?;
    line[field.len()..].split_whitespace().next()?.parse().ok()
}

/// Open file descriptors of a process (`None`: this process).
pub fn open_files(pid: Option<u32>) -> Option<usize> {
    Some(std::fs::read_dir(proc_dir(pid).join("fd")).ok()?.count())
}

/// The open-file limit (`RLIMIT_NOFILE`) of this process: (soft, hard). `u64::MAX` is unlimited.
pub fn open_file_limit() -> Option<(u64, u64)> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    parse_open_file_limit(&limits)
}

fn parse_open_file_limit(limits: &str) -> Option<(u64, u64)> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    let mut fields = line["Max open files".len()..].split_whitespace();
    let parse = |s: &str| {
        if s == "unlimited" {
            Some(u64::MAX)
        } else {
            s.parse().ok()
        }
    };
    Some((parse(fields.next()?)?, parse(fields.next()?)?))
}

/// The most a TCP socket's send buffer may grow to (the third field of
/// `/proc/sys/net/ipv4/tcp_wmem`), in bytes.
pub fn tcp_send_buffer_max() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/sys/net/ipv4/tcp_wmem").ok()?;
    text.split_whitespace().nth(2)?.parse().ok()
}

/// Whether an I/O error is the process (EMFILE) or the system (ENFILE) running out of file
/// descriptors.
pub fn is_out_of_files(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(23) | Some(24))
}

/// A one-line explanation of an open-file-limit error for this process.
pub fn out_of_files_message(held: usize) -> String {
    let limit = match open_file_limit() {
        Some((soft, hard)) => format!("soft {soft}, hard {hard}"),
        None => "unknown".to_owned(),
    };
    format!(
        "open-file limit reached with {held} connections held (RLIMIT_NOFILE: {limit}); \
         spread the connections over more processes"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_limits_line() {
        let limits = "Limit                     Soft Limit           Hard Limit           Units     \n\
                      Max cpu time              unlimited            unlimited            seconds   \n\
                      Max open files            20000                20000                files     \n";
        assert_eq!(parse_open_file_limit(limits), Some((20_000, 20_000)));
        let unlimited =
            "Max open files            1024                 unlimited            files\n";
        assert_eq!(parse_open_file_limit(unlimited), Some((1024, u64::MAX)));
        assert_eq!(parse_open_file_limit("Max processes 1 1"), None);
    }

    #[test]
    fn parses_status_fields() {
        let status = "Name:\tgatekit\nVmPeak:\t  20000 kB\nVmRSS:\t    1234 kB\n";
        assert_eq!(status_field_kib(status, "VmRSS:"), Some(1234));
        assert_eq!(status_field_kib(status, "VmSwap:"), None);
    }

    #[test]
    fn reads_this_process() {
        if std::path::Path::new("/proc/self/status").exists() {
            assert!(rss_kib(None).unwrap() > 0);
            assert!(open_files(None).unwrap() >= 3);
            assert!(open_file_limit().unwrap().0 > 0);
        }
    }

    #[test]
    fn recognises_emfile() {
        assert!(is_out_of_files(&std::io::Error::from_raw_os_error(24)));
        assert!(is_out_of_files(&std::io::Error::from_raw_os_error(23)));
        assert!(!is_out_of_files(&std::io::Error::from_raw_os_error(111)));
    }
}
